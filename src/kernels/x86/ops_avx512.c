/* ops_avx512.c - the AVX-512 (F/BW/VL/VNNI) dispatch table (placeholder
 * until the SIMD kernels land: NULL means "not available").
 *
 * Thread: any (immutable table).
 */
#include "kernels/kn_impl.h"

const kn_ops *kn_ops_avx512(void) { return NULL; }
