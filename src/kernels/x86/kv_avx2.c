/* kv_avx2.c - AVX2+FMA+F16C row kernels of attention, over a chunk of
 * stored KV rows at a time: scores (scale * q . k, four rows per pass with
 * one horizontal reduction for all four), the weighted sum of V rows (the
 * accumulator slice stays in registers across the chunk), a vector exp,
 * and the rescale. Every format also has GQA variants for up to
 * KN_GQA_MAX query heads sharing a KV head: each row is read and
 * converted once for all of them, with results bit for bit those of one
 * head at a time, and they prefetch the next chunk's rows as they go.
 * Affine rows (Q8/Q4, group KN_KV_GROUP) use
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

/* Prefetches (to L2) rows [0, n) of stride bytes from p, rbytes each. */
KN_INLINE void prefetch_rows(const uint8_t *p, size_t stride, size_t n, size_t rbytes)
{
    for (size_t r = 0; r < n; r++)
        for (size_t o = 0; o < rbytes; o += 64) _mm_prefetch((const char *)(p + r * stride + o), _MM_HINT_T1);
}

/* scores_float for G query heads at once: each group of R rows x 8
 * elements is converted once and multiplied into every head's
 * accumulators (R x G <= 8 of them: R = 4 for G <= 2, else 2). A row's
 * accumulator sees the FMAs and the horizontal-add tree dot4_float gives
 * it, whatever rows it is reduced with, so each head's scores are those
 * of scores_float; the last n % 4 rows (scores_float's dot_float tail)
 * and dim % 8 != 0 (rare head dims) run scores_float per head. */
KN_INLINE void scores_gx(kn_kv_dtype t, const float *const *q, const int G, float scale,
                         const uint8_t *rows, size_t stride, size_t n, size_t dim,
                         const uint8_t *next, float *const *o)
{
    size_t rbytes = dim * (t == KN_KV_F32 ? 4 : 2);
    const int R = G <= 2 ? 4 : 2;
    size_t i = 0, body = dim % 8 ? 0 : n - n % 4;
    const __m128 sv = _mm_set1_ps(scale);
    for (; i < body; i += (size_t)R) {
        if (next) prefetch_rows(next + i * stride, stride, (size_t)R, rbytes);
        __m256 a[KN_GQA_MAX][4];
        #pragma GCC unroll 4
        for (int h = 0; h < G; h++)
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) a[h][r] = _mm256_setzero_ps();
        for (size_t c = 0; c < dim; c += 8) {
            __m256 k[4];
            #pragma GCC unroll 4
            for (int r = 0; r < R; r++) k[r] = ld_row8(t, rows + (i + (size_t)r) * stride, c);
            #pragma GCC unroll 4
            for (int h = 0; h < G; h++) {
                __m256 x = _mm256_loadu_ps(q[h] + c);
                #pragma GCC unroll 4
                for (int r = 0; r < R; r++) a[h][r] = _mm256_fmadd_ps(x, k[r], a[h][r]);
            }
        }
        if (R == 4) {
            #pragma GCC unroll 4
            for (int h = 0; h < G; h++) _mm_storeu_ps(o[h] + i, _mm_mul_ps(hsum4(a[h][0], a[h][1], a[h][2], a[h][3]), sv));
            continue;
        }
        #pragma GCC unroll 4
        for (int h = 0; h < G; h += 2) { /* two rows of heads h and h + 1 */
            __m256 z = _mm256_setzero_ps();
            __m128 s = _mm_mul_ps(hsum4(a[h][0], a[h][1], h + 1 < G ? a[h + 1][0] : z, h + 1 < G ? a[h + 1][1] : z), sv);
            _mm_storel_pi((__m64 *)(o[h] + i), s);
            if (h + 1 < G) _mm_storeh_pi((__m64 *)(o[h + 1] + i), s);
        }
    }
    #pragma GCC unroll 4
    for (int h = 0; h < G; h++) scores_float(t, q[h], scale, rows + i * stride, stride, n - i, dim, o[h] + i);
}

KN_INLINE void scores_g(kn_kv_dtype t, const float *const *q, int g, float scale, const uint8_t *rows,
                        size_t stride, size_t n, size_t dim, const uint8_t *next, float *const *o)
{
    switch (g) {
    case 1: scores_gx(t, q, 1, scale, rows, stride, n, dim, next, o); break;
    case 2: scores_gx(t, q, 2, scale, rows, stride, n, dim, next, o); break;
    case 3: scores_gx(t, q, 3, scale, rows, stride, n, dim, next, o); break;
    default: scores_gx(t, q, 4, scale, rows, stride, n, dim, next, o); break;
    }
}

/* acc[h] += sum_i p[h][i] * row_i for G heads over columns [c, c + 8W):
 * G x W accumulators stay in registers over all n rows, each row's
 * pieces are converted once for all heads, and each head's weight is
 * broadcast once per row. One FMA chain per (head, vector), rows in
 * order, so the result does not depend on G or W. */
KN_INLINE void accum_slice(kn_kv_dtype t, float *const *acc, const float *const *p, const int G,
                           const int W, const uint8_t *rows, size_t stride, size_t n, size_t c,
                           const uint8_t *next, size_t rbytes)
{
    __m256 a[KN_GQA_MAX][8];
#pragma GCC unroll 4
    for (int h = 0; h < G; h++)
#pragma GCC unroll 8
        for (int w = 0; w < W; w++) a[h][w] = _mm256_loadu_ps(acc[h] + c + 8 * w);
    const uint8_t *row = rows;
    for (size_t i = 0; i < n; i++, row += stride) {
        if (next) prefetch_rows(next + i * stride, stride, 1, rbytes);
        __m256 pb[KN_GQA_MAX];
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) pb[h] = _mm256_broadcast_ss(p[h] + i);
#pragma GCC unroll 8
        for (int w = 0; w < W; w++) {
            __m256 k = ld_row8(t, row, c + 8 * (size_t)w);
#pragma GCC unroll 4
            for (int h = 0; h < G; h++) a[h][w] = _mm256_fmadd_ps(pb[h], k, a[h][w]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < G; h++)
#pragma GCC unroll 8
        for (int w = 0; w < W; w++) _mm256_storeu_ps(acc[h] + c + 8 * w, a[h][w]);
}

/* acc[h] += sum_i p[h][i] * row_i for G (1 to KN_GQA_MAX) heads: slices
 * of W vectors with G x W = 8 or 12 accumulators (enough independent
 * chains to keep both FMA pipes busy, few enough for the 16 registers),
 * then 8-float slices, then scalar columns. next != NULL: the rows at
 * next are prefetched along the first slice. */
KN_INLINE void accum_gx(kn_kv_dtype t, float *const *acc, const float *const *p, const int G,
                        const uint8_t *rows, size_t stride, size_t n, size_t dim,
                        const uint8_t *next)
{
    const int W = G == 1 ? 8 : G == 4 ? 2 : 4;
    size_t rbytes = dim * (t == KN_KV_F32 ? 4 : 2), c = 0;
    for (; c + 8 * (size_t)W <= dim; c += 8 * (size_t)W)
        accum_slice(t, acc, p, G, W, rows, stride, n, c, c ? NULL : next, rbytes);
    for (; c + 8 <= dim; c += 8) accum_slice(t, acc, p, G, 1, rows, stride, n, c, c ? NULL : next, rbytes);
    for (int h = 0; h < G; h++)
        for (size_t k = c; k < dim; k++)
            for (size_t i = 0; i < n; i++) acc[h][k] += p[h][i] * at_scalar(t, rows + i * stride, k);
}

KN_INLINE void accum_g(kn_kv_dtype t, float *const *acc, const float *const *p, int g,
                       const uint8_t *rows, size_t stride, size_t n, size_t dim, const uint8_t *next)
{
    switch (g) {
    case 1: accum_gx(t, acc, p, 1, rows, stride, n, dim, next); break;
    case 2: accum_gx(t, acc, p, 2, rows, stride, n, dim, next); break;
    case 3: accum_gx(t, acc, p, 3, rows, stride, n, dim, next); break;
    default: accum_gx(t, acc, p, 4, rows, stride, n, dim, next); break;
    }
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
        accum_gx(T, &acc, &p, 1, rows, stride, n, dim, NULL);                                  \
    }                                                                                          \
    void kn_avx2_kv_scores_g_##name(const float *const *q, const float *const *qgsum, int g,  \
                                    float scale, const uint8_t *rows, size_t stride, size_t n, \
                                    size_t dim, const uint8_t *next, float *const *out)       \
    {                                                                                          \
        (void)qgsum;                                                                           \
        scores_g(T, q, g, scale, rows, stride, n, dim, next, out);                             \
    }                                                                                          \
    void kn_avx2_kv_accum_g_##name(float *const *acc, const float *const *p, int g,            \
                                   const uint8_t *rows, size_t stride, size_t n, size_t dim,   \
                                   const uint8_t *next)                                        \
    {                                                                                          \
        accum_g(T, acc, p, g, rows, stride, n, dim, next);                                     \
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

/* Scores of G query heads over affine rows: each 16 values of a row are
 * widened once for all heads; per head the operations and their order
 * are the same whatever G (one accumulator pair per group, the group's
 * scale, the bias term b * sum(q_g) added after the reduction), so
 * grouped and single-head calls agree bit for bit. */
KN_INLINE void scores_affine(bool q4, const float *const *q, const float *const *qgsum, const int G,
                             float scale, const uint8_t *rows, size_t stride, size_t n, size_t dim,
                             const uint8_t *next, float *const *o)
{
    size_t ng = dim / KN_KV_GROUP, sbo = q4 ? dim / 2 : dim;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *row = rows + i * stride, *sb = row + sbo;
        if (next) prefetch_rows(next + i * stride, stride, 1, sbo + 4 * ng);
        __m256 acc[KN_GQA_MAX];
        float bias[KN_GQA_MAX];
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) acc[h] = _mm256_setzero_ps(), bias[h] = 0;
        for (size_t g = 0; g < ng; g++) {
            __m256 a0[KN_GQA_MAX], a1[KN_GQA_MAX];
#pragma GCC unroll 4
            for (int h = 0; h < G; h++) a0[h] = a1[h] = _mm256_setzero_ps();
            for (size_t c = g * KN_KV_GROUP; c < (g + 1) * KN_KV_GROUP; c += 16) {
                __m256 f0, f1;
                ld_q16(q4, row, c, &f0, &f1);
#pragma GCC unroll 4
                for (int h = 0; h < G; h++) {
                    a0[h] = _mm256_fmadd_ps(f0, _mm256_loadu_ps(q[h] + c), a0[h]);
                    a1[h] = _mm256_fmadd_ps(f1, _mm256_loadu_ps(q[h] + c + 8), a1[h]);
                }
            }
            float s = kn_f16_to_f32(kn_ld_u16(sb, g)), b = kn_f16_to_f32(kn_ld_u16(sb, ng + g));
#pragma GCC unroll 4
            for (int h = 0; h < G; h++) {
                acc[h] = _mm256_fmadd_ps(_mm256_add_ps(a0[h], a1[h]), _mm256_set1_ps(s), acc[h]);
                bias[h] += b * qgsum[h][g];
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) o[h][i] = (kn_hsum256(acc[h]) + bias[h]) * scale;
    }
}

/* acc[h] += sum_i p[h][i] * row_i for G heads over affine rows, each 16
 * values widened once for all heads; per head and element, acc = (acc +
 * p b) + q (p s) row by row, whatever G. */
KN_INLINE void accum_affine(bool q4, float *const *acc, const float *const *p, const int G,
                            const uint8_t *rows, size_t stride, size_t n, size_t dim, const uint8_t *next)
{
    size_t ng = dim / KN_KV_GROUP, sbo = q4 ? dim / 2 : dim;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *row = rows + i * stride, *sb = row + sbo;
        if (next) prefetch_rows(next + i * stride, stride, 1, sbo + 4 * ng);
        for (size_t g = 0; g < ng; g++) {
            float s = kn_f16_to_f32(kn_ld_u16(sb, g)), b = kn_f16_to_f32(kn_ld_u16(sb, ng + g));
            __m256 ps[KN_GQA_MAX], pb[KN_GQA_MAX];
#pragma GCC unroll 4
            for (int h = 0; h < G; h++) ps[h] = _mm256_set1_ps(p[h][i] * s), pb[h] = _mm256_set1_ps(p[h][i] * b);
            for (size_t c = g * KN_KV_GROUP; c < (g + 1) * KN_KV_GROUP; c += 16) {
                __m256 f0, f1;
                ld_q16(q4, row, c, &f0, &f1);
#pragma GCC unroll 4
                for (int h = 0; h < G; h++) {
                    __m256 a0 = _mm256_add_ps(_mm256_loadu_ps(acc[h] + c), pb[h]);
                    __m256 a1 = _mm256_add_ps(_mm256_loadu_ps(acc[h] + c + 8), pb[h]);
                    _mm256_storeu_ps(acc[h] + c, _mm256_fmadd_ps(f0, ps[h], a0));
                    _mm256_storeu_ps(acc[h] + c + 8, _mm256_fmadd_ps(f1, ps[h], a1));
                }
            }
        }
    }
}

#define KV_AFFINE_FMT(name, Q4)                                                                \
    void kn_avx2_kv_scores_##name(const float *q, const float *qgsum, float scale,             \
                                  const uint8_t *rows, size_t stride, size_t n, size_t dim,    \
                                  float *out)                                                  \
    {                                                                                          \
        scores_affine(Q4, &q, &qgsum, 1, scale, rows, stride, n, dim, NULL, &out);             \
    }                                                                                          \
    void kn_avx2_kv_accum_##name(float *acc, const float *p, const uint8_t *rows,              \
                                 size_t stride, size_t n, size_t dim)                          \
    {                                                                                          \
        accum_affine(Q4, &acc, &p, 1, rows, stride, n, dim, NULL);                             \
    }                                                                                          \
    void kn_avx2_kv_scores_g_##name(const float *const *q, const float *const *qgsum, int g,  \
                                    float scale, const uint8_t *rows, size_t stride, size_t n, \
                                    size_t dim, const uint8_t *next, float *const *out)       \
    {                                                                                          \
        switch (g) {                                                                           \
        case 1: scores_affine(Q4, q, qgsum, 1, scale, rows, stride, n, dim, next, out); break; \
        case 2: scores_affine(Q4, q, qgsum, 2, scale, rows, stride, n, dim, next, out); break; \
        case 3: scores_affine(Q4, q, qgsum, 3, scale, rows, stride, n, dim, next, out); break; \
        default: scores_affine(Q4, q, qgsum, 4, scale, rows, stride, n, dim, next, out); break; \
        }                                                                                      \
    }                                                                                          \
    void kn_avx2_kv_accum_g_##name(float *const *acc, const float *const *p, int g,            \
                                   const uint8_t *rows, size_t stride, size_t n, size_t dim,   \
                                   const uint8_t *next)                                        \
    {                                                                                          \
        switch (g) {                                                                           \
        case 1: accum_affine(Q4, acc, p, 1, rows, stride, n, dim, next); break;                \
        case 2: accum_affine(Q4, acc, p, 2, rows, stride, n, dim, next); break;                \
        case 3: accum_affine(Q4, acc, p, 3, rows, stride, n, dim, next); break;                \
        default: accum_affine(Q4, acc, p, 4, rows, stride, n, dim, next); break;               \
        }                                                                                      \
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
