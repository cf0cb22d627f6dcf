/* tables.c - the x86 dispatch tables (AVX2+FMA+F16C, and AVX-512
 * F/BW/VL/VNNI). This file is compiled without SIMD target flags: the
 * getters run before anything checks the CPU, so only the kernels they
 * point to may use the instruction sets.
 *
 * Each ISA has three tables that differ only in their Q4/Q8 matmul:
 *  - default: activations quantized per 32-block to int16, pmaddwd
 *    (matmul_q_avx2.c). x is represented to 1/65534 of its block's max,
 *    256x finer than int8; the kernels are batch-invariant, stream Q4
 *    weights about 3x faster per core than the f32 kernels, and a tile of
 *    4 tokens reuses each unpacked weight chunk (batched decode, prefill).
 *  - _exact (kn_ctx_params.q_exact, SEMANTIC_KERNELS=exact): weights
 *    dequantized in registers on f32 activations (matmul_qf_avx2.c),
 *    exact up to f32 rounding.
 *  - _int8 (kn_ctx_params.q_int8_act, SEMANTIC_KERNELS=int8): int8
 *    activations (matmul_q_avx2.c, VNNI in matmul_q_avx512.c), fastest in
 *    compute, at the cost of the activation rounding bound in kernels.h; on
 *    small random-weight test models that rounding moved logits by several
 *    percent and flipped greedy choices against the reference (the
 *    trained demo model: 3% of the logits' max, greedy text diverging
 *    after a dozen tokens; int16: 0.015%).
 * Float-format matmul (converted rows) and the attention row kernels are
 * shared within an ISA. AVX-512: the default and int8 tables multiply
 * packed Q4 and Q8 weights (kernels/pack.c) with matmul_qp_avx512.c on
 * int16 or int8 activations, and unpacked ones with their other kernels; all three AVX-512 tables use the
 * AVX-512 F16/BF16 attention rows (kv_avx512.c); everything else reuses
 * the AVX2 kernels, which every AVX-512 CPU runs too. Results differ from
 * the AVX2 tables' in f32 rounding order only.
 *
 * BF16 weights: AVX512_BF16's VDPBF16PS would need the activations rounded
 * to bf16 (8 mantissa bits), a precision loss the reference does not have;
 * converting weights by a shift is already cheap, so it is unused.
 *
 * Thread: any (immutable tables).
 */
#include "kernels/kn_impl.h"

#if defined(__x86_64__)
/* Fields every x86 table shares: float-format matmul and attention rows;
 * P16 (kn_avx2 or kn_avx512) names the F16/BF16 KV row kernels. */
#define X86_COMMON(P16)                                                                        \
    .mm[KN_F32] = kn_avx2_mm_f32, .mm[KN_F16] = kn_avx2_mm_f16,                                \
    .mm[KN_BF16] = kn_avx2_mm_bf16,                                                            \
    .kv_scores = {[KN_KV_F32] = kn_avx2_kv_scores_f32, [KN_KV_F16] = P16##_kv_scores_f16,      \
                  [KN_KV_BF16] = P16##_kv_scores_bf16, [KN_KV_Q8] = kn_avx2_kv_scores_q8,      \
                  [KN_KV_Q4] = kn_avx2_kv_scores_q4},                                          \
    .kv_accum = {[KN_KV_F32] = kn_avx2_kv_accum_f32, [KN_KV_F16] = P16##_kv_accum_f16,         \
                 [KN_KV_BF16] = P16##_kv_accum_bf16, [KN_KV_Q8] = kn_avx2_kv_accum_q8,         \
                 [KN_KV_Q4] = kn_avx2_kv_accum_q4},                                            \
    .kv_scores_g = {[KN_KV_F32] = kn_avx2_kv_scores_g_f32,                                     \
                    [KN_KV_F16] = P16##_kv_scores_g_f16,                                       \
                    [KN_KV_BF16] = P16##_kv_scores_g_bf16, [KN_KV_Q8] = kn_avx2_kv_scores_g_q8, \
                    [KN_KV_Q4] = kn_avx2_kv_scores_g_q4},                                      \
    .kv_accum_g = {[KN_KV_F32] = kn_avx2_kv_accum_g_f32, [KN_KV_F16] = P16##_kv_accum_g_f16,   \
                   [KN_KV_BF16] = P16##_kv_accum_g_bf16, [KN_KV_Q8] = kn_avx2_kv_accum_g_q8,   \
                   [KN_KV_Q4] = kn_avx2_kv_accum_g_q4},                                        \
    .exp_sum = kn_avx2_exp_sum, .scale = kn_avx2_scale, .silu_mul = kn_avx2_silu_mul

#define X86_I16                                                                                \
    .uses_qx = true, .act_bits = 16, .quantize = kn_avx2_quantize, .q4_layout = KN_QX_I16_Q4,  \
    .q8_layout = KN_QX_I16_Q8, .mm[KN_Q4] = kn_avx2_mm_q4_i16, .mm[KN_Q8] = kn_avx2_mm_q8_i16
#define X86_EXACT .uses_qx = false, .mm[KN_Q4] = kn_avx2_mm_q4f, .mm[KN_Q8] = kn_avx2_mm_q8f

static const kn_ops AVX2_OPS = {.isa = "avx2", X86_I16, X86_COMMON(kn_avx2)};
static const kn_ops AVX512_OPS = {.isa = "avx512", X86_I16, X86_COMMON(kn_avx512),
                                  .mm_q4p = kn_avx512_mm_q4p, .q4p_layout = KN_QX_I16_SPLIT,
                                  .mm_q8p = kn_avx512_mm_q8p, .q8p_layout = KN_QX_I16_SPLIT8};
static const kn_ops AVX2_EXACT_OPS = {.isa = "avx2-exact", X86_EXACT, X86_COMMON(kn_avx2)};
static const kn_ops AVX512_EXACT_OPS = {.isa = "avx512-exact", X86_EXACT, X86_COMMON(kn_avx512)};

static const kn_ops AVX2_INT8_OPS = {
    .isa = "avx2-int8",
    .uses_qx = true,
    .act_bits = 8,
    .quantize = kn_avx2_quantize,
    .q4_layout = KN_QX_PERMUTED,
    .q8_layout = KN_QX_NATURAL,
    .mm[KN_Q4] = kn_avx2_mm_q4,
    .mm[KN_Q8] = kn_avx2_mm_q8,
    X86_COMMON(kn_avx2),
};

static const kn_ops AVX512_INT8_OPS = {
    .isa = "avx512-int8",
    .uses_qx = true,
    .act_bits = 8,
    .quantize = kn_avx2_quantize,
    .q4_layout = KN_QX_PERMUTED128,
    .q8_layout = KN_QX_NATURAL,
    .mm[KN_Q4] = kn_avx512_mm_q4,
    .mm[KN_Q8] = kn_avx512_mm_q8,
    .mm_q4p = kn_avx512_mm_q4p_i8,
    .q4p_layout = KN_QX_I8_EO,
    .mm_q8p = kn_avx512_mm_q8p_i8,
    .q8p_layout = KN_QX_NATURAL,
    X86_COMMON(kn_avx512),
};

const kn_ops *kn_ops_avx2(void) { return &AVX2_OPS; }
const kn_ops *kn_ops_avx512(void) { return &AVX512_OPS; }
const kn_ops *kn_ops_avx2_exact(void) { return &AVX2_EXACT_OPS; }
const kn_ops *kn_ops_avx512_exact(void) { return &AVX512_EXACT_OPS; }
const kn_ops *kn_ops_avx2_int8(void) { return &AVX2_INT8_OPS; }
const kn_ops *kn_ops_avx512_int8(void) { return &AVX512_INT8_OPS; }
#else
const kn_ops *kn_ops_avx2(void) { return NULL; }
const kn_ops *kn_ops_avx512(void) { return NULL; }
const kn_ops *kn_ops_avx2_exact(void) { return NULL; }
const kn_ops *kn_ops_avx512_exact(void) { return NULL; }
const kn_ops *kn_ops_avx2_int8(void) { return NULL; }
const kn_ops *kn_ops_avx512_int8(void) { return NULL; }
#endif
