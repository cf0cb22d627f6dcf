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
    if (layout == KN_QX_PERMUTED128) {
        /* two 64-pieces [e0 o0][e1 o1] -> one 128-piece [e0 e1][o0 o1] */
        for (size_t c = 0; c + 128 <= cols; c += 128) {
            __m256i o0 = _mm256_loadu_si256((const __m256i *)(q + c + 32));
            __m256i e1 = _mm256_loadu_si256((const __m256i *)(q + c + 64));
            _mm256_storeu_si256((__m256i *)(q + c + 32), e1);
            _mm256_storeu_si256((__m256i *)(q + c + 64), o0);
        }
    }
}

/* ---- shared pieces ------------------------------------------------------------ */

typedef struct q_args {
    const kn_weight *w;
    const kn_qx *qx;
    size_t rb;                  /* data bytes per row */
    size_t ng;                  /* groups per row */
} q_args;

/* acc + sum over groups [0, gn) of bias'[g] * X[g], where bias' is bi[g]
 * (+ 128 * sc[g] for Q8, see the top comment). */
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

/* Scales and biases of groups [g0, g0 + gn) of row r, as f32. */
KN_INLINE void load_sb(const kn_weight *w, size_t ng, size_t r, size_t g0, size_t gn, float *sc,
                       float *bi)
{
    kn_scales_f32(w->scale_dtype, w->scales, r * ng + g0, gn, sc);
    kn_scales_f32(w->scale_dtype, w->biases, r * ng + g0, gn, bi);
}

/* ---- Q4 ------------------------------------------------------------------------- */

/* Integer dot of one 64-element chunk (32 weight bytes at wp) with the
 * evens/odds activations, as 8 f32 lanes: lanes 0-3 hold the first
 * 32-block's partial sums, lanes 4-7 the second's. */
KN_INLINE __m256 q4_isum(const uint8_t *wp, __m256i xe, __m256i xo)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i wv = _mm256_loadu_si256((const __m256i *)wp);
    __m256i lo = _mm256_and_si256(wv, m4);
    __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4);
    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xe), _mm256_maddubs_epi16(hi, xo));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

/* The same for a lone trailing 32-block (16 weight bytes), in lanes 0-3. */
KN_INLINE __m256 q4_isum_half(const uint8_t *wp, const int8_t *xq)
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i wv = _mm_loadu_si128((const __m128i *)wp);
    __m128i lo = _mm_and_si128(wv, m4);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(wv, 4), m4);
    __m128i xe = _mm_loadu_si128((const __m128i *)xq);
    __m128i xo = _mm_loadu_si128((const __m128i *)(xq + 16));
    __m128i p = _mm_add_epi16(_mm_maddubs_epi16(lo, xe), _mm_maddubs_epi16(hi, xo));
    __m128 f = _mm_cvtepi32_ps(_mm_madd_epi16(p, _mm_set1_epi16(1)));
    return _mm256_insertf128_ps(_mm256_setzero_ps(), f, 0);
}

/* Per-lane group scales of the chunk starting at group g: for GS 32 the
 * chunk spans groups g and g+1. */
KN_INLINE __m256 chunk_scale(const float *sc, size_t g, size_t GS)
{
    if (GS == 32) return _mm256_set_m128(_mm_broadcast_ss(sc + g + 1), _mm_broadcast_ss(sc + g));
    return _mm256_broadcast_ss(sc + g);
}

/* Decode: 4 rows from r, one token. Accumulators stay in registers. */
KN_INLINE void q4_rows4(const q_args *a, size_t r, float *y, size_t GS)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng, rb = a->rb;
    const uint8_t *w0 = (const uint8_t *)w->data + r * rb;
    const uint8_t *pf = kn_prefetch_base(w0, rb); /* 128 bytes per chunk */
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float sc[4][SEG], bi[4][SEG];
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        for (int i = 0; i < 4; i++) load_sb(w, ng, r + (size_t)i, g0, gn, sc[i], bi[i]);
        const float *gs = qx->gsum + g0;
        a0 = bias_term(a0, bi[0], sc[0], false, gs, gn);
        a1 = bias_term(a1, bi[1], sc[1], false, gs, gn);
        a2 = bias_term(a2, bi[2], sc[2], false, gs, gn);
        a3 = bias_term(a3, bi[3], sc[3], false, gs, gn);
        size_t c = g0 * GS, c_end = (g0 + gn) * GS;
        size_t step = GS == 32 ? 2 : 1; /* groups per scale fetch */
        for (size_t g = 0; c + 64 <= c_end; g += step) {
            __m256 s0 = chunk_scale(sc[0], g, GS), s1 = chunk_scale(sc[1], g, GS);
            __m256 s2 = chunk_scale(sc[2], g, GS), s3 = chunk_scale(sc[3], g, GS);
            for (size_t k = 0; k < (GS == 128 ? 2 : 1); k++, c += 64) {
                const int8_t *xq = qx->q + c;
                __m256i xe = _mm256_loadu_si256((const __m256i *)xq);
                __m256i xo = _mm256_loadu_si256((const __m256i *)(xq + 32));
                __m256 d = _mm256_loadu_ps(qx->d + c / 8);
                const uint8_t *wp = w0 + c / 2;
                _mm_prefetch((const char *)(pf + 2 * c), _MM_HINT_T0);
                _mm_prefetch((const char *)(pf + 2 * c + 64), _MM_HINT_T0);
                a0 = _mm256_fmadd_ps(q4_isum(wp, xe, xo), _mm256_mul_ps(d, s0), a0);
                a1 = _mm256_fmadd_ps(q4_isum(wp + rb, xe, xo), _mm256_mul_ps(d, s1), a1);
                a2 = _mm256_fmadd_ps(q4_isum(wp + 2 * rb, xe, xo), _mm256_mul_ps(d, s2), a2);
                a3 = _mm256_fmadd_ps(q4_isum(wp + 3 * rb, xe, xo), _mm256_mul_ps(d, s3), a3);
            }
        }
        if (c < c_end) { /* GS 32 with an odd block count: the last block */
            size_t g = gn - 1;
            float d = qx->d[c / 8];
            const uint8_t *wp = w0 + c / 2;
            a0 = _mm256_fmadd_ps(q4_isum_half(wp, qx->q + c), _mm256_set1_ps(d * sc[0][g]), a0);
            a1 = _mm256_fmadd_ps(q4_isum_half(wp + rb, qx->q + c), _mm256_set1_ps(d * sc[1][g]), a1);
            a2 = _mm256_fmadd_ps(q4_isum_half(wp + 2 * rb, qx->q + c), _mm256_set1_ps(d * sc[2][g]), a2);
            a3 = _mm256_fmadd_ps(q4_isum_half(wp + 3 * rb, qx->q + c), _mm256_set1_ps(d * sc[3][g]), a3);
        }
    }
    y[r] = kn_hsum256(a0);
    y[r + 1] = kn_hsum256(a1);
    y[r + 2] = kn_hsum256(a2);
    y[r + 3] = kn_hsum256(a3);
}

/* One row, NT (1 or 4) tokens from t0: each weight chunk is loaded once
 * and used for every token of the tile. */
KN_INLINE void q4_tokens(const q_args *a, size_t r, size_t t0, float *y, size_t ldy, int NT,
                         size_t GS)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng, cols = w->cols, nbd = cols / 8;
    const uint8_t *wr = (const uint8_t *)w->data + r * a->rb;
    const int8_t *x0 = qx->q + t0 * cols;
    const float *d0 = qx->d + t0 * nbd;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float sc[SEG], bi[SEG];
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        load_sb(w, ng, r, g0, gn, sc, bi);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
            acc[t] = bias_term(acc[t], bi, sc, false, qx->gsum + (t0 + (size_t)t) * ng + g0, gn);
        size_t c = g0 * GS, c_end = (g0 + gn) * GS;
        size_t step = GS == 32 ? 2 : 1;
        for (size_t g = 0; c + 64 <= c_end; g += step) {
            __m256 s = chunk_scale(sc, g, GS);
            for (size_t k = 0; k < (GS == 128 ? 2 : 1); k++, c += 64) {
                const __m256i m4 = _mm256_set1_epi8(0x0f);
                __m256i wv = _mm256_loadu_si256((const __m256i *)(wr + c / 2));
                __m256i lo = _mm256_and_si256(wv, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4);
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++) {
                    const int8_t *xq = x0 + (size_t)t * cols + c;
                    __m256i xe = _mm256_loadu_si256((const __m256i *)xq);
                    __m256i xo = _mm256_loadu_si256((const __m256i *)(xq + 32));
                    __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, xe),
                                                 _mm256_maddubs_epi16(hi, xo));
                    __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
                    __m256 d = _mm256_loadu_ps(d0 + (size_t)t * nbd + c / 8);
                    acc[t] = _mm256_fmadd_ps(f, _mm256_mul_ps(d, s), acc[t]);
                }
            }
        }
        if (c < c_end) {
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                float d = d0[(size_t)t * nbd + c / 8] * sc[gn - 1];
                acc[t] = _mm256_fmadd_ps(q4_isum_half(wr + c / 2, x0 + (size_t)t * cols + c),
                                         _mm256_set1_ps(d), acc[t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) y[(t0 + (size_t)t) * ldy + r] = kn_hsum256(acc[t]);
}

KN_INLINE void mm_q4_gs(const q_args *a, size_t r0, size_t r1, float *y, size_t ldy,
                        size_t n_tokens, size_t GS)
{
    if (n_tokens == 1) {
        size_t r = r0;
        for (; r + 4 <= r1; r += 4) q4_rows4(a, r, y, GS);
        for (; r < r1; r++) q4_tokens(a, r, 0, y, ldy, 1, GS);
        return;
    }
    for (size_t r = r0; r < r1; r++) {
        size_t t = 0;
        for (; t + 4 <= n_tokens; t += 4) q4_tokens(a, r, t, y, ldy, 4, GS);
        for (; t < n_tokens; t++) q4_tokens(a, r, t, y, ldy, 1, GS);
    }
}

void kn_avx2_mm_q4(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                   const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    q_args a = {.w = w, .qx = qx, .rb = w->cols / 2, .ng = w->cols / (size_t)w->group_size};
    if (w->group_size == 32) mm_q4_gs(&a, r0, r1, y, ldy, n_tokens, 32);
    else if (w->group_size == 64) mm_q4_gs(&a, r0, r1, y, ldy, n_tokens, 64);
    else mm_q4_gs(&a, r0, r1, y, ldy, n_tokens, 128);
}

/* ---- Q8 ------------------------------------------------------------------------- */

/* Integer dot of one 32-block (32 weight bytes) with its activations, via
 * |q - 128| x sign(xq, q - 128), as 8 f32 lanes. */
KN_INLINE __m256 q8_isum(const uint8_t *wp, __m256i xv)
{
    __m256i ws = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)wp), _mm256_set1_epi8((char)0x80));
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(ws), _mm256_sign_epi8(xv, ws));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

KN_INLINE void q8_rows4(const q_args *a, size_t r, float *y, size_t GS)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng, rb = a->rb;
    const uint8_t *w0 = (const uint8_t *)w->data + r * rb;
    const uint8_t *pf = kn_prefetch_base(w0, rb); /* 128 bytes per chunk */
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float sc[4][SEG], bi[4][SEG];
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        for (int i = 0; i < 4; i++) load_sb(w, ng, r + (size_t)i, g0, gn, sc[i], bi[i]);
        const float *gs = qx->gsum + g0;
        a0 = bias_term(a0, bi[0], sc[0], true, gs, gn);
        a1 = bias_term(a1, bi[1], sc[1], true, gs, gn);
        a2 = bias_term(a2, bi[2], sc[2], true, gs, gn);
        a3 = bias_term(a3, bi[3], sc[3], true, gs, gn);
        size_t c = g0 * GS;
        for (size_t g = 0; g < gn; g++) {
#pragma GCC unroll 4
            for (size_t k = 0; k < GS / 32; k++, c += 32) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(qx->q + c));
                __m256 d = _mm256_broadcast_ss(qx->d + c / 8);
                const uint8_t *wp = w0 + c;
                _mm_prefetch((const char *)(pf + 4 * c), _MM_HINT_T0);
                _mm_prefetch((const char *)(pf + 4 * c + 64), _MM_HINT_T0);
                a0 = _mm256_fmadd_ps(q8_isum(wp, xv), _mm256_mul_ps(d, _mm256_broadcast_ss(&sc[0][g])), a0);
                a1 = _mm256_fmadd_ps(q8_isum(wp + rb, xv), _mm256_mul_ps(d, _mm256_broadcast_ss(&sc[1][g])), a1);
                a2 = _mm256_fmadd_ps(q8_isum(wp + 2 * rb, xv), _mm256_mul_ps(d, _mm256_broadcast_ss(&sc[2][g])), a2);
                a3 = _mm256_fmadd_ps(q8_isum(wp + 3 * rb, xv), _mm256_mul_ps(d, _mm256_broadcast_ss(&sc[3][g])), a3);
            }
        }
    }
    y[r] = kn_hsum256(a0);
    y[r + 1] = kn_hsum256(a1);
    y[r + 2] = kn_hsum256(a2);
    y[r + 3] = kn_hsum256(a3);
}

KN_INLINE void q8_tokens(const q_args *a, size_t r, size_t t0, float *y, size_t ldy, int NT,
                         size_t GS)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng, cols = w->cols, nbd = cols / 8;
    const uint8_t *wr = (const uint8_t *)w->data + r * a->rb;
    const int8_t *x0 = qx->q + t0 * cols;
    const float *d0 = qx->d + t0 * nbd;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float sc[SEG], bi[SEG];
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        load_sb(w, ng, r, g0, gn, sc, bi);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
            acc[t] = bias_term(acc[t], bi, sc, true, qx->gsum + (t0 + (size_t)t) * ng + g0, gn);
        size_t c = g0 * GS;
        for (size_t g = 0; g < gn; g++) {
            __m256 s = _mm256_broadcast_ss(&sc[g]);
            for (size_t k = 0; k < GS / 32; k++, c += 32) {
                __m256i ws = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(wr + c)),
                                              _mm256_set1_epi8((char)0x80));
                __m256i wa = _mm256_abs_epi8(ws);
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++) {
                    __m256i xv = _mm256_loadu_si256((const __m256i *)(x0 + (size_t)t * cols + c));
                    __m256i p = _mm256_maddubs_epi16(wa, _mm256_sign_epi8(xv, ws));
                    __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
                    __m256 d = _mm256_broadcast_ss(d0 + (size_t)t * nbd + c / 8);
                    acc[t] = _mm256_fmadd_ps(f, _mm256_mul_ps(d, s), acc[t]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) y[(t0 + (size_t)t) * ldy + r] = kn_hsum256(acc[t]);
}

KN_INLINE void mm_q8_gs(const q_args *a, size_t r0, size_t r1, float *y, size_t ldy,
                        size_t n_tokens, size_t GS)
{
    if (n_tokens == 1) {
        size_t r = r0;
        for (; r + 4 <= r1; r += 4) q8_rows4(a, r, y, GS);
        for (; r < r1; r++) q8_tokens(a, r, 0, y, ldy, 1, GS);
        return;
    }
    for (size_t r = r0; r < r1; r++) {
        size_t t = 0;
        for (; t + 4 <= n_tokens; t += 4) q8_tokens(a, r, t, y, ldy, 4, GS);
        for (; t < n_tokens; t++) q8_tokens(a, r, t, y, ldy, 1, GS);
    }
}

void kn_avx2_mm_q8(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                   const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    q_args a = {.w = w, .qx = qx, .rb = w->cols, .ng = w->cols / (size_t)w->group_size};
    if (w->group_size == 32) mm_q8_gs(&a, r0, r1, y, ldy, n_tokens, 32);
    else if (w->group_size == 64) mm_q8_gs(&a, r0, r1, y, ldy, n_tokens, 64);
    else mm_q8_gs(&a, r0, r1, y, ldy, n_tokens, 128);
}
