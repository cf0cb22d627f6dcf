/* matmul_q_avx2.c - AVX2 matmul for the MLX affine Q4/Q8 formats, on
 * activations quantized once per call to int8 per 32-element block.
 *
 * For a row, with s_g, b_g the group's scale and bias and x ~ d_k * xq:
 *   y = sum_g [ s_g * sum_{k in g} d_k * sum_{c in k} q_c xq_c ] + b_g * X_g
 * where X_g is the exact f32 sum of x over the group, so the bias term
 * carries no activation-quantization error (kn_impl.h, kn_qx).
 *
 * Q4: the low nibbles of 32 weight bytes are the 32 even elements of a
 * 64-element chunk and the high nibbles the odd ones, so the activations are
 * stored evens-then-odds per chunk and one maddubs (u8 0..15 x s8, no
 * saturation: 2 * 15 * 127 < 2^15) per half does 32 products with no weight
 * shuffle. Q8 (u8 0..255 would saturate maddubs) uses q - 128 with the
 * abs/sign trick (|q - 128| <= 128: 2 * 128 * 127 < 2^15) and folds
 * 128 * s_g into the bias: (b_g + 128 s_g) * X_g.
 *
 * Each pass handles up to 4 rows x 1 token (decode) or 1 row x 4 tokens
 * (prefill: each weight chunk is decoded once per tile of tokens).
 *
 * Thread: any; a call writes only rows [r0, r1) of y.
 */
#include "kernels/x86/avx2_util.h"

/* Scales and biases are converted to f32 for SEG groups at a time. */
enum { SEG = 128 };

#define KN_INLINE static inline __attribute__((always_inline))

/* ---- activation quantization ---------------------------------------------- */

/* Quantizes x[0..32) to int8 in natural order; returns the bytes and sets
 * *d (the block scale) and *sum (the f32 sum of the block). */
KN_INLINE __m256i quant32(const float *x, float *d, float *sum)
{
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float amax = _mm_cvtss_f32(h);
    *d = amax / 127.0f;
    *sum = kn_hsum256(_mm256_add_ps(_mm256_add_ps(v0, v1), _mm256_add_ps(v2, v3)));
    __m256 id = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    /* cvtps rounds to nearest even (MXCSR default); |x * id| <= 127 */
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, id));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, id));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, id));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, id));
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Natural-order bytes -> per 16-byte lane: 8 evens then 8 odds, then
 * qwords (0,2,1,3): [16 evens | 16 odds] of the block. */
KN_INLINE __m256i evens_odds(__m256i b)
{
    const __m256i sh = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2,
                                        4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(b, sh), 0xd8);
}

void kn_avx2_quantize(const float *x, kn_qx *qx, size_t t, kn_qx_layout layout)
{
    size_t cols = qx->cols, nb = cols / 32, bpg = (size_t)qx->group_size / 32;
    int8_t *q = qx->q + t * cols;
    float *d = qx->d + t * nb * 4, *gsum = qx->gsum + t * (cols / (size_t)qx->group_size);
    float gacc = 0;
    for (size_t b = 0; b < nb;) {
        float da, sa;
        __m256i a = quant32(x + 32 * b, &da, &sa);
        _mm_storeu_ps(d + 4 * b, _mm_set1_ps(da));
        gacc += sa;
        if (++b % bpg == 0) gsum[b / bpg - 1] = gacc, gacc = 0;
        if (layout == KN_QX_NATURAL) {
            _mm256_storeu_si256((__m256i *)(q + 32 * (b - 1)), a);
            continue;
        }
        if (b == nb) { /* a trailing half chunk */
            _mm256_storeu_si256((__m256i *)(q + 32 * (b - 1)), evens_odds(a));
            continue;
        }
        float db, sb;
        __m256i c = quant32(x + 32 * b, &db, &sb);
        _mm_storeu_ps(d + 4 * b, _mm_set1_ps(db));
        gacc += sb;
        if (++b % bpg == 0) gsum[b / bpg - 1] = gacc, gacc = 0;
        a = evens_odds(a);
        c = evens_odds(c);
        _mm256_storeu_si256((__m256i *)(q + 32 * (b - 2)), _mm256_permute2x128_si256(a, c, 0x20));
        _mm256_storeu_si256((__m256i *)(q + 32 * (b - 1)), _mm256_permute2x128_si256(a, c, 0x31));
    }
}

/* ---- shared pieces ------------------------------------------------------------ */

typedef struct q_args {
    const kn_weight *w;
    const kn_qx *qx;
    size_t rb;                  /* data bytes per row */
    size_t ng;                  /* groups per row */
} q_args;

/* acc += sum over groups [g0, g0 + gn) of bias'[g] * X_t[g], where bias' is
 * bi[g] (+ 128 * sc[g] for Q8). */
KN_INLINE __m256 bias_term(__m256 acc, const float *bi, const float *sc, bool q8,
                           const float *gsum, size_t gn)
{
    size_t g = 0;
    for (; g + 8 <= gn; g += 8) {
        __m256 b = _mm256_loadu_ps(bi + g);
        if (q8) b = _mm256_fmadd_ps(_mm256_set1_ps(128.0f), _mm256_loadu_ps(sc + g), b);
        acc = _mm256_fmadd_ps(b, _mm256_loadu_ps(gsum + g), acc);
    }
    float rest = 0;
    for (; g < gn; g++) rest += (bi[g] + (q8 ? 128.0f * sc[g] : 0.0f)) * gsum[g];
    return _mm256_add_ps(acc, _mm256_setr_ps(rest, 0, 0, 0, 0, 0, 0, 0));
}

/* ---- Q4 ------------------------------------------------------------------------- */

/* R rows from r, T tokens from t0 (R * T <= 4 accumulators' worth). */
KN_INLINE void q4_tile(const q_args *a, size_t r, size_t t0, float *y, size_t ldy, int R, int T)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t cols = w->cols, gs = (size_t)w->group_size, nbd = cols / 8, ng = a->ng;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4][4];
    float sc[4][SEG], bi[4][SEG];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[i][t] = _mm256_setzero_ps();
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            kn_scales_f32(w->scale_dtype, w->scales, (r + (size_t)i) * ng + g0, gn, sc[i]);
            kn_scales_f32(w->scale_dtype, w->biases, (r + (size_t)i) * ng + g0, gn, bi[i]);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc[i][t] = bias_term(acc[i][t], bi[i], sc[i], false,
                                      qx->gsum + (t0 + (size_t)t) * ng + g0, gn);
        }
        size_t c0 = g0 * gs, c1 = (g0 + gn) * gs, c = c0;
        for (; c + 64 <= c1; c += 64) {
            size_t gl = (c - c0) / gs;
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                __m256 s = gs == 32 ? _mm256_set_m128(_mm_broadcast_ss(&sc[i][gl + 1]),
                                                      _mm_broadcast_ss(&sc[i][gl]))
                                    : _mm256_broadcast_ss(&sc[i][gl]);
                const uint8_t *wp = (const uint8_t *)w->data + (r + (size_t)i) * a->rb + c / 2;
                __m256i wv = _mm256_loadu_si256((const __m256i *)wp);
                __m256i lo = _mm256_and_si256(wv, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const int8_t *xq = qx->q + (t0 + (size_t)t) * cols + c;
                    __m256i xe = _mm256_loadu_si256((const __m256i *)xq);
                    __m256i xo = _mm256_loadu_si256((const __m256i *)(xq + 32));
                    __m256 dx = _mm256_loadu_ps(qx->d + (t0 + (size_t)t) * nbd + c / 8);
                    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xe),
                                                 _mm256_maddubs_epi16(hi, xo));
                    __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                    acc[i][t] = _mm256_fmadd_ps(f, _mm256_mul_ps(dx, s), acc[i][t]);
                }
            }
        }
        if (c < c1) { /* the trailing 32-block of a row with an odd block count */
            size_t gl = (c - c0) / gs;
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                const uint8_t *wp = (const uint8_t *)w->data + (r + (size_t)i) * a->rb + c / 2;
                __m128i wv = _mm_loadu_si128((const __m128i *)wp);
                __m128i lo = _mm_and_si128(wv, _mm256_castsi256_si128(m4));
                __m128i hi = _mm_and_si128(_mm_srli_epi16(wv, 4), _mm256_castsi256_si128(m4));
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const int8_t *xq = qx->q + (t0 + (size_t)t) * cols + c;
                    __m128i xe = _mm_loadu_si128((const __m128i *)xq);
                    __m128i xo = _mm_loadu_si128((const __m128i *)(xq + 16));
                    __m128i p = _mm_add_epi16(_mm_maddubs_epi16(lo, xe), _mm_maddubs_epi16(hi, xo));
                    __m128 f = _mm_cvtepi32_ps(_mm_madd_epi16(p, _mm256_castsi256_si128(ones)));
                    float ds = qx->d[(t0 + (size_t)t) * nbd + c / 8] * sc[i][gl];
                    __m256 f8 = _mm256_insertf128_ps(_mm256_setzero_ps(), f, 0);
                    acc[i][t] = _mm256_fmadd_ps(f8, _mm256_set1_ps(ds), acc[i][t]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[(t0 + (size_t)t) * ldy + r + (size_t)i] = kn_hsum256(acc[i][t]);
}

void kn_avx2_mm_q4(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                   const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    q_args a = {.w = w, .qx = qx, .rb = w->cols / 2, .ng = w->cols / (size_t)w->group_size};
    if (n_tokens == 1) {
        size_t r = r0;
        for (; r + 4 <= r1; r += 4) q4_tile(&a, r, 0, y, ldy, 4, 1);
        for (; r < r1; r++) q4_tile(&a, r, 0, y, ldy, 1, 1);
        return;
    }
    for (size_t r = r0; r < r1; r++) {
        size_t t = 0;
        for (; t + 4 <= n_tokens; t += 4) q4_tile(&a, r, t, y, ldy, 1, 4);
        for (; t < n_tokens; t++) q4_tile(&a, r, t, y, ldy, 1, 1);
    }
}

/* ---- Q8 ------------------------------------------------------------------------- */

KN_INLINE void q8_tile(const q_args *a, size_t r, size_t t0, float *y, size_t ldy, int R, int T)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t cols = w->cols, gs = (size_t)w->group_size, nbd = cols / 8, ng = a->ng;
    const __m256i bias8 = _mm256_set1_epi8((char)0x80);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4][4];
    float sc[4][SEG], bi[4][SEG];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[i][t] = _mm256_setzero_ps();
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            kn_scales_f32(w->scale_dtype, w->scales, (r + (size_t)i) * ng + g0, gn, sc[i]);
            kn_scales_f32(w->scale_dtype, w->biases, (r + (size_t)i) * ng + g0, gn, bi[i]);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc[i][t] = bias_term(acc[i][t], bi[i], sc[i], true,
                                      qx->gsum + (t0 + (size_t)t) * ng + g0, gn);
        }
        for (size_t c = g0 * gs; c < (g0 + gn) * gs; c += 32) {
            size_t gl = c / gs - g0;
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                const uint8_t *wp = (const uint8_t *)w->data + (r + (size_t)i) * a->rb + c;
                __m256i ws = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)wp), bias8);
                __m256i wa = _mm256_abs_epi8(ws); /* |q - 128| as u8 (128 stays 0x80) */
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const int8_t *xq = qx->q + (t0 + (size_t)t) * cols + c;
                    __m256i xv = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)xq), ws);
                    __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(wa, xv), ones);
                    float ds = qx->d[(t0 + (size_t)t) * nbd + c / 8] * sc[i][gl];
                    acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(ds), acc[i][t]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) y[(t0 + (size_t)t) * ldy + r + (size_t)i] = kn_hsum256(acc[i][t]);
}

void kn_avx2_mm_q8(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                   const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    q_args a = {.w = w, .qx = qx, .rb = w->cols, .ng = w->cols / (size_t)w->group_size};
    if (n_tokens == 1) {
        size_t r = r0;
        for (; r + 4 <= r1; r += 4) q8_tile(&a, r, 0, y, ldy, 4, 1);
        for (; r < r1; r++) q8_tile(&a, r, 0, y, ldy, 1, 1);
        return;
    }
    for (size_t r = r0; r < r1; r++) {
        size_t t = 0;
        for (; t + 4 <= n_tokens; t += 4) q8_tile(&a, r, t, y, ldy, 1, 4);
        for (; t < n_tokens; t++) q8_tile(&a, r, t, y, ldy, 1, 1);
    }
}

