/* matmul_ref.c - the scalar reference matmul for every weight format, and
 * weight-row dequantization. This is the specification: each weight is
 * formed in f32 exactly as kernels.h defines it (w = scale * q + bias for
 * the affine formats) and each dot product is accumulated in double, so
 * the only rounding is the f32 weight and the final f32 store.
 *
 * Thread: any; a call touches only rows [r0, r1) of y.
 */
#include "kernels/kn_impl.h"

/* Element c of row r of a quantized weight, as the unsigned integer q. */
static inline uint32_t q_at(const kn_weight *w, size_t r, size_t c)
{
    size_t per_word = 32 / (size_t)w->bits;
    size_t words_per_row = w->cols / per_word;
    uint32_t word = kn_ld_u32(w->data, r * words_per_row + c / per_word);
    uint32_t mask = (1u << w->bits) - 1;
    return (word >> ((unsigned)w->bits * (unsigned)(c % per_word))) & mask;
}

void kn_weight_row(const kn_weight *w, size_t r, float *out)
{
    SEM_ASSERT(r < w->rows);
    size_t cols = w->cols;
    switch (w->dtype) {
    case KN_F32:
    case KN_F16:
    case KN_BF16: {
        size_t esz = w->dtype == KN_F32 ? 4 : 2;
        kn_to_f32(w->dtype, (const uint8_t *)w->data + r * cols * esz, out, cols);
        return;
    }
    case KN_Q4:
    case KN_Q8: {
        size_t gs = (size_t)w->group_size, ng = cols / gs;
        for (size_t g = 0; g < ng; g++) {
            float s = kn_scale_at(w->scale_dtype, w->scales, r * ng + g);
            float b = kn_scale_at(w->scale_dtype, w->biases, r * ng + g);
            for (size_t c = g * gs; c < (g + 1) * gs; c++) out[c] = s * (float)q_at(w, r, c) + b;
        }
        return;
    }
    }
    SEM_ASSERT(!"kn_weight_row: bad dtype");
}

static void mm_float_ref(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                         const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)qx;
    size_t cols = w->cols, esz = w->dtype == KN_F32 ? 4 : 2;
    for (size_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * cols * esz;
        for (size_t t = 0; t < n_tokens; t++) {
            const float *xt = x + t * ldx;
            double acc = 0;
            for (size_t c = 0; c < cols; c++) {
                float wv = w->dtype == KN_F32    ? kn_ld_f32(row, c)
                           : w->dtype == KN_F16 ? kn_f16_to_f32(kn_ld_u16(row, c))
                                                : kn_bf16_to_f32(kn_ld_u16(row, c));
                acc += (double)wv * (double)xt[c];
            }
            y[t * ldy + r] = (float)acc;
        }
    }
}

static void mm_affine_ref(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                          const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)qx;
    size_t cols = w->cols, gs = (size_t)w->group_size, ng = cols / gs;
    for (size_t r = r0; r < r1; r++) {
        for (size_t t = 0; t < n_tokens; t++) {
            const float *xt = x + t * ldx;
            double acc = 0;
            for (size_t g = 0; g < ng; g++) {
                float s = kn_scale_at(w->scale_dtype, w->scales, r * ng + g);
                float b = kn_scale_at(w->scale_dtype, w->biases, r * ng + g);
                for (size_t c = g * gs; c < (g + 1) * gs; c++) {
                    float wv = s * (float)q_at(w, r, c) + b;
                    acc += (double)wv * (double)xt[c];
                }
            }
            y[t * ldy + r] = (float)acc;
        }
    }
}

/* ---- the reference table ------------------------------------------------ */


static const kn_ops REF_OPS = {
    .isa = "ref",
    .uses_qx = false,
    .quantize = NULL,
    .mm = {[KN_F32] = mm_float_ref, [KN_F16] = mm_float_ref, [KN_BF16] = mm_float_ref,
           [KN_Q4] = mm_affine_ref, [KN_Q8] = mm_affine_ref},
    .kv_scores = {[KN_KV_F32] = kn_ref_kv_scores_f32, [KN_KV_F16] = kn_ref_kv_scores_f16,
                  [KN_KV_BF16] = kn_ref_kv_scores_bf16, [KN_KV_Q8] = kn_ref_kv_scores_q8,
                  [KN_KV_Q4] = kn_ref_kv_scores_q4},
    .kv_accum = {[KN_KV_F32] = kn_ref_kv_accum_f32, [KN_KV_F16] = kn_ref_kv_accum_f16,
                 [KN_KV_BF16] = kn_ref_kv_accum_bf16, [KN_KV_Q8] = kn_ref_kv_accum_q8,
                 [KN_KV_Q4] = kn_ref_kv_accum_q4},
    .exp_sum = kn_ref_exp_sum,
    .scale = kn_ref_scale,
    .silu_mul = kn_silu_mul,
};

const kn_ops *kn_ops_ref(void) { return &REF_OPS; }
