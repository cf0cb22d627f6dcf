/* kv_avx2.c - AVX2+FMA+F16C row kernels of attention, over a chunk of
 * stored KV rows at a time: scores (scale * q . k, four rows per pass with
 * one horizontal reduction for all four), the weighted sum of V rows (the
 * accumulator slice stays in registers across the chunk), a vector exp,
 * and the rescale. Affine rows (Q8/Q4, group KN_KV_GROUP) use
 *   q . k = sum_g s_g * (q_g . qk_g) + b_g * sum(q_g)
 * with sum(q_g) precomputed once per query head (qgsum).
 *
 * Thread: any (pure functions of their arguments).
 */
#include "kernels/x86/avx2_util.h"

#include <math.h>

#define KN_INLINE static inline __attribute__((always_inline))

KN_INLINE __m256 ld_row8(kn_kv_dtype t, const uint8_t *row, size_t c)
{
    if (t == KN_KV_F32) return _mm256_loadu_ps((const float *)(row + 4 * c));
    if (t == KN_KV_F16) return kn_ld8_f16(row + 2 * c);
    return kn_ld8_bf16(row + 2 * c);
}

KN_INLINE float at_scalar(kn_kv_dtype t, const uint8_t *row, size_t c)
{
    if (t == KN_KV_F32) return kn_ld_f32(row, c);
    if (t == KN_KV_F16) return kn_f16_to_f32(kn_ld_u16(row, c));
    return kn_bf16_to_f32(kn_ld_u16(row, c));
}

KN_INLINE float dot_float(kn_kv_dtype t, const float *q, const uint8_t *row, size_t dim)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t c = 0;
    for (; c + 16 <= dim; c += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), ld_row8(t, row, c), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 8), ld_row8(t, row, c + 8), a1);
    }
    for (; c + 8 <= dim; c += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), ld_row8(t, row, c), a0);
    float s = kn_hsum256(_mm256_add_ps(a0, a1));
    for (; c < dim; c++) s += q[c] * at_scalar(t, row, c);
    return s;
}

/* The horizontal sums of four vectors: [sum a0, sum a1, sum a2, sum a3]. */
KN_INLINE __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* Four rows' dot products with q, reduced together: [r0, r1, r2, r3]. */
KN_INLINE __m128 dot4_float(kn_kv_dtype t, const float *q, const uint8_t *r0, size_t stride,
                            size_t dim)
{
    const uint8_t *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    size_t c = 0;
    for (; c + 8 <= dim; c += 8) {
        __m256 qv = _mm256_loadu_ps(q + c);
        a0 = _mm256_fmadd_ps(qv, ld_row8(t, r0, c), a0);
        a1 = _mm256_fmadd_ps(qv, ld_row8(t, r1, c), a1);
        a2 = _mm256_fmadd_ps(qv, ld_row8(t, r2, c), a2);
        a3 = _mm256_fmadd_ps(qv, ld_row8(t, r3, c), a3);
    }
    __m128 s = hsum4(a0, a1, a2, a3);
    if (c < dim) {
        float t4[4] = {0, 0, 0, 0};
        for (; c < dim; c++) {
            t4[0] += q[c] * at_scalar(t, r0, c);
            t4[1] += q[c] * at_scalar(t, r1, c);
            t4[2] += q[c] * at_scalar(t, r2, c);
            t4[3] += q[c] * at_scalar(t, r3, c);
        }
        s = _mm_add_ps(s, _mm_loadu_ps(t4));
    }
    return s;
}

KN_INLINE void scores_float(kn_kv_dtype t, const float *q, float scale, const uint8_t *rows,
                            size_t stride, size_t n, size_t dim, float *out)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(out + i, _mm_mul_ps(dot4_float(t, q, rows + i * stride, stride, dim),
                                          _mm_set1_ps(scale)));
    for (; i < n; i++) out[i] = dot_float(t, q, rows + i * stride, dim) * scale;
}

/* scores_float for two query heads at once: each group of 4 rows x 8
 * elements is converted once and multiplied into both heads' accumulators,
 * in the order dot4_float uses, so each head's scores are those of
 * scores_float. dim % 8 != 0 (rare head dims) runs scores_float twice. */
KN_INLINE void scores2_float(kn_kv_dtype t, const float *q0, const float *q1, float scale,
                             const uint8_t *rows, size_t stride, size_t n, size_t dim, float *o0,
                             float *o1)
{
    size_t i = 0;
    if (dim % 8 == 0)
        for (; i + 4 <= n; i += 4) {
            const uint8_t *r0 = rows + i * stride, *r1 = r0 + stride, *r2 = r1 + stride, *r3 = r2 + stride;
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (size_t c = 0; c < dim; c += 8) {
                __m256 k0 = ld_row8(t, r0, c), k1 = ld_row8(t, r1, c);
                __m256 k2 = ld_row8(t, r2, c), k3 = ld_row8(t, r3, c);
                __m256 x = _mm256_loadu_ps(q0 + c), y = _mm256_loadu_ps(q1 + c);
                a0 = _mm256_fmadd_ps(x, k0, a0);
                a1 = _mm256_fmadd_ps(x, k1, a1);
                a2 = _mm256_fmadd_ps(x, k2, a2);
                a3 = _mm256_fmadd_ps(x, k3, a3);
                b0 = _mm256_fmadd_ps(y, k0, b0);
                b1 = _mm256_fmadd_ps(y, k1, b1);
                b2 = _mm256_fmadd_ps(y, k2, b2);
                b3 = _mm256_fmadd_ps(y, k3, b3);
            }
            _mm_storeu_ps(o0 + i, _mm_mul_ps(hsum4(a0, a1, a2, a3), _mm_set1_ps(scale)));
            _mm_storeu_ps(o1 + i, _mm_mul_ps(hsum4(b0, b1, b2, b3), _mm_set1_ps(scale)));
        }
    scores_float(t, q0, scale, rows + i * stride, stride, n - i, dim, o0 + i);
    scores_float(t, q1, scale, rows + i * stride, stride, n - i, dim, o1 + i);
}

/* acc += sum_i p[i] * row_i, one 32-float slice of acc at a time held in
 * registers over all n rows. */
KN_INLINE void accum_float(kn_kv_dtype t, float *acc, const float *p, const uint8_t *rows,
                           size_t stride, size_t n, size_t dim)
{
    size_t c = 0;
    for (; c + 32 <= dim; c += 32) {
        /* even rows into a, odd rows into b: two independent FMA chains
         * per register, so the loop is not bound by FMA latency */
        __m256 a0 = _mm256_loadu_ps(acc + c), a1 = _mm256_loadu_ps(acc + c + 8);
        __m256 a2 = _mm256_loadu_ps(acc + c + 16), a3 = _mm256_loadu_ps(acc + c + 24);
        __m256 b0 = _mm256_setzero_ps(), b1 = b0, b2 = b0, b3 = b0;
        const uint8_t *row = rows;
        size_t i = 0;
        for (; i + 2 <= n; i += 2, row += 2 * stride) {
            __m256 pv = _mm256_broadcast_ss(p + i), pw = _mm256_broadcast_ss(p + i + 1);
            a0 = _mm256_fmadd_ps(pv, ld_row8(t, row, c), a0);
            a1 = _mm256_fmadd_ps(pv, ld_row8(t, row, c + 8), a1);
            a2 = _mm256_fmadd_ps(pv, ld_row8(t, row, c + 16), a2);
            a3 = _mm256_fmadd_ps(pv, ld_row8(t, row, c + 24), a3);
            b0 = _mm256_fmadd_ps(pw, ld_row8(t, row + stride, c), b0);
            b1 = _mm256_fmadd_ps(pw, ld_row8(t, row + stride, c + 8), b1);
            b2 = _mm256_fmadd_ps(pw, ld_row8(t, row + stride, c + 16), b2);
            b3 = _mm256_fmadd_ps(pw, ld_row8(t, row + stride, c + 24), b3);
        }
        if (i < n) {
            __m256 pv = _mm256_broadcast_ss(p + i);
            a0 = _mm256_fmadd_ps(pv, ld_row8(t, row, c), a0);
            a1 = _mm256_fmadd_ps(pv, ld_row8(t, row, c + 8), a1);
            a2 = _mm256_fmadd_ps(pv, ld_row8(t, row, c + 16), a2);
            a3 = _mm256_fmadd_ps(pv, ld_row8(t, row, c + 24), a3);
        }
        _mm256_storeu_ps(acc + c, _mm256_add_ps(a0, b0));
        _mm256_storeu_ps(acc + c + 8, _mm256_add_ps(a1, b1));
        _mm256_storeu_ps(acc + c + 16, _mm256_add_ps(a2, b2));
        _mm256_storeu_ps(acc + c + 24, _mm256_add_ps(a3, b3));
    }
    for (; c + 8 <= dim; c += 8) {
        __m256 a = _mm256_loadu_ps(acc + c);
        for (size_t i = 0; i < n; i++) a = _mm256_fmadd_ps(_mm256_broadcast_ss(p + i), ld_row8(t, rows + i * stride, c), a);
        _mm256_storeu_ps(acc + c, a);
    }
    for (; c < dim; c++)
        for (size_t i = 0; i < n; i++) acc[c] += p[i] * at_scalar(t, rows + i * stride, c);
}

#define KV_FLOAT_FMT(name, T)                                                                  \
    void kn_avx2_kv_scores_##name(const float *q, const float *qgsum, float scale,             \
                                  const uint8_t *rows, size_t stride, size_t n, size_t dim,    \
                                  float *out)                                                  \
    {                                                                                          \
        (void)qgsum;                                                                           \
        scores_float(T, q, scale, rows, stride, n, dim, out);                                  \
    }                                                                                          \
    void kn_avx2_kv_accum_##name(float *acc, const float *p, const uint8_t *rows,              \
                                 size_t stride, size_t n, size_t dim)                          \
    {                                                                                          \
        accum_float(T, acc, p, rows, stride, n, dim);                                          \
    }                                                                                          \
    void kn_avx2_kv_scores2_##name(const float *q0, const float *q1, float scale,             \
                                   const uint8_t *rows, size_t stride, size_t n, size_t dim,   \
                                   float *o0, float *o1)                                       \
    {                                                                                          \
        scores2_float(T, q0, q1, scale, rows, stride, n, dim, o0, o1);                         \
    }

KV_FLOAT_FMT(f32, KN_KV_F32)
KV_FLOAT_FMT(f16, KN_KV_F16)
KV_FLOAT_FMT(bf16, KN_KV_BF16)

/* ---- affine rows ----------------------------------------------------------- */

/* 16 quantized values from element c of an affine row, as two f32x8. */
KN_INLINE void ld_q16(bool q4, const uint8_t *row, size_t c, __m256 *f0, __m256 *f1)
{
    __m128i nat;
    if (q4) {
        __m128i v = _mm_loadl_epi64((const __m128i *)(row + c / 2));
        const __m128i m4 = _mm_set1_epi8(0x0f);
        nat = _mm_unpacklo_epi8(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    } else {
        nat = _mm_loadu_si128((const __m128i *)(row + c));
    }
    *f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(nat));
    *f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(nat, 8)));
}

KN_INLINE float dot_affine(bool q4, const float *q, const float *qgsum, const uint8_t *row,
                           size_t dim)
{
    size_t ng = dim / KN_KV_GROUP;
    const uint8_t *sb = row + (q4 ? dim / 2 : dim);
    __m256 acc = _mm256_setzero_ps();
    float bias = 0;
    for (size_t g = 0; g < ng; g++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (size_t c = g * KN_KV_GROUP; c < (g + 1) * KN_KV_GROUP; c += 16) {
            __m256 f0, f1;
            ld_q16(q4, row, c, &f0, &f1);
            a0 = _mm256_fmadd_ps(f0, _mm256_loadu_ps(q + c), a0);
            a1 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(q + c + 8), a1);
        }
        float s = kn_f16_to_f32(kn_ld_u16(sb, g)), b = kn_f16_to_f32(kn_ld_u16(sb, ng + g));
        acc = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(s), acc);
        bias += b * qgsum[g];
    }
    return kn_hsum256(acc) + bias;
}

KN_INLINE void axpy_affine(bool q4, float *acc, float p, const uint8_t *row, size_t dim)
{
    size_t ng = dim / KN_KV_GROUP;
    const uint8_t *sb = row + (q4 ? dim / 2 : dim);
    for (size_t g = 0; g < ng; g++) {
        float s = kn_f16_to_f32(kn_ld_u16(sb, g)), b = kn_f16_to_f32(kn_ld_u16(sb, ng + g));
        __m256 ps = _mm256_set1_ps(p * s), pb = _mm256_set1_ps(p * b);
        for (size_t c = g * KN_KV_GROUP; c < (g + 1) * KN_KV_GROUP; c += 16) {
            __m256 f0, f1;
            ld_q16(q4, row, c, &f0, &f1);
            __m256 a0 = _mm256_add_ps(_mm256_loadu_ps(acc + c), pb);
            __m256 a1 = _mm256_add_ps(_mm256_loadu_ps(acc + c + 8), pb);
            _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(f0, ps, a0));
            _mm256_storeu_ps(acc + c + 8, _mm256_fmadd_ps(f1, ps, a1));
        }
    }
}

#define KV_AFFINE_FMT(name, Q4)                                                                \
    void kn_avx2_kv_scores_##name(const float *q, const float *qgsum, float scale,             \
                                  const uint8_t *rows, size_t stride, size_t n, size_t dim,    \
                                  float *out)                                                  \
    {                                                                                          \
        for (size_t i = 0; i < n; i++) out[i] = dot_affine(Q4, q, qgsum, rows + i * stride, dim) * scale; \
    }                                                                                          \
    void kn_avx2_kv_accum_##name(float *acc, const float *p, const uint8_t *rows,              \
                                 size_t stride, size_t n, size_t dim)                          \
    {                                                                                          \
        for (size_t i = 0; i < n; i++) axpy_affine(Q4, acc, p[i], rows + i * stride, dim);     \
    }

KV_AFFINE_FMT(q8, false)
KV_AFFINE_FMT(q4, true)

/* ---- exp ------------------------------------------------------------------------ */

float kn_avx2_exp_sum(float *s, size_t n, float m)
{
    __m256 mv = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = kn_exp256(_mm256_sub_ps(_mm256_loadu_ps(s + i), mv));
        _mm256_storeu_ps(s + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    float total = kn_hsum256(sum);
    for (; i < n; i++) total += (s[i] = expf(s[i] - m));
    return total;
}

void kn_avx2_scale(float *acc, float s, size_t n)
{
    __m256 sv = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, _mm256_mul_ps(_mm256_loadu_ps(acc + i), sv));
    for (; i < n; i++) acc[i] *= s;
}
