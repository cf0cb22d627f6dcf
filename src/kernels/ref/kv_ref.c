/* kv_ref.c - the per-row KV cache formats: sizes, store (quantizing),
 * load, and the reference row kernels attention uses (q . k and
 * acc += p * v straight from a stored row).
 *
 * Row layouts (dim elements):
 *   F32 / F16 / BF16: dim elements.
 *   Q8 / Q4 (MLX affine, group KN_KV_GROUP along the row): the U32-packed
 *   data (element c at bits bits*(c % per_word) of word c / per_word),
 *   then dim/KN_KV_GROUP F16 scales, then as many F16 biases;
 *   value = scale * q + bias.
 *
 * Quantizing a group: bias = min rounded to F16, scale = (max - min) /
 * levels rounded to F16 and nudged up until it covers the range, q =
 * round((x - bias) / scale) clamped to 0..levels. So |x - value| <=
 * scale / 2 plus the F16 rounding of bias and scale (see the tests).
 *
 * Thread: any; a store writes only its own rows.
 */
#include "kernels/kn_impl.h"

#include <math.h>

const char *kn_kv_dtype_name(kn_kv_dtype t)
{
    switch (t) {
    case KN_KV_F16: return "f16";
    case KN_KV_BF16: return "bf16";
    case KN_KV_Q8: return "q8";
    case KN_KV_Q4: return "q4";
    case KN_KV_F32: return "f32";
    }
    return "unknown";
}

size_t kn_kv_row_bytes(kn_kv_dtype t, size_t dim)
{
    switch (t) {
    case KN_KV_F32: return dim * 4;
    case KN_KV_F16:
    case KN_KV_BF16: return dim * 2;
    case KN_KV_Q8:
    case KN_KV_Q4: return kn_kv_data_bytes(t, dim) + (dim / KN_KV_GROUP) * 4;
    }
    return 0;
}

/* ---- affine quantization of one row -------------------------------------- */

static void quantize_group(const float *x, int bits, uint8_t *data, size_t g, uint16_t *s_out,
                           uint16_t *b_out)
{
    uint32_t levels = (1u << bits) - 1;
    float mn = x[0], mx = x[0];
    for (size_t i = 1; i < KN_KV_GROUP; i++) {
        mn = fminf(mn, x[i]);
        mx = fmaxf(mx, x[i]);
    }
    uint16_t b16 = kn_f32_to_f16(mn);
    float b = kn_f16_to_f32(b16);
    float range = mx - b;
    uint16_t s16 = kn_f32_to_f16(range / (float)levels);
    /* Nudge the scale up (positive halves order like their bits) so
     * levels * scale reaches max: no clamping at the top. */
    while ((s16 & 0x7fff) < 0x7c00 && kn_f16_to_f32(s16) * (float)levels < range) s16++;
    float s = kn_f16_to_f32(s16);
    float inv = s > 0 ? 1.0f / s : 0.0f;
    for (size_t i = 0; i < KN_KV_GROUP; i++) {
        float qf = nearbyintf((x[i] - b) * inv);
        uint32_t q = qf <= 0 ? 0 : qf >= (float)levels ? levels : (uint32_t)qf;
        size_t c = g * KN_KV_GROUP + i;
        if (bits == 8) {
            data[c] = (uint8_t)q;
        } else if (c & 1) {
            data[c / 2] = (uint8_t)(data[c / 2] | (q << 4));
        } else {
            data[c / 2] = (uint8_t)q;
        }
    }
    *s_out = s16;
    *b_out = b16;
}

/* Packing note: with U32 words stored little-endian (safetensors is
 * little-endian, as is every host we build for), element c of the word
 * layout is byte c / 2 (low nibble first) for 4 bits and byte c for 8. */
static void store_row(kn_kv_dtype t, const float *x, size_t dim, uint8_t *row)
{
    switch (t) {
    case KN_KV_F32:
        memcpy(row, x, dim * 4);
        return;
    case KN_KV_F16:
        kn_f32_to_f16_row(x, row, dim);
        return;
    case KN_KV_BF16:
        for (size_t i = 0; i < dim; i++) {
            uint16_t h = kn_f32_to_bf16(x[i]);
            memcpy(row + 2 * i, &h, 2);
        }
        return;
    case KN_KV_Q8:
    case KN_KV_Q4: {
        int bits = t == KN_KV_Q8 ? 8 : 4;
        size_t ng = dim / KN_KV_GROUP, db = kn_kv_data_bytes(t, dim);
        for (size_t g = 0; g < ng; g++) {
            uint16_t s, b;
            quantize_group(x + g * KN_KV_GROUP, bits, row, g, &s, &b);
            memcpy(row + db + 2 * g, &s, 2);
            memcpy(row + db + 2 * ng + 2 * g, &b, 2);
        }
        return;
    }
    }
}

static inline uint32_t kv_q(kn_kv_dtype t, const uint8_t *row, size_t c)
{
    if (t == KN_KV_Q8) return row[c];
    return (c & 1) ? (uint32_t)(row[c / 2] >> 4) : (uint32_t)(row[c / 2] & 15);
}

/* Element c of a stored row as f32. */
static inline float kv_at(kn_kv_dtype t, const uint8_t *row, size_t dim, size_t c)
{
    switch (t) {
    case KN_KV_F32: return kn_ld_f32(row, c);
    case KN_KV_F16: return kn_f16_to_f32(kn_ld_u16(row, c));
    case KN_KV_BF16: return kn_bf16_to_f32(kn_ld_u16(row, c));
    case KN_KV_Q8:
    case KN_KV_Q4: {
        size_t ng = dim / KN_KV_GROUP, g = c / KN_KV_GROUP;
        const uint8_t *sb = row + kn_kv_data_bytes(t, dim);
        float s = kn_f16_to_f32(kn_ld_u16(sb, g));
        float b = kn_f16_to_f32(kn_ld_u16(sb, ng + g));
        return s * (float)kv_q(t, row, c) + b;
    }
    }
    return 0;
}

/* ---- the paged view -------------------------------------------------------- */

static uint8_t *row_ptr(const kn_kv_view *kv, int32_t pos, int32_t h, bool is_v)
{
    SEM_DASSERT(pos >= 0 && h >= 0 && h < kv->n_kv_heads);
    int32_t id = kv->block_ids[pos / kv->block_tokens];
    if (kv->unit_ids) id = kv->unit_ids[(size_t)id * (size_t)kv->unit_stride];
    SEM_ASSERT(id >= 0); /* a trimmed ring unit is never read or written */
    size_t blk = (size_t)id;
    size_t tok = (size_t)(pos % kv->block_tokens);
    size_t rb = is_v ? kv->v_row_bytes : kv->k_row_bytes;
    size_t off = is_v ? kv->v_offset : kv->k_offset;
    return kv->base + blk * kv->block_stride + off + ((size_t)h * (size_t)kv->block_tokens + tok) * rb;
}

kn_kv_view kn_kv_view_layer(const kn_kv_view *layer0, size_t layer_stride, int32_t l)
{
    kn_kv_view v = *layer0;
    if (v.unit_ids) {
        v.unit_ids += l;
    } else {
        v.k_offset += (size_t)l * layer_stride;
        v.v_offset += (size_t)l * layer_stride;
    }
    return v;
}

const uint8_t *kn_kv_row_ptr(const kn_kv_view *kv, int32_t pos, int32_t h, bool is_v)
{
    return row_ptr(kv, pos, h, is_v);
}

void kn_kv_store(const kn_kv_view *kv, int32_t pos, const float *k, const float *v)
{
    size_t hd = (size_t)kv->head_dim, vd = (size_t)kv->v_head_dim;
    for (int32_t h = 0; h < kv->n_kv_heads; h++) {
        store_row(kv->dtype, k + (size_t)h * hd, hd, row_ptr(kv, pos, h, false));
        store_row(kv->dtype, v + (size_t)h * vd, vd, row_ptr(kv, pos, h, true));
    }
}

void kn_kv_load_row(const kn_kv_view *kv, int32_t pos, int32_t h, bool is_v, float *out)
{
    size_t dim = (size_t)(is_v ? kv->v_head_dim : kv->head_dim);
    const uint8_t *row = row_ptr(kv, pos, h, is_v);
    for (size_t c = 0; c < dim; c++) out[c] = kv_at(kv->dtype, row, dim, c);
}

/* ---- reference row kernels ------------------------------------------------- */

static float dot_ref(kn_kv_dtype t, const float *q, const uint8_t *row, size_t dim)
{
    double acc = 0;
    for (size_t c = 0; c < dim; c++) acc += (double)q[c] * (double)kv_at(t, row, dim, c);
    return (float)acc;
}

static void axpy_ref(kn_kv_dtype t, float *acc, float p, const uint8_t *row, size_t dim)
{
    for (size_t c = 0; c < dim; c++) acc[c] += p * kv_at(t, row, dim, c);
}

#define KV_REF_FMT(name, T)                                                                    \
    void kn_ref_kv_scores_##name(const float *q, const float *qgsum, float scale,              \
                                 const uint8_t *rows, size_t stride, size_t n, size_t dim,     \
                                 float *out)                                                   \
    {                                                                                          \
        (void)qgsum;                                                                           \
        for (size_t i = 0; i < n; i++) out[i] = dot_ref(T, q, rows + i * stride, dim) * scale; \
    }                                                                                          \
    void kn_ref_kv_accum_##name(float *acc, const float *p, const uint8_t *rows, size_t stride,\
                                size_t n, size_t dim)                                          \
    {                                                                                          \
        for (size_t i = 0; i < n; i++) axpy_ref(T, acc, p[i], rows + i * stride, dim);         \
    }

KV_REF_FMT(f32, KN_KV_F32)
KV_REF_FMT(f16, KN_KV_F16)
KV_REF_FMT(bf16, KN_KV_BF16)
KV_REF_FMT(q8, KN_KV_Q8)
KV_REF_FMT(q4, KN_KV_Q4)

float kn_ref_exp_sum(float *s, size_t n, float m)
{
    float sum = 0;
    for (size_t i = 0; i < n; i++) sum += (s[i] = expf(s[i] - m));
    return sum;
}

void kn_ref_scale(float *acc, float s, size_t n)
{
    for (size_t i = 0; i < n; i++) acc[i] *= s;
}
