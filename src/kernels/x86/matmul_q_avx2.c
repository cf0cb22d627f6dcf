/* matmul_q_avx2.c - AVX2 matmul for the MLX affine Q4/Q8 formats, on
 * activations quantized once per call per 32-element block: to int16 (the
 * default tables) or to int8 (the opt-in _int8 tables).
 *
 * For a row, with s_g, b_g the group's scale and bias and x ~ d_k * xq:
 *   y = sum_g [ s_g * sum_{k in g} d_k * sum_{c in k} q_c xq_c ] + b_g * X_g
 * where X_g is the exact f32 sum of x over the group, so the bias term
 * carries no activation-quantization error (kn_impl.h, kn_qx). The integer
 * dot products are exact, so the only rounding besides f32 arithmetic is
 * that of x.
 *
 * int16 (ACT 16), pmaddwd, the default: x ~ d_k * h, d_k = amax_k /
 * 32767, h = round(x / d_k): a rounding error of at most amax_k / 65534 per
 * element, 256 times smaller than int8's (the reference tests' tolerance
 * for Q4/Q8 is stated in tests/model/check_reference.py). Q4 reads 32
 * weight bytes as 16 u16 lanes of four nibbles each; three shifts and
 * masks give elements 4j, 4j+1, 4j+2, 4j+3 of the 64-element chunk in lane
 * j of four vectors, so the activations are stored in that order (kn_qx,
 * KN_QX_I16_Q4) and four pmaddwd (u4 x s16, pairs summed in s32) do 64
 * products. Q8 reads 32 weight bytes as 16 u16 lanes: low bytes (even
 * elements) and high bytes (odd) against activations stored
 * evens-then-odds per 32-block.
 *
 * int8 (ACT 8), pmaddubsw: Q4 takes the low nibbles of 32 weight bytes as
 * the 32 even elements of a 64-element chunk and the high nibbles as the
 * odd ones, so the activations are stored evens-then-odds per chunk and
 * one maddubs (u8 0..15 x s8, no saturation: 2 * 15 * 127 < 2^15) per half
 * does 32 products with no weight shuffle. Q8 (u8 0..255 would saturate
 * maddubs) uses q - 128 with the abs/sign trick (|q - 128| <= 128: 2 * 128
 * * 127 < 2^15) and folds 128 * s_g into the bias: (b_g + 128 s_g) * X_g.
 *
 * Both give, per 64-element chunk, 8 s32 lanes of which 0-3 belong to the
 * chunk's first 32-block and 4-7 to its second (Q8: one 32-block), so the
 * f32 folding that follows is shared.
 *
 * Each pass handles up to 4 rows x 1 token (decode) or 1 row x 4 tokens
 * (batched decode and prefill: each weight chunk is unpacked once per tile
 * of tokens, and the tiles of a row range run one after another over the
 * same rows, which stay in L2 while the tile's activations stay in L1).
 * Per (row, token) both do the same f32 operations in the same order on
 * the same exact integer sums, so a token's result does not depend on the
 * other tokens of the call (batch-invariant, bit for bit).
 *
 * Thread: any; a call writes only rows [r0, r1) of y.
 */
#include "kernels/x86/avx2_util.h"

/* Scales and biases are converted to f32 for SEG groups at a time. */
enum { SEG = 128 };

#define KN_INLINE static inline __attribute__((always_inline))

/* ---- activation quantization ---------------------------------------------- */

/* The block's amax, its scale d = amax / qmax and its f32 sum; returns
 * qmax / amax (0 for an all-zero block). */
KN_INLINE float block_stats(const __m256 v[4], float qmax, float *d, float *sum)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float amax = _mm_cvtss_f32(h);
    *d = amax / qmax;
    *sum = kn_hsum256(_mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3])));
    return amax > 0 ? qmax / amax : 0.0f;
}

/* Quantizes x[0..32) to int8 in natural order; returns the bytes and sets
 * *d (the block scale) and *sum (the f32 sum of the block). */
KN_INLINE __m256i quant32(const float *x, float *d, float *sum)
{
    __m256 v[4] = {_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8), _mm256_loadu_ps(x + 16),
                   _mm256_loadu_ps(x + 24)};
    __m256 id = _mm256_set1_ps(block_stats(v, 127.0f, d, sum));
    /* cvtps rounds to nearest even (MXCSR default); |x * id| <= 127 */
    __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], id));
    __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], id));
    __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], id));
    __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], id));
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Packs 32 int32 lanes (natural order) to int16 into q[32]. */
KN_INLINE void pack32_i16(const __m256i i[4], int16_t *q)
{
    __m256i a = _mm256_packs_epi32(i[0], i[1]), b = _mm256_packs_epi32(i[2], i[3]);
    _mm256_storeu_si256((__m256i *)q, _mm256_permute4x64_epi64(a, 0xd8));
    _mm256_storeu_si256((__m256i *)(q + 16), _mm256_permute4x64_epi64(b, 0xd8));
}

/* Quantizes x[0..32) to int16 in natural order: q[32] = round(x * id),
 * id = qmax / amax, so x ~ d * q. */
KN_INLINE void quant32_i16(const float *x, int16_t *q, float qmax, float *d, float *sum)
{
    __m256 v[4] = {_mm256_loadu_ps(x), _mm256_loadu_ps(x + 8), _mm256_loadu_ps(x + 16),
                   _mm256_loadu_ps(x + 24)};
    __m256 id = _mm256_set1_ps(block_stats(v, qmax, d, sum));
    __m256i h[4];
    /* |x * id| <= 32767 up to one rounding, and packs saturates */
    for (int k = 0; k < 4; k++) h[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], id));
    pack32_i16(h, q);
}

/* Natural-order bytes -> per 16-byte lane: 8 evens then 8 odds, then
 * qwords (0,2,1,3): [16 evens | 16 odds] of the block. */
KN_INLINE __m256i evens_odds(__m256i b)
{
    const __m256i sh = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2,
                                        4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(b, sh), 0xd8);
}

/* The int16 layouts (kn_impl.h): a piece of n elements stored as `ways`
 * vectors, vector p holding elements p, p + ways, p + 2 ways, ... */
static void store_strided(const int16_t *nat, int16_t *out, size_t n, size_t ways)
{
    for (size_t p = 0; p < ways; p++)
        for (size_t j = 0; j < n / ways; j++) out[p * (n / ways) + j] = nat[j * ways + p];
}

/* store_strided(nat, out, 64, 4) in registers (the Q4 chunk; it runs on
 * the calling thread before every decode matmul). Each 128-bit lane L
 * (elements 8L .. 8L+7) is shuffled to the dwords (e_p, e_p+4) of planes
 * p = 0..3, the 8 x 4 dwords are transposed with unpacks, and a final
 * permute puts the lanes in order. */
static void store_q4_chunk(const int16_t *nat, int16_t *out)
{
    const __m256i pair = _mm256_setr_epi8(0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15,
                                          0, 1, 8, 9, 2, 3, 10, 11, 4, 5, 12, 13, 6, 7, 14, 15);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256i a = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)nat), pair);
    __m256i b = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(nat + 16)), pair);
    __m256i c = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(nat + 32)), pair);
    __m256i d = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(nat + 48)), pair);
    __m256i t0 = _mm256_unpacklo_epi32(a, b), t1 = _mm256_unpackhi_epi32(a, b);
    __m256i t2 = _mm256_unpacklo_epi32(c, d), t3 = _mm256_unpackhi_epi32(c, d);
    __m256i p[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2),
                    _mm256_unpacklo_epi64(t1, t3), _mm256_unpackhi_epi64(t1, t3)};
    for (int k = 0; k < 4; k++)
        _mm256_storeu_si256((__m256i *)(out + 16 * k), _mm256_permutevar8x32_epi32(p[k], order));
}

/* store_strided(nat, out, 32, 2) in registers (the Q8 block): evens, then
 * odds. */
static void store_q8_block(const int16_t *nat, int16_t *out)
{
    const __m256i eo = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15,
                                        0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    __m256i a = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)nat), eo);
    __m256i b = _mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i *)(nat + 16)), eo);
    _mm256_storeu_si256((__m256i *)out, _mm256_permute4x64_epi64(_mm256_unpacklo_epi64(a, b), 0xd8));
    _mm256_storeu_si256((__m256i *)(out + 16), _mm256_permute4x64_epi64(_mm256_unpackhi_epi64(a, b), 0xd8));
}

/* KN_QX_I16_SPLIT: a block's 32 int16 as hi and lo byte planes, per 8
 * elements in the order 0, 2, 4, 6, 1, 3, 5, 7. Element e's low byte is
 * byte 2e of its int16, its high byte (h >> 8 as s8) byte 2e + 1. */
static void store_split_block(const int16_t *nat, uint8_t *hi, uint8_t *lo)
{
    const __m128i planes = _mm_setr_epi8(0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15);
    for (int k = 0; k < 4; k++) {
        __m128i v = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(nat + 8 * k)), planes);
        _mm_storel_epi64((__m128i *)(lo + 8 * k), v);
        _mm_storel_epi64((__m128i *)(hi + 8 * k), _mm_unpackhi_epi64(v, v));
    }
}

/* KN_QX_I16_SPLIT8: a block's 32 int16 (|h| <= 32639) as two s8 planes
 * in natural order, h = 256 hi + lo, hi = (h + 128) >> 8 (|hi| <= 127),
 * lo = h - 256 hi (-128 .. 127). */
static void store_split8_block(const int16_t *nat, uint8_t *hi, uint8_t *lo)
{
    for (int k = 0; k < 2; k++) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(nat + 16 * k));
        __m256i u = _mm256_srai_epi16(_mm256_add_epi16(h, _mm256_set1_epi16(128)), 8);
        __m256i l = _mm256_sub_epi16(h, _mm256_slli_epi16(u, 8));
        /* per lane [u 8 | l 8], then qwords (0, 2, 1, 3): [u 16 | l 16] */
        __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi16(u, l), 0xd8);
        _mm_storeu_si128((__m128i *)(hi + 16 * k), _mm256_castsi256_si128(p));
        _mm_storeu_si128((__m128i *)(lo + 16 * k), _mm256_extracti128_si256(p, 1));
    }
}

/* Quantizes token t's row for the int16 kernels, in the layout's order.
 * KN_QX_I16_SPLIT8 quantizes to 32639 instead of 32767, so that its hi
 * byte stays within s8. */
static void quantize_i16(const float *x, kn_qx *qx, size_t t, kn_qx_layout layout)
{
    size_t cols = qx->cols, nb = cols / 32, bpg = (size_t)qx->group_size / 32;
    int16_t *q = qx->q16 + t * cols, nat[64];
    float *d = qx->d + t * nb * 4, *gsum = qx->gsum + t * (cols / (size_t)qx->group_size);
    float gacc = 0;
    for (size_t b = 0; b < nb; b++) {
        float db, sb;
        size_t o = 32 * (b % 2);
        quant32_i16(x + 32 * b, nat + o, layout == KN_QX_I16_SPLIT8 ? 32639.0f : 32767.0f, &db, &sb);
        _mm_storeu_ps(d + 4 * b, _mm_set1_ps(db));
        gacc += sb;
        if ((b + 1) % bpg == 0) gsum[b / bpg] = gacc, gacc = 0;
        if (layout == KN_QX_I16_SPLIT)
            store_split_block(nat + o, (uint8_t *)q + 32 * b, (uint8_t *)q + cols + 32 * b);
        else if (layout == KN_QX_I16_SPLIT8)
            store_split8_block(nat + o, (uint8_t *)q + 32 * b, (uint8_t *)q + cols + 32 * b);
        else if (layout == KN_QX_I16_Q8) store_q8_block(nat + o, q + 32 * b);
        else if (b % 2) store_q4_chunk(nat, q + 32 * (b - 1));
        else if (b + 1 == nb) store_strided(nat, q + 32 * b, 32, 4); /* a trailing half chunk */
    }
}

void kn_avx2_quantize(const float *x, kn_qx *qx, size_t t, kn_qx_layout layout)
{
    if (layout == KN_QX_I16_Q4 || layout == KN_QX_I16_Q8 || layout == KN_QX_I16_SPLIT || layout == KN_QX_I16_SPLIT8) {
        quantize_i16(x, qx, t, layout);
        return;
    }
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
        if (layout == KN_QX_I8_EO) {
            const __m256i eo = _mm256_setr_epi8(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15, 0, 2,
                                                4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
            _mm256_storeu_si256((__m256i *)(q + 32 * (b - 1)), _mm256_shuffle_epi8(a, eo));
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

/* Token t's activations, int8 or int16 as ACT says. */
KN_INLINE const void *x_row(const kn_qx *qx, size_t t, int ACT)
{
    if (ACT == 8) return qx->q + t * qx->cols;
    return qx->q16 + t * qx->cols;
}

/* Element c of an activation row. */
KN_INLINE const void *x_off(const void *row, size_t c, int ACT)
{
    return ACT == 8 ? (const void *)((const int8_t *)row + c) : (const void *)((const int16_t *)row + c);
}

/* A tile of NT tokens from t0: each token's activation row, its block
 * scales (cols / 8 floats per token) and a zeroed accumulator. */
KN_INLINE void tile_begin(const kn_qx *qx, size_t t0, int NT, int ACT, const void **x,
                          const float **d, __m256 *acc)
{
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) {
        x[t] = x_row(qx, t0 + (size_t)t, ACT);
        d[t] = qx->d + (t0 + (size_t)t) * (qx->cols / 8);
        acc[t] = _mm256_setzero_ps();
    }
}

KN_INLINE __m256i ld256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
KN_INLINE __m128i ld128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }
KN_INLINE __m256 ld_ps(const float *p) { return _mm256_loadu_ps(p); }

/* acc + sum over groups [0, gn) of bias'[g] * X[g], where bias' is bi[g]
 * (+ 128 * sc[g] for int8 Q8, see the top comment). */
KN_INLINE __m256 bias_term(__m256 acc, const float *bi, const float *sc, bool q8,
                           const float *gsum, size_t gn)
{
    size_t g = 0;
    for (; g + 8 <= gn; g += 8) {
        __m256 b = _mm256_loadu_ps(bi + g);
        if (q8) b = _mm256_fmadd_ps(_mm256_set1_ps(128.0f), _mm256_loadu_ps(sc + g), b);
        acc = _mm256_fmadd_ps(b, _mm256_loadu_ps(gsum + g), acc);
    }
    if (g < gn) { /* the last gn % 8 groups, masked (masked lanes read nothing, give 0) */
        static const int32_t lanes[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
        __m256i m = _mm256_loadu_si256((const __m256i *)(lanes + 8 - (gn - g)));
        __m256 b = _mm256_maskload_ps(bi + g, m);
        if (q8) b = _mm256_fmadd_ps(_mm256_set1_ps(128.0f), _mm256_maskload_ps(sc + g, m), b);
        acc = _mm256_fmadd_ps(b, _mm256_maskload_ps(gsum + g, m), acc);
    }
    return acc;
}

/* Scales and biases of groups [g0, g0 + gn) of row r, as f32. */
KN_INLINE void load_sb(const kn_weight *w, size_t ng, size_t r, size_t g0, size_t gn, float *sc,
                       float *bi)
{
    kn_scales_f32(w->scale_dtype, w->scales, r * ng + g0, gn, sc);
    kn_scales_f32(w->scale_dtype, w->biases, r * ng + g0, gn, bi);
}

/* The same for rows r .. r+3 into sf and bf (row i at i * gn), with the
 * rows' pointers in sc and bi. Whole rows (one segment, as in most
 * decode matrices) lie one after another in the tensors: one conversion
 * covers all four, and its scalar tail runs once instead of per row. */
KN_INLINE void load_sb4(const kn_weight *w, size_t ng, size_t r, size_t g0, size_t gn, float *sf,
                        float *bf, const float **sc, const float **bi)
{
    if (gn == ng) {
        kn_scales_f32(w->scale_dtype, w->scales, r * ng, 4 * ng, sf);
        kn_scales_f32(w->scale_dtype, w->biases, r * ng, 4 * ng, bf);
    } else {
        for (size_t i = 0; i < 4; i++) load_sb(w, ng, r + i, g0, gn, sf + i * gn, bf + i * gn);
    }
    for (size_t i = 0; i < 4; i++) sc[i] = sf + i * gn, bi[i] = bf + i * gn;
}

/* ---- Q4 ------------------------------------------------------------------------- */

/* One 64-element chunk of weights (32 bytes), unpacked for the kernel:
 * int16 - four vectors of u16 lanes (elements 4j + p in vector p);
 * int8 - the low nibbles (evens) and the high nibbles (odds) as u8. */
typedef struct q4w {
    __m256i n[4];
} q4w;

KN_INLINE q4w q4_unpack(const uint8_t *wp, int ACT)
{
    __m256i wv = ld256(wp);
    q4w u;
    if (ACT == 8) {
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        u.n[0] = _mm256_and_si256(wv, m4);
        u.n[1] = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4);
        u.n[2] = u.n[3] = u.n[0];
        return u;
    }
    const __m256i m4 = _mm256_set1_epi16(0x0f);
    u.n[0] = _mm256_and_si256(wv, m4);
    u.n[1] = _mm256_and_si256(_mm256_srli_epi16(wv, 4), m4);
    u.n[2] = _mm256_and_si256(_mm256_srli_epi16(wv, 8), m4);
    u.n[3] = _mm256_srli_epi16(wv, 12);
    return u;
}

/* Integer dot of an unpacked chunk with the activations at xp, as 8 f32
 * lanes: lanes 0-3 hold the chunk's first 32-block's partial sums, lanes
 * 4-7 the second's. */
KN_INLINE __m256 q4_dot(const q4w *u, const void *xp, int ACT)
{
    if (ACT == 8) {
        const int8_t *xq = xp;
        __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(u->n[0], ld256(xq)),
                                     _mm256_maddubs_epi16(u->n[1], ld256(xq + 32)));
        return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
    }
    const int16_t *xh = xp;
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(u->n[0], ld256(xh)), _mm256_madd_epi16(u->n[1], ld256(xh + 16))),
                                 _mm256_add_epi32(_mm256_madd_epi16(u->n[2], ld256(xh + 32)), _mm256_madd_epi16(u->n[3], ld256(xh + 48))));
    return _mm256_cvtepi32_ps(s);
}

/* The same for a lone trailing 32-block (16 weight bytes at wp,
 * activations at xp), in lanes 0-3. */
KN_INLINE __m256 q4_dot_half(const uint8_t *wp, const void *xp, int ACT)
{
    __m128i wv = ld128(wp), s;
    if (ACT == 8) {
        const int8_t *xq = xp;
        const __m128i m4 = _mm_set1_epi8(0x0f);
        __m128i lo = _mm_and_si128(wv, m4);
        __m128i hi = _mm_and_si128(_mm_srli_epi16(wv, 4), m4);
        __m128i p = _mm_add_epi16(_mm_maddubs_epi16(lo, ld128(xq)), _mm_maddubs_epi16(hi, ld128(xq + 16)));
        s = _mm_madd_epi16(p, _mm_set1_epi16(1));
    } else {
        const int16_t *xh = xp;
        const __m128i m4 = _mm_set1_epi16(0x0f);
        s = _mm_add_epi32(_mm_add_epi32(_mm_madd_epi16(_mm_and_si128(wv, m4), ld128(xh)),
                                        _mm_madd_epi16(_mm_and_si128(_mm_srli_epi16(wv, 4), m4), ld128(xh + 8))),
                          _mm_add_epi32(_mm_madd_epi16(_mm_and_si128(_mm_srli_epi16(wv, 8), m4), ld128(xh + 16)),
                                        _mm_madd_epi16(_mm_srli_epi16(wv, 12), ld128(xh + 24))));
    }
    return _mm256_insertf128_ps(_mm256_setzero_ps(), _mm_cvtepi32_ps(s), 0);
}

/* Per-lane group scales of the chunk starting at group g: for GS 32 the
 * chunk spans groups g and g+1. */
KN_INLINE __m256 chunk_scale(const float *sc, size_t g, size_t GS)
{
    if (GS == 32) return _mm256_set_m128(_mm_broadcast_ss(sc + g + 1), _mm_broadcast_ss(sc + g));
    return _mm256_broadcast_ss(sc + g);
}

/* The chunk's integer dot of the 64 weights at wp with the activations
 * at xp. */
KN_INLINE __m256 q4_dot_at(const uint8_t *wp, const void *xp, int ACT)
{
    q4w u = q4_unpack(wp, ACT);
    return q4_dot(&u, xp, ACT);
}

/* Decode, one row's chunk: acc + dot * ds, then a compiler barrier, so
 * the 4-row decode tiles run one row after another and read the
 * activations and scales again from L1 (memory operands) for each row.
 * Kept in registers across the four rows, as GCC otherwise chose, they
 * spilled the 16 ymm registers (one thread, a hot 1536x576 Q4 matrix:
 * 10.1-10.6 GB/s with the spills, 12.5-12.9 without). */
KN_INLINE __m256 row_step(__m256 acc, __m256 dot, __m256 ds)
{
    acc = _mm256_fmadd_ps(dot, ds, acc);
    __asm__ volatile("" ::: "memory");
    return acc;
}

/* Decode: 4 rows from r, one token. Accumulators stay in registers. */
KN_INLINE void q4_rows4(const q_args *a, size_t r, float *y, size_t GS, int ACT)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng, rb = a->rb;
    const uint8_t *w0 = (const uint8_t *)w->data + r * rb;
    const uint8_t *pf = kn_prefetch_base(w0, rb); /* 128 bytes per chunk */
    const void *x = x_row(qx, 0, ACT);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float sf[4 * SEG], bf[4 * SEG];
    const float *sc[4], *bi[4];
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        load_sb4(w, ng, r, g0, gn, sf, bf, sc, bi);
        const float *gs = qx->gsum + g0;
        a0 = bias_term(a0, bi[0], sc[0], false, gs, gn);
        a1 = bias_term(a1, bi[1], sc[1], false, gs, gn);
        a2 = bias_term(a2, bi[2], sc[2], false, gs, gn);
        a3 = bias_term(a3, bi[3], sc[3], false, gs, gn);
        size_t c = g0 * GS, c_end = (g0 + gn) * GS;
        size_t step = GS == 32 ? 2 : 1; /* groups per scale fetch */
        for (size_t g = 0; c + 64 <= c_end; g += step) {
            for (size_t k = 0; k < (GS == 128 ? 2 : 1); k++, c += 64) {
                const uint8_t *wp = w0 + c / 2;
                const void *xp = x_off(x, c, ACT);
                _mm_prefetch((const char *)(pf + 2 * c), _MM_HINT_T0);
                _mm_prefetch((const char *)(pf + 2 * c + 64), _MM_HINT_T0);
                a0 = row_step(a0, q4_dot_at(wp, xp, ACT), _mm256_mul_ps(ld_ps(qx->d + c / 8), chunk_scale(sc[0], g, GS)));
                a1 = row_step(a1, q4_dot_at(wp + rb, xp, ACT), _mm256_mul_ps(ld_ps(qx->d + c / 8), chunk_scale(sc[1], g, GS)));
                a2 = row_step(a2, q4_dot_at(wp + 2 * rb, xp, ACT), _mm256_mul_ps(ld_ps(qx->d + c / 8), chunk_scale(sc[2], g, GS)));
                a3 = row_step(a3, q4_dot_at(wp + 3 * rb, xp, ACT), _mm256_mul_ps(ld_ps(qx->d + c / 8), chunk_scale(sc[3], g, GS)));
            }
        }
        if (c < c_end) { /* GS 32 with an odd block count: the last block */
            size_t g = gn - 1;
            float d = qx->d[c / 8];
            const uint8_t *wp = w0 + c / 2;
            const void *xp = x_off(x, c, ACT);
            a0 = _mm256_fmadd_ps(q4_dot_half(wp, xp, ACT), _mm256_set1_ps(d * sc[0][g]), a0);
            a1 = _mm256_fmadd_ps(q4_dot_half(wp + rb, xp, ACT), _mm256_set1_ps(d * sc[1][g]), a1);
            a2 = _mm256_fmadd_ps(q4_dot_half(wp + 2 * rb, xp, ACT), _mm256_set1_ps(d * sc[2][g]), a2);
            a3 = _mm256_fmadd_ps(q4_dot_half(wp + 3 * rb, xp, ACT), _mm256_set1_ps(d * sc[3][g]), a3);
        }
    }
    y[r] = kn_hsum256(a0);
    y[r + 1] = kn_hsum256(a1);
    y[r + 2] = kn_hsum256(a2);
    y[r + 3] = kn_hsum256(a3);
}

/* One row, NT (1 to 4) tokens from t0: each weight chunk is unpacked once
 * and used for every token of the tile. */
KN_INLINE void q4_tokens(const q_args *a, size_t r, size_t t0, float *y, size_t ldy, int NT,
                         size_t GS, int ACT)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng;
    const uint8_t *wr = (const uint8_t *)w->data + r * a->rb;
    const void *x[4];
    const float *d[4];
    __m256 acc[4];
    tile_begin(qx, t0, NT, ACT, x, d, acc);
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
                q4w u = q4_unpack(wr + c / 2, ACT);
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++)
                    acc[t] = _mm256_fmadd_ps(q4_dot(&u, x_off(x[t], c, ACT), ACT),
                                             _mm256_mul_ps(_mm256_loadu_ps(d[t] + c / 8), s), acc[t]);
            }
        }
        if (c < c_end) {
#pragma GCC unroll 4
            for (int t = 0; t < NT; t++) {
                float dc = d[t][c / 8] * sc[gn - 1];
                acc[t] = _mm256_fmadd_ps(q4_dot_half(wr + c / 2, x_off(x[t], c, ACT), ACT),
                                         _mm256_set1_ps(dc), acc[t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) y[(t0 + (size_t)t) * ldy + r] = kn_hsum256(acc[t]);
}

KN_INLINE void mm_q4_gs(const q_args *a, size_t r0, size_t r1, float *y, size_t ldy,
                        size_t n_tokens, size_t GS, int ACT)
{
    if (n_tokens == 1) {
        size_t r = r0;
        for (; r + 4 <= r1; r += 4) q4_rows4(a, r, y, GS, ACT);
        for (; r < r1; r++) q4_tokens(a, r, 0, y, ldy, 1, GS, ACT);
        return;
    }
    for (size_t t = 0; t < n_tokens; t += 4) {
        size_t nt = n_tokens - t < 4 ? n_tokens - t : 4;
        for (size_t r = r0; r < r1; r++) {
            if (nt == 4) q4_tokens(a, r, t, y, ldy, 4, GS, ACT);
            else if (nt == 3) q4_tokens(a, r, t, y, ldy, 3, GS, ACT);
            else if (nt == 2) q4_tokens(a, r, t, y, ldy, 2, GS, ACT);
            else q4_tokens(a, r, t, y, ldy, 1, GS, ACT);
        }
    }
}

KN_INLINE void mm_q4(const kn_weight *w, size_t r0, size_t r1, const kn_qx *qx, float *y,
                     size_t ldy, size_t n_tokens, int ACT)
{
    q_args a = {.w = w, .qx = qx, .rb = w->cols / 2, .ng = w->cols / (size_t)w->group_size};
    if (w->group_size == 32) mm_q4_gs(&a, r0, r1, y, ldy, n_tokens, 32, ACT);
    else if (w->group_size == 64) mm_q4_gs(&a, r0, r1, y, ldy, n_tokens, 64, ACT);
    else mm_q4_gs(&a, r0, r1, y, ldy, n_tokens, 128, ACT);
}

void kn_avx2_mm_q4(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                   const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    mm_q4(w, r0, r1, qx, y, ldy, n_tokens, 8);
}

void kn_avx2_mm_q4_i16(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                       const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    mm_q4(w, r0, r1, qx, y, ldy, n_tokens, 16);
}

/* ---- Q8 ------------------------------------------------------------------------- */

/* Integer dot of one 32-block (32 weight bytes) with the activations at
 * xp, as 8 f32 lanes. int8: |q - 128| x sign(xq, q - 128); int16: the low
 * and high bytes of each u16 lane against the evens and the odds. */
KN_INLINE __m256 q8_dot(__m256i wv, const void *xp, int ACT)
{
    if (ACT == 8) {
        __m256i ws = _mm256_xor_si256(wv, _mm256_set1_epi8((char)0x80));
        __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(ws), _mm256_sign_epi8(ld256(xp), ws));
        return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
    }
    const int16_t *xh = xp;
    __m256i lo = _mm256_and_si256(wv, _mm256_set1_epi16(0xff));
    __m256i hi = _mm256_srli_epi16(wv, 8);
    return _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_madd_epi16(lo, ld256(xh)), _mm256_madd_epi16(hi, ld256(xh + 16))));
}

KN_INLINE void q8_rows4(const q_args *a, size_t r, float *y, size_t GS, int ACT)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng, rb = a->rb;
    const uint8_t *w0 = (const uint8_t *)w->data + r * rb;
    const uint8_t *pf = kn_prefetch_base(w0, rb); /* 128 bytes per chunk */
    const void *x = x_row(qx, 0, ACT);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    float sf[4 * SEG], bf[4 * SEG];
    const float *sc[4], *bi[4];
    bool fold = ACT == 8;
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        load_sb4(w, ng, r, g0, gn, sf, bf, sc, bi);
        const float *gs = qx->gsum + g0;
        a0 = bias_term(a0, bi[0], sc[0], fold, gs, gn);
        a1 = bias_term(a1, bi[1], sc[1], fold, gs, gn);
        a2 = bias_term(a2, bi[2], sc[2], fold, gs, gn);
        a3 = bias_term(a3, bi[3], sc[3], fold, gs, gn);
        size_t c = g0 * GS;
        for (size_t g = 0; g < gn; g++) {
#pragma GCC unroll 4
            for (size_t k = 0; k < GS / 32; k++, c += 32) {
                __m256 d = _mm256_broadcast_ss(qx->d + c / 8);
                const uint8_t *wp = w0 + c;
                const void *xp = x_off(x, c, ACT);
                _mm_prefetch((const char *)(pf + 4 * c), _MM_HINT_T0);
                _mm_prefetch((const char *)(pf + 4 * c + 64), _MM_HINT_T0);
                a0 = _mm256_fmadd_ps(q8_dot(ld256(wp), xp, ACT), _mm256_mul_ps(d, _mm256_broadcast_ss(&sc[0][g])), a0);
                a1 = _mm256_fmadd_ps(q8_dot(ld256(wp + rb), xp, ACT), _mm256_mul_ps(d, _mm256_broadcast_ss(&sc[1][g])), a1);
                a2 = _mm256_fmadd_ps(q8_dot(ld256(wp + 2 * rb), xp, ACT), _mm256_mul_ps(d, _mm256_broadcast_ss(&sc[2][g])), a2);
                a3 = _mm256_fmadd_ps(q8_dot(ld256(wp + 3 * rb), xp, ACT), _mm256_mul_ps(d, _mm256_broadcast_ss(&sc[3][g])), a3);
            }
        }
    }
    y[r] = kn_hsum256(a0);
    y[r + 1] = kn_hsum256(a1);
    y[r + 2] = kn_hsum256(a2);
    y[r + 3] = kn_hsum256(a3);
}

KN_INLINE void q8_tokens(const q_args *a, size_t r, size_t t0, float *y, size_t ldy, int NT,
                         size_t GS, int ACT)
{
    const kn_weight *w = a->w;
    const kn_qx *qx = a->qx;
    size_t ng = a->ng;
    const uint8_t *wr = (const uint8_t *)w->data + r * a->rb;
    const void *x[4];
    const float *d[4];
    __m256 acc[4];
    tile_begin(qx, t0, NT, ACT, x, d, acc);
    float sc[SEG], bi[SEG];
    bool fold = ACT == 8;
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        load_sb(w, ng, r, g0, gn, sc, bi);
#pragma GCC unroll 4
        for (int t = 0; t < NT; t++)
            acc[t] = bias_term(acc[t], bi, sc, fold, qx->gsum + (t0 + (size_t)t) * ng + g0, gn);
        size_t c = g0 * GS;
        for (size_t g = 0; g < gn; g++) {
            __m256 s = _mm256_broadcast_ss(&sc[g]);
            for (size_t k = 0; k < GS / 32; k++, c += 32) {
                __m256i wv = ld256(wr + c);
#pragma GCC unroll 4
                for (int t = 0; t < NT; t++)
                    acc[t] = _mm256_fmadd_ps(q8_dot(wv, x_off(x[t], c, ACT), ACT),
                                             _mm256_mul_ps(_mm256_broadcast_ss(d[t] + c / 8), s), acc[t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < NT; t++) y[(t0 + (size_t)t) * ldy + r] = kn_hsum256(acc[t]);
}

KN_INLINE void mm_q8_gs(const q_args *a, size_t r0, size_t r1, float *y, size_t ldy,
                        size_t n_tokens, size_t GS, int ACT)
{
    if (n_tokens == 1) {
        size_t r = r0;
        for (; r + 4 <= r1; r += 4) q8_rows4(a, r, y, GS, ACT);
        for (; r < r1; r++) q8_tokens(a, r, 0, y, ldy, 1, GS, ACT);
        return;
    }
    for (size_t t = 0; t < n_tokens; t += 4) {
        size_t nt = n_tokens - t < 4 ? n_tokens - t : 4;
        for (size_t r = r0; r < r1; r++) {
            if (nt == 4) q8_tokens(a, r, t, y, ldy, 4, GS, ACT);
            else if (nt == 3) q8_tokens(a, r, t, y, ldy, 3, GS, ACT);
            else if (nt == 2) q8_tokens(a, r, t, y, ldy, 2, GS, ACT);
            else q8_tokens(a, r, t, y, ldy, 1, GS, ACT);
        }
    }
}

KN_INLINE void mm_q8(const kn_weight *w, size_t r0, size_t r1, const kn_qx *qx, float *y,
                     size_t ldy, size_t n_tokens, int ACT)
{
    q_args a = {.w = w, .qx = qx, .rb = w->cols, .ng = w->cols / (size_t)w->group_size};
    if (w->group_size == 32) mm_q8_gs(&a, r0, r1, y, ldy, n_tokens, 32, ACT);
    else if (w->group_size == 64) mm_q8_gs(&a, r0, r1, y, ldy, n_tokens, 64, ACT);
    else mm_q8_gs(&a, r0, r1, y, ldy, n_tokens, 128, ACT);
}

void kn_avx2_mm_q8(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                   const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    mm_q8(w, r0, r1, qx, y, ldy, n_tokens, 8);
}

void kn_avx2_mm_q8_i16(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                       const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    mm_q8(w, r0, r1, qx, y, ldy, n_tokens, 16);
}
