/* ops_avx2.c - the AVX2+FMA+F16C dispatch table: int8-activation Q4/Q8
 * matmul, converted-row F32/F16/BF16 matmul and the attention row
 * kernels, all from the other *_avx2.c files.
 *
 * Thread: any (immutable table).
 */
#include "kernels/kn_impl.h"

#if defined(__x86_64__)
static const kn_ops AVX2_OPS = {
    .isa = "avx2",
    .uses_qx = true,
    .quantize = kn_avx2_quantize,
    .mm = {[KN_F32] = kn_avx2_mm_f32, [KN_F16] = kn_avx2_mm_f16, [KN_BF16] = kn_avx2_mm_bf16,
           [KN_Q4] = kn_avx2_mm_q4, [KN_Q8] = kn_avx2_mm_q8},
    .kv_dot = {[KN_KV_F32] = kn_avx2_kv_dot_f32, [KN_KV_F16] = kn_avx2_kv_dot_f16,
               [KN_KV_BF16] = kn_avx2_kv_dot_bf16, [KN_KV_Q8] = kn_avx2_kv_dot_q8,
               [KN_KV_Q4] = kn_avx2_kv_dot_q4},
    .kv_axpy = {[KN_KV_F32] = kn_avx2_kv_axpy_f32, [KN_KV_F16] = kn_avx2_kv_axpy_f16,
                [KN_KV_BF16] = kn_avx2_kv_axpy_bf16, [KN_KV_Q8] = kn_avx2_kv_axpy_q8,
                [KN_KV_Q4] = kn_avx2_kv_axpy_q4},
    .scale = kn_avx2_scale,
};

const kn_ops *kn_ops_avx2(void) { return &AVX2_OPS; }
#else
const kn_ops *kn_ops_avx2(void) { return NULL; }
#endif
