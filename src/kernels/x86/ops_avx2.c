/* ops_avx2.c - the AVX2+FMA+F16C dispatch table (placeholder until the
 * SIMD kernels land: NULL means "not available", so dispatch falls back
 * to the reference).
 *
 * Thread: any (immutable table).
 */
#include "kernels/kn_impl.h"

const kn_ops *kn_ops_avx2(void) { return NULL; }
