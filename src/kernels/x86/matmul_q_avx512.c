/* matmul_q_avx512.c - AVX-512 (F/BW/VL + VNNI) matmul for the MLX affine
 * Q4/Q8 formats on int8 activations (same math as matmul_q_avx2.c, whose
 * top comment derives it). VPDPBUSD does u8 x s8 dot-4 into int32 without
 * intermediate saturation, so Q8 needs no sign trick and Q4 no madd.
 *
 * Q4 reads activations in the 128-element layout (kn_impl.h): a 64-byte
 * weight load gives [evens of 128 | ...] in its low nibbles, matching
 * [e0 e1 | o0 o1] of the activations; the int32 lanes 4k..4k+3 then hold
 * 32-block k of the piece, whose scale sits at qx->d[4k..4k+3]. Tails of
 * 64 and 32 elements use 256/128-bit forms of the same step.
 *
 * Only AVX512F/BW/VL/VNNI instructions are used (no DQ), matching what
 * cpu.c checks before choosing this table.
 *
 * Thread: any; a call writes only rows [r0, r1) of y.
 */
#include "kernels/x86/avx2_util.h"

enum { SEG = 128 };

#define KN_INLINE static inline __attribute__((always_inline))

typedef struct q_args {
    const kn_weight *w;
    const kn_qx *qx;
    size_t rb, ng;
} q_args;

KN_INLINE __m512 zext256(__m256 v)
{
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_setzero_pd(), _mm256_castps_pd(v), 0));
}

KN_INLINE float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

/* bias'[g] * X[g] over gn groups, into lane-summed acc (see avx2 file). */
KN_INLINE __m512 bias_term(__m512 acc, const float *bi, const float *sc, bool q8_fold,
                           const float *gsum, size_t gn)
{
    float rest = 0;
    for (size_t g = 0; g < gn; g++) rest += (bi[g] + (q8_fold ? 128.0f * sc[g] : 0.0f)) * gsum[g];
    return _mm512_add_ps(acc, zext256(_mm256_setr_ps(rest, 0, 0, 0, 0, 0, 0, 0)));
}

KN_INLINE void load_sb(const kn_weight *w, size_t ng, size_t r, size_t g0, size_t gn, float *sc,
                       float *bi)
{
    kn_scales_f32(w->scale_dtype, w->scales, r * ng + g0, gn, sc);
    kn_scales_f32(w->scale_dtype, w->biases, r * ng + g0, gn, bi);
}

/* ---- Q4 ------------------------------------------------------------------------- */

/* Per-lane scales of the 128-piece starting at group g. */
KN_INLINE __m512 piece_scale(const float *sc, size_t g, size_t GS)
{
    if (GS == 128) return _mm512_set1_ps(sc[g]);
    if (GS == 64) {
        __m512d lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm256_broadcast_ss(sc + g)));
        return _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(_mm256_broadcast_ss(sc + g + 1)), 1));
    }
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_loadu_ps(sc + g)));
}

/* 128 weights (64 bytes) against [evens | odds] activations. */
KN_INLINE __m512 q4_isum(const uint8_t *wp, __m512i xe, __m512i xo)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512i wv = _mm512_loadu_si512(wp);
    __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(wv, m4), xe);
    acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(wv, 4), m4), xo);
    return _mm512_cvtepi32_ps(acc);
}

/* A 64-element tail piece: lanes 0-3 / 4-7 hold its two blocks. */
KN_INLINE __m256 q4_isum64(const uint8_t *wp, const int8_t *xq)
{
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i wv = _mm256_loadu_si256((const __m256i *)wp);
    __m256i xe = _mm256_loadu_si256((const __m256i *)xq);
    __m256i xo = _mm256_loadu_si256((const __m256i *)(xq + 32));
    __m256i acc = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_and_si256(wv, m4), xe);
    acc = _mm256_dpbusd_epi32(acc, _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4), xo);
    return _mm256_cvtepi32_ps(acc);
}

/* A 32-element tail piece, lanes 0-3. */
KN_INLINE __m128 q4_isum32(const uint8_t *wp, const int8_t *xq)
{
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i wv = _mm_loadu_si128((const __m128i *)wp);
    __m128i xe = _mm_loadu_si128((const __m128i *)xq);
    __m128i xo = _mm_loadu_si128((const __m128i *)(xq + 16));
    __m128i acc = _mm_dpbusd_epi32(_mm_setzero_si128(), _mm_and_si128(wv, m4), xe);
    acc = _mm_dpbusd_epi32(acc, _mm_and_si128(_mm_srli_epi16(wv, 4), m4), xo);
    return _mm_cvtepi32_ps(acc);
}

/* Contribution of the tail of one row (after the last full 128-piece) at
 * column c, group gl of the segment's scale array, one token. */
KN_INLINE __m512 q4_tail(const uint8_t *wr, const int8_t *xq, const float *d, const float *sc,
                         size_t c, size_t c_end, size_t gl, size_t GS, __m512 acc)
{
    if (c + 64 <= c_end) {
        __m256 s = GS == 32 ? _mm256_set_m128(_mm_broadcast_ss(sc + gl + 1), _mm_broadcast_ss(sc + gl))
                            : _mm256_broadcast_ss(sc + gl);
        __m256 f = _mm256_mul_ps(q4_isum64(wr + c / 2, xq + c), _mm256_mul_ps(_mm256_loadu_ps(d + c / 8), s));
        acc = _mm512_add_ps(acc, zext256(f));
        c += 64;
        gl += 64 / GS;
    }
    if (c < c_end) {
        __m128 f = _mm_mul_ps(q4_isum32(wr + c / 2, xq + c), _mm_set1_ps(d[c / 8] * sc[gl]));
        acc = _mm512_add_ps(acc, zext256(_mm256_insertf128_ps(_mm256_setzero_ps(), f, 0)));
    }
    return acc;
}

KN_INLINE void q4_rows4(const q_args *a, size_t r, float *y, size_t GS)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng, rb = a->rb;
    const uint8_t *w0 = (const uint8_t *)w->data + r * rb;
    const uint8_t *pf = kn_prefetch_base(w0, rb); /* 256 bytes per piece */
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float sc[4][SEG], bi[4][SEG];
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        for (int i = 0; i < 4; i++) load_sb(w, ng, r + (size_t)i, g0, gn, sc[i], bi[i]);
        const float *gs = qx->gsum + g0;
        a0 = bias_term(a0, bi[0], sc[0], false, gs, gn);
        a1 = bias_term(a1, bi[1], sc[1], false, gs, gn);
        a2 = bias_term(a2, bi[2], sc[2], false, gs, gn);
        a3 = bias_term(a3, bi[3], sc[3], false, gs, gn);
        size_t c0 = g0 * GS, c = c0, c_end = (g0 + gn) * GS;
        for (; c + 128 <= c_end; c += 128) {
            size_t g = (c - c0) / GS;
            __m512i xe = _mm512_loadu_si512(qx->q + c);
            __m512i xo = _mm512_loadu_si512(qx->q + c + 64);
            __m512 d = _mm512_loadu_ps(qx->d + c / 8);
            const uint8_t *wp = w0 + c / 2;
            for (int k = 0; k < 4; k++) _mm_prefetch((const char *)(pf + 2 * c + 64 * k), _MM_HINT_T0);
            a0 = _mm512_fmadd_ps(q4_isum(wp, xe, xo), _mm512_mul_ps(d, piece_scale(sc[0], g, GS)), a0);
            a1 = _mm512_fmadd_ps(q4_isum(wp + rb, xe, xo), _mm512_mul_ps(d, piece_scale(sc[1], g, GS)), a1);
            a2 = _mm512_fmadd_ps(q4_isum(wp + 2 * rb, xe, xo), _mm512_mul_ps(d, piece_scale(sc[2], g, GS)), a2);
            a3 = _mm512_fmadd_ps(q4_isum(wp + 3 * rb, xe, xo), _mm512_mul_ps(d, piece_scale(sc[3], g, GS)), a3);
        }
        if (c < c_end) {
            size_t gl = (c - c0) / GS;
            a0 = q4_tail(w0, qx->q, qx->d, sc[0], c, c_end, gl, GS, a0);
            a1 = q4_tail(w0 + rb, qx->q, qx->d, sc[1], c, c_end, gl, GS, a1);
            a2 = q4_tail(w0 + 2 * rb, qx->q, qx->d, sc[2], c, c_end, gl, GS, a2);
            a3 = q4_tail(w0 + 3 * rb, qx->q, qx->d, sc[3], c, c_end, gl, GS, a3);
        }
    }
    y[r] = hsum512(a0);
    y[r + 1] = hsum512(a1);
    y[r + 2] = hsum512(a2);
    y[r + 3] = hsum512(a3);
}

KN_INLINE void q4_tokens(const q_args *a, size_t r, size_t t0, float *y, size_t ldy, int NT,
                         size_t GS)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng, cols = w->cols, nbd = cols / 8;
    const uint8_t *wr = (const uint8_t *)w->data + r * a->rb;
    const int8_t *x0 = qx->q + t0 * cols;
    const float *d0 = qx->d + t0 * nbd;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    float sc[SEG], bi[SEG];
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        load_sb(w, ng, r, g0, gn, sc, bi);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
            acc[t] = bias_term(acc[t], bi, sc, false, qx->gsum + (t0 + (size_t)t) * ng + g0, gn);
        size_t c0 = g0 * GS, c = c0, c_end = (g0 + gn) * GS;
        for (; c + 128 <= c_end; c += 128) {
            __m512 s = piece_scale(sc, (c - c0) / GS, GS);
            __m512i wv = _mm512_loadu_si512(wr + c / 2);
            __m512i lo = _mm512_and_si512(wv, m4);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(wv, 4), m4);
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                const int8_t *xq = x0 + (size_t)t * cols + c;
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512(xq));
                p = _mm512_dpbusd_epi32(p, hi, _mm512_loadu_si512(xq + 64));
                __m512 d = _mm512_loadu_ps(d0 + (size_t)t * nbd + c / 8);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(d, s), acc[t]);
            }
        }
        if (c < c_end) {
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++)
                acc[t] = q4_tail(wr, x0 + (size_t)t * cols, d0 + (size_t)t * nbd, sc, c, c_end,
                                 (c - c0) / GS, GS, acc[t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) y[(t0 + (size_t)t) * ldy + r] = hsum512(acc[t]);
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

void kn_avx512_mm_q4(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                     const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    q_args a = {.w = w, .qx = qx, .rb = w->cols / 2, .ng = w->cols / (size_t)w->group_size};
    if (w->group_size == 32) mm_q4_gs(&a, r0, r1, y, ldy, n_tokens, 32);
    else if (w->group_size == 64) mm_q4_gs(&a, r0, r1, y, ldy, n_tokens, 64);
    else mm_q4_gs(&a, r0, r1, y, ldy, n_tokens, 128);
}

/* ---- Q8 ------------------------------------------------------------------------- */

/* Per-lane block scales of the 64-element piece at c: [d0 x8 | d1 x8]. */
KN_INLINE __m512 q8_piece_d(const float *d, size_t c)
{
    const __m512i idx = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 4, 4, 4, 4, 4, 4, 4, 4);
    return _mm512_permutexvar_ps(idx, _mm512_castps256_ps512(_mm256_loadu_ps(d + c / 8)));
}

KN_INLINE __m512 q8_piece_scale(const float *sc, size_t g, size_t GS)
{
    if (GS != 32) return _mm512_set1_ps(sc[g]);
    __m512d lo = _mm512_castps_pd(_mm512_castps256_ps512(_mm256_broadcast_ss(sc + g)));
    return _mm512_castpd_ps(_mm512_insertf64x4(lo, _mm256_castps_pd(_mm256_broadcast_ss(sc + g + 1)), 1));
}

/* One row, NT tokens (decode and prefill share this; Q8 is twice the bytes
 * of Q4 per weight, so the per-row overhead matters less). */
KN_INLINE void q8_tokens(const q_args *a, size_t r, size_t t0, float *y, size_t ldy, int NT,
                         size_t GS)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng, cols = w->cols, nbd = cols / 8;
    const uint8_t *wr = (const uint8_t *)w->data + r * a->rb;
    const int8_t *x0 = qx->q + t0 * cols;
    const float *d0 = qx->d + t0 * nbd;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    float sc[SEG], bi[SEG];
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        load_sb(w, ng, r, g0, gn, sc, bi);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
            acc[t] = bias_term(acc[t], bi, sc, false, qx->gsum + (t0 + (size_t)t) * ng + g0, gn);
        size_t c0 = g0 * GS, c = c0, c_end = (g0 + gn) * GS;
        for (; c + 64 <= c_end; c += 64) {
            __m512 s = q8_piece_scale(sc, (c - c0) / GS, GS);
            __m512i wv = _mm512_loadu_si512(wr + c);
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv,
                                                _mm512_loadu_si512(x0 + (size_t)t * cols + c));
                __m512 d = q8_piece_d(d0 + (size_t)t * nbd, c);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_mul_ps(d, s), acc[t]);
            }
        }
        if (c < c_end) { /* a lone trailing 32-block (GS 32) */
            __m256i wv = _mm256_loadu_si256((const __m256i *)(wr + c));
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)(x0 + (size_t)t * cols + c));
                __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, xv);
                float ds = d0[(size_t)t * nbd + c / 8] * sc[(c - c0) / GS];
                __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(ds));
                acc[t] = _mm512_add_ps(acc[t], zext256(f));
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) y[(t0 + (size_t)t) * ldy + r] = hsum512(acc[t]);
}

KN_INLINE void mm_q8_gs(const q_args *a, size_t r0, size_t r1, float *y, size_t ldy,
                        size_t n_tokens, size_t GS)
{
    for (size_t r = r0; r < r1; r++) {
        size_t t = 0;
        for (; t + 4 <= n_tokens; t += 4) q8_tokens(a, r, t, y, ldy, 4, GS);
        for (; t < n_tokens; t++) q8_tokens(a, r, t, y, ldy, 1, GS);
    }
}

void kn_avx512_mm_q8(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                     const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    q_args a = {.w = w, .qx = qx, .rb = w->cols, .ng = w->cols / (size_t)w->group_size};
    if (w->group_size == 32) mm_q8_gs(&a, r0, r1, y, ldy, n_tokens, 32);
    else if (w->group_size == 64) mm_q8_gs(&a, r0, r1, y, ldy, n_tokens, 64);
    else mm_q8_gs(&a, r0, r1, y, ldy, n_tokens, 128);
}
