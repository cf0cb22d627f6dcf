/* kv_avx512.c - AVX-512 row kernels of attention for F16 and BF16 KV rows
 * (the default KV format and its sibling), single-head and GQA: scores
 * (scale * q . k) and the weighted sum of V rows, 16 columns per vector.
 *
 * Same structure as kv_avx2.c: scores take 4 rows per pass and reduce
 * their 4 accumulators together; the GQA form runs up to KN_GQA_MAX query
 * heads over each converted row. Per (head, row) the FMA chain over the
 * columns and the reduction tree are fixed, and the V sum is one FMA
 * chain per (head, 16 columns) over the rows in order, so the GQA forms
 * give the single-head results bit for bit. A row count that is not a
 * multiple of 4 re-reads the pass's last row for the missing lanes (each
 * lane's sum is its own row's) and stores only the real ones.
 *
 * Head dims that are not a multiple of 16 go to the AVX2 kernels (for
 * single-head and GQA calls alike, so the two still agree).
 *
 * Thread: any (pure functions of their arguments).
 */
#include "kernels/x86/avx512_util.h"

#define KN_INLINE static inline __attribute__((always_inline))

KN_INLINE __m256 half_sum(__m512 a)
{
    return _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
}

/* [sum a0, sum a1, sum a2, sum a3] of 16 lanes each. */
KN_INLINE __m128 hsum4x16(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
    __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(half_sum(a0), half_sum(a1)),
                              _mm256_hadd_ps(half_sum(a2), half_sum(a3)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

KN_INLINE void scores_gx(bool bf16, const float *const *q, const int G, float scale,
                         const uint8_t *rows, size_t stride, size_t n, size_t dim,
                         const uint8_t *next, float *const *o)
{
    const __m128 sv = _mm_set1_ps(scale);
    for (size_t i = 0; i < n; i += 4) {
        const uint8_t *r[4];
        for (size_t k = 0; k < 4; k++) r[k] = rows + (i + k < n ? i + k : n - 1) * stride;
        if (next)
            for (size_t k = 0; k < 4 && i + k < n; k++)
                for (size_t b = 0; b < 2 * dim; b += 64)
                    _mm_prefetch((const char *)(next + (i + k) * stride + b), _MM_HINT_T1);
        __m512 a[KN_GQA_MAX][4];
#pragma GCC unroll 4
        for (int h = 0; h < G; h++)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) a[h][k] = _mm512_setzero_ps();
        for (size_t c = 0; c < dim; c += 16) {
            __m512 kv[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) kv[k] = kn_ld16_h(r[k] + 2 * c, bf16);
#pragma GCC unroll 4
            for (int h = 0; h < G; h++) {
                __m512 x = _mm512_loadu_ps(q[h] + c);
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) a[h][k] = _mm512_fmadd_ps(x, kv[k], a[h][k]);
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) {
            __m128 s = _mm_mul_ps(hsum4x16(a[h][0], a[h][1], a[h][2], a[h][3]), sv);
            if (i + 4 <= n) {
                _mm_storeu_ps(o[h] + i, s);
            } else {
                float t[4];
                _mm_storeu_ps(t, s);
                memcpy(o[h] + i, t, (n - i) * sizeof(float));
            }
        }
    }
}

/* acc[h][c, c + 16 W) += sum_i p[h][i] * row_i, G x W accumulators held
 * over all rows. */
KN_INLINE void accum_slice(bool bf16, float *const *acc, const float *const *p, const int G,
                           const int W, const uint8_t *rows, size_t stride, size_t n, size_t c,
                           const uint8_t *next, size_t rbytes)
{
    __m512 a[KN_GQA_MAX][4];
#pragma GCC unroll 4
    for (int h = 0; h < G; h++)
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) a[h][w] = _mm512_loadu_ps(acc[h] + c + 16 * w);
    const uint8_t *row = rows;
    for (size_t i = 0; i < n; i++, row += stride) {
        if (next)
            for (size_t b = 0; b < rbytes; b += 64) _mm_prefetch((const char *)(next + i * stride + b), _MM_HINT_T1);
        __m512 pb[KN_GQA_MAX];
#pragma GCC unroll 4
        for (int h = 0; h < G; h++) pb[h] = _mm512_set1_ps(p[h][i]);
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) {
            __m512 v = kn_ld16_h(row + 2 * (c + 16 * (size_t)w), bf16);
#pragma GCC unroll 4
            for (int h = 0; h < G; h++) a[h][w] = _mm512_fmadd_ps(pb[h], v, a[h][w]);
        }
    }
#pragma GCC unroll 4
    for (int h = 0; h < G; h++)
#pragma GCC unroll 4
        for (int w = 0; w < W; w++) _mm512_storeu_ps(acc[h] + c + 16 * w, a[h][w]);
}

KN_INLINE void accum_gx(bool bf16, float *const *acc, const float *const *p, const int G,
                        const uint8_t *rows, size_t stride, size_t n, size_t dim, const uint8_t *next)
{
    size_t c = 0;
    for (; c + 64 <= dim; c += 64) accum_slice(bf16, acc, p, G, 4, rows, stride, n, c, c ? NULL : next, 2 * dim);
    for (; c < dim; c += 16) accum_slice(bf16, acc, p, G, 1, rows, stride, n, c, c ? NULL : next, 2 * dim);
}

#define KV16_FMT(name, BF)                                                                          \
    void kn_avx512_kv_scores_##name(const float *q, const float *qgsum, float scale,               \
                                    const uint8_t *rows, size_t stride, size_t n, size_t dim,      \
                                    float *out)                                                    \
    {                                                                                              \
        if (dim % 16) {                                                                            \
            kn_avx2_kv_scores_##name(q, qgsum, scale, rows, stride, n, dim, out);                  \
            return;                                                                                \
        }                                                                                          \
        scores_gx(BF, &q, 1, scale, rows, stride, n, dim, NULL, &out);                             \
    }                                                                                              \
    void kn_avx512_kv_accum_##name(float *acc, const float *p, const uint8_t *rows, size_t stride, \
                                   size_t n, size_t dim)                                           \
    {                                                                                              \
        if (dim % 16) {                                                                            \
            kn_avx2_kv_accum_##name(acc, p, rows, stride, n, dim);                                 \
            return;                                                                                \
        }                                                                                          \
        accum_gx(BF, &acc, &p, 1, rows, stride, n, dim, NULL);                                     \
    }                                                                                              \
    void kn_avx512_kv_scores_g_##name(const float *const *q, const float *const *qgsum, int g,     \
                                      float scale, const uint8_t *rows, size_t stride, size_t n,   \
                                      size_t dim, const uint8_t *next, float *const *out)          \
    {                                                                                              \
        if (dim % 16) {                                                                            \
            kn_avx2_kv_scores_g_##name(q, qgsum, g, scale, rows, stride, n, dim, next, out);       \
            return;                                                                                \
        }                                                                                          \
        switch (g) {                                                                               \
        case 1: scores_gx(BF, q, 1, scale, rows, stride, n, dim, next, out); break;                \
        case 2: scores_gx(BF, q, 2, scale, rows, stride, n, dim, next, out); break;                \
        case 3: scores_gx(BF, q, 3, scale, rows, stride, n, dim, next, out); break;                \
        default: scores_gx(BF, q, 4, scale, rows, stride, n, dim, next, out); break;               \
        }                                                                                          \
    }                                                                                              \
    void kn_avx512_kv_accum_g_##name(float *const *acc, const float *const *p, int g,              \
                                     const uint8_t *rows, size_t stride, size_t n, size_t dim,     \
                                     const uint8_t *next)                                          \
    {                                                                                              \
        if (dim % 16) {                                                                            \
            kn_avx2_kv_accum_g_##name(acc, p, g, rows, stride, n, dim, next);                      \
            return;                                                                                \
        }                                                                                          \
        switch (g) {                                                                               \
        case 1: accum_gx(BF, acc, p, 1, rows, stride, n, dim, next); break;                        \
        case 2: accum_gx(BF, acc, p, 2, rows, stride, n, dim, next); break;                        \
        case 3: accum_gx(BF, acc, p, 3, rows, stride, n, dim, next); break;                        \
        default: accum_gx(BF, acc, p, 4, rows, stride, n, dim, next); break;                       \
        }                                                                                          \
    }

KV16_FMT(f16, false)
KV16_FMT(bf16, true)
