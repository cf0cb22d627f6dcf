/* matmul_f_avx2.c - AVX2+FMA matmul for F32, F16 (F16C) and BF16 weights:
 * each 8-element piece of a weight row is converted to f32 once and
 * multiplied into up to 4 rows x 1 token (decode) or 2 rows x 4 tokens
 * (prefill) accumulators. A ragged tail is read through a zero-padded copy
 * (weights) and a masked load (x), so no byte past a row is touched.
 *
 * Thread: any; a call writes only rows [r0, r1) of y.
 */
#include "kernels/x86/avx2_util.h"

#define KN_INLINE static inline __attribute__((always_inline))

KN_INLINE __m256 ld_w8(kn_dtype dt, const uint8_t *row, size_t c)
{
    if (dt == KN_F32) return _mm256_loadu_ps((const float *)(row + 4 * c));
    if (dt == KN_F16) return kn_ld8_f16(row + 2 * c);
    return kn_ld8_bf16(row + 2 * c);
}

/* The last n < 8 weights of a row from c, zero-padded. */
KN_INLINE __m256 ld_w_tail(kn_dtype dt, const uint8_t *row, size_t c, size_t n)
{
    float tmp[8] = {0};
    for (size_t i = 0; i < n; i++) tmp[i] = kn_scale_at(dt, row, c + i);
    return _mm256_loadu_ps(tmp);
}

KN_INLINE __m256i tail_mask(size_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

KN_INLINE void f_tile(kn_dtype dt, const kn_weight *w, size_t r, size_t t0, const float *x,
                      size_t ldx, float *y, size_t ldy, int R, int T)
{
    size_t cols = w->cols, esz = dt == KN_F32 ? 4 : 2;
    const uint8_t *rows[4];
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        rows[i] = (const uint8_t *)w->data + (r + (size_t)i) * cols * esz;
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[i][t] = _mm256_setzero_ps();
    }
    /* decode (4 rows, 1 token): 32 * esz bytes of a tile ahead per step */
    const uint8_t *pf = kn_prefetch_base(rows[0], cols * esz);
    size_t c = 0;
    for (; c + 8 <= cols; c += 8) {
        if (R == 4 && T == 1) {
            _mm_prefetch((const char *)(pf + 4 * esz * c), _MM_HINT_T0);
            if (esz == 4) _mm_prefetch((const char *)(pf + 4 * esz * c + 64), _MM_HINT_T0);
        }
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m256 wv = ld_w8(dt, rows[i], c);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc[i][t] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x + (t0 + (size_t)t) * ldx + c),
                                            acc[i][t]);
        }
    }
    if (c < cols) {
        __m256i m = tail_mask(cols - c);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            __m256 wv = ld_w_tail(dt, rows[i], c, cols - c);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc[i][t] = _mm256_fmadd_ps(wv, _mm256_maskload_ps(x + (t0 + (size_t)t) * ldx + c, m),
                                            acc[i][t]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[(t0 + (size_t)t) * ldy + r + (size_t)i] = kn_hsum256(acc[i][t]);
}

KN_INLINE void mm_float(kn_dtype dt, const kn_weight *w, size_t r0, size_t r1, const float *x,
                        size_t ldx, float *y, size_t ldy, size_t n_tokens)
{
    if (n_tokens == 1) {
        size_t r = r0;
        for (; r + 4 <= r1; r += 4) f_tile(dt, w, r, 0, x, ldx, y, ldy, 4, 1);
        for (; r < r1; r++) f_tile(dt, w, r, 0, x, ldx, y, ldy, 1, 1);
        return;
    }
    size_t r = r0;
    for (; r + 2 <= r1; r += 2) {
        size_t t = 0;
        for (; t + 4 <= n_tokens; t += 4) f_tile(dt, w, r, t, x, ldx, y, ldy, 2, 4);
        for (; t < n_tokens; t++) f_tile(dt, w, r, t, x, ldx, y, ldy, 2, 1);
    }
    for (; r < r1; r++) {
        size_t t = 0;
        for (; t + 4 <= n_tokens; t += 4) f_tile(dt, w, r, t, x, ldx, y, ldy, 1, 4);
        for (; t < n_tokens; t++) f_tile(dt, w, r, t, x, ldx, y, ldy, 1, 1);
    }
}

void kn_avx2_mm_f32(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                    const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)qx;
    mm_float(KN_F32, w, r0, r1, x, ldx, y, ldy, n_tokens);
}

void kn_avx2_mm_f16(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                    const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)qx;
    mm_float(KN_F16, w, r0, r1, x, ldx, y, ldy, n_tokens);
}

void kn_avx2_mm_bf16(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                     const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)qx;
    mm_float(KN_BF16, w, r0, r1, x, ldx, y, ldy, n_tokens);
}
