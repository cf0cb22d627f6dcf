/* matmul_qp_avx512.c - AVX-512 VNNI matmul for MLX affine Q4 and Q8
 * weights repacked into 16-row tiles (kn_pack, kernels/pack.c), on int16
 * activations (the default AVX-512 kernels) or int8 ones (the int8
 * mode's).
 *
 * The math is matmul_q_avx2.c's (its top comment derives it): per 32-block
 * k, an exact integer dot product of the weights with the block's
 * quantized activations, scaled by d_k, then by the group's scale, plus
 * the group's bias times the exact f32 sum of x over the group.
 *
 * Layout. A tile holds 16 rows; per group g it stores the 16 scales, the
 * 16 biases (the weight's 16-bit scale dtype, F16 or BF16) and then chunks
 * of 64 bytes whose 32-bit lane r holds 4 bytes of row r as MLX stores
 * them, so one load gives 16 rows and each int32 lane accumulates one
 * row: the rows are the vector, and no horizontal sum is ever needed.
 *  - Q4: GS / 8 chunks of 8 columns (element 2i in the low nibble of byte
 *    i, 2i+1 in the high one). Masking the low nibbles gives columns 0, 2,
 *    4, 6 of the chunk, shifting gives 1, 3, 5, 7; the activations are
 *    stored in that order per 8 (KN_QX_I16_SPLIT, KN_QX_I8_EO), 4 of them
 *    broadcast per product.
 *  - Q8: GS / 4 chunks of 4 columns in order, against activations in
 *    natural order (KN_QX_I16_SPLIT8, KN_QX_NATURAL).
 *
 * int16 on u8 x s8 VPDPBUSD: the quantizer splits each int16 h into h =
 * 256 * hi + lo, stored as two byte planes. Q4: hi = h >> 8 (s8), lo = h &
 * 255 (u8); the weights (0..15) are u8 against hi and s8 against lo. Q8:
 * the weights (0..255) are only u8, so |h| <= 32639 and hi = (h + 128) >> 8,
 * lo = h - 256 hi are both s8. Two VPDPBUSD per 4 columns give both halves
 * exactly; a block's sum is 256 * sum_hi + sum_lo (|sum_hi| <= 32 * 255 *
 * 128: no overflow). int8 activations take one VPDPBUSD per 4 columns,
 * half the work: VPDPBUSD throughput is what bounds the multi-token tiles
 * (Q4: ~250 GMAC/s on int16 and ~420 on int8 for 8 tokens on two Zen 5
 * cores, the int16 figure 80% of a bare VPDPBUSD loop's).
 *
 * Tiles: one token streams the weights (decode); 2-4 tokens (8 on int8,
 * whose accumulators fit twice as many) share each loaded 64-byte chunk
 * (batched decode, prefill), token tiles outside the row range.
 *
 * Per (row, token) the f32 operations and their order do not depend on
 * the other rows or tokens of the call: batched and single-token calls
 * give the same bits.
 *
 * Thread: any; a call writes only rows [r0, r1) of y (multiples of 16).
 */
#include "kernels/x86/avx512_util.h"

#define KN_INLINE static inline __attribute__((always_inline))

/* PREFETCH: multi-token tiles ask for the weights this many bytes ahead.
 * They consume a 64-byte chunk in ~20 cycles per token, slower than the
 * hardware prefetchers assume of a stream, and were latency-bound from
 * DRAM (the 1B shape's lm_head at 8 tokens on 2 threads: 160 -> 225-265
 * GMAC/s; 2 KiB ahead gave 215-245). One-token tiles stream fast enough
 * without it. */
enum { TILE = 16, MAX_NT = 8, PREFETCH = 4096 };

KN_INLINE __m512i bcast4(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* Block k's sums for NT tokens, Q4: chunks of 8 columns, the low nibbles
 * (columns 0, 2, 4, 6) and high ones (1, 3, 5, 7) against their broadcast
 * activations. int16: the weights are the u8 operand against hi (s8) and
 * the s8 one against lo (u8). */
KN_INLINE void block_q4(const uint8_t *dp, const uint8_t *const *hi, const uint8_t *const *lo, size_t c,
                        __m512i *hs, __m512i *ls, int NT, int ACT)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
#pragma GCC unroll 8
    for (size_t j = 0; j < 4; j++) {
        __m512i v = _mm512_load_si512(dp + 64 * j);
        __m512i we = _mm512_and_si512(v, m4);
        __m512i wo = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            const uint8_t *xh = hi[t] + c + 8 * j, *xl = lo[t] + c + 8 * j;
            hs[t] = _mm512_dpbusd_epi32(hs[t], we, bcast4(xh));
            hs[t] = _mm512_dpbusd_epi32(hs[t], wo, bcast4(xh + 4));
            if (ACT == 16) {
                ls[t] = _mm512_dpbusd_epi32(ls[t], bcast4(xl), we);
                ls[t] = _mm512_dpbusd_epi32(ls[t], bcast4(xl + 4), wo);
            }
        }
    }
}

/* Q8: chunks of 4 columns in order; the weights (0..255) are the u8
 * operand against both planes (KN_QX_I16_SPLIT8 keeps lo signed). */
KN_INLINE void block_q8(const uint8_t *dp, const uint8_t *const *hi, const uint8_t *const *lo, size_t c,
                        __m512i *hs, __m512i *ls, int NT, int ACT)
{
#pragma GCC unroll 8
    for (size_t j = 0; j < 8; j++) {
        __m512i v = _mm512_load_si512(dp + 64 * j);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) {
            hs[t] = _mm512_dpbusd_epi32(hs[t], v, bcast4(hi[t] + c + 4 * j));
            if (ACT == 16) ls[t] = _mm512_dpbusd_epi32(ls[t], v, bcast4(lo[t] + c + 4 * j));
        }
    }
}

/* One tile of 16 rows for NT tokens: y[t][0..16) of token t. ACT 16:
 * int16 activations as two byte planes, ACT 8: int8 activations. */
KN_INLINE void tile_tokens(const uint8_t *tp, size_t ng, size_t GS, bool bf16, const kn_qx *qx,
                           size_t t0, float *y, size_t ldy, int NT, int BITS, int ACT)
{
    size_t cols = qx->cols, nb = cols / 32, block_bytes = 16 * 32 * (size_t)BITS / 8;
    const uint8_t *hi[MAX_NT], *lo[MAX_NT];
    const float *d[MAX_NT], *gs[MAX_NT];
    __m512 acc[MAX_NT];
    for (int t = 0; t < NT; t++) {
        size_t tt = t0 + (size_t)t;
        hi[t] = ACT == 8 ? (const uint8_t *)(qx->q + tt * cols) : (const uint8_t *)(qx->q16 + tt * cols);
        lo[t] = hi[t] + cols;
        d[t] = qx->d + tt * nb * 4;
        gs[t] = qx->gsum + tt * ng;
        acc[t] = _mm512_setzero_ps();
    }
    for (size_t g = 0; g < ng; g++) {
        const uint8_t *gp = tp + g * kn_packed_group_bytes(GS, BITS);
        __m512 s = kn_ld16_h(gp, bf16), b = kn_ld16_h(gp + 32, bf16);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) acc[t] = _mm512_fmadd_ps(b, _mm512_set1_ps(gs[t][g]), acc[t]);
        const uint8_t *dp = gp + 64;
        for (size_t k = 0; k < GS / 32; k++, dp += block_bytes) {
            size_t c = g * GS + k * 32;
            if (NT > 1)
                for (size_t q = 0; q < block_bytes; q += 64) _mm_prefetch((const char *)dp + PREFETCH + q, _MM_HINT_T0);
            __m512i hs[MAX_NT], ls[MAX_NT]; /* sums on the hi (or int8) and lo planes */
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) hs[t] = ls[t] = _mm512_setzero_si512();
            if (BITS == 4) block_q4(dp, hi, lo, c, hs, ls, NT, ACT);
            else block_q8(dp, hi, lo, c, hs, ls, NT, ACT);
            size_t blk = c / 32;
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) {
                __m512i is = ACT == 16 ? _mm512_add_epi32(_mm512_slli_epi32(hs[t], 8), ls[t]) : hs[t];
                __m512 sd = _mm512_mul_ps(s, _mm512_set1_ps(d[t][4 * blk]));
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), sd, acc[t]);
            }
        }
    }
    for (int t = 0; t < NT; t++) _mm512_storeu_ps(y + (t0 + (size_t)t) * ldy, acc[t]);
}

KN_INLINE void mm_gs(const kn_weight *w, size_t r0, size_t r1, const kn_qx *qx, float *y,
                     size_t ldy, size_t n_tokens, size_t GS, bool bf16, int BITS, int ACT)
{
    size_t ng = w->cols / GS, tile_bytes = ng * kn_packed_group_bytes(GS, BITS);
    const uint8_t *base = w->packed;
    /* token tiles outer: a tile's activations stay in L1 while the row
     * range's weights (a work unit, tens of KiB) stay in L2 */
    size_t t = 0;
    if (ACT == 8) /* int16 8-token tiles measured no faster: the VPDPBUSD port is the limit */
        for (; t + 8 <= n_tokens; t += 8)
            for (size_t r = r0; r < r1; r += TILE)
                tile_tokens(base + (r / TILE) * tile_bytes, ng, GS, bf16, qx, t, y + r, ldy, 8, BITS, ACT);
    for (; t + 4 <= n_tokens; t += 4)
        for (size_t r = r0; r < r1; r += TILE)
            tile_tokens(base + (r / TILE) * tile_bytes, ng, GS, bf16, qx, t, y + r, ldy, 4, BITS, ACT);
    int rest = (int)(n_tokens - t);
    if (rest)
        for (size_t r = r0; r < r1; r += TILE) {
            const uint8_t *tp = base + (r / TILE) * tile_bytes;
            if (rest == 3) tile_tokens(tp, ng, GS, bf16, qx, t, y + r, ldy, 3, BITS, ACT);
            else if (rest == 2) tile_tokens(tp, ng, GS, bf16, qx, t, y + r, ldy, 2, BITS, ACT);
            else tile_tokens(tp, ng, GS, bf16, qx, t, y + r, ldy, 1, BITS, ACT);
        }
}

KN_INLINE void mm_packed(const kn_weight *w, size_t r0, size_t r1, const kn_qx *qx, float *y, size_t ldy,
                         size_t n_tokens, int BITS, int ACT)
{
    SEM_ASSERT(r0 % TILE == 0 && r1 % TILE == 0 && w->packed && w->bits == BITS);
    bool bf16 = w->scale_dtype == KN_BF16;
    if (w->group_size == 32) mm_gs(w, r0, r1, qx, y, ldy, n_tokens, 32, bf16, BITS, ACT);
    else if (w->group_size == 64) mm_gs(w, r0, r1, qx, y, ldy, n_tokens, 64, bf16, BITS, ACT);
    else mm_gs(w, r0, r1, qx, y, ldy, n_tokens, 128, bf16, BITS, ACT);
}

#define MM_PACKED(name, BITS, ACT)                                                                  \
    void name(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx, const kn_qx *qx, \
              float *y, size_t ldy, size_t n_tokens)                                                \
    {                                                                                               \
        (void)x, (void)ldx;                                                                         \
        mm_packed(w, r0, r1, qx, y, ldy, n_tokens, BITS, ACT);                                      \
    }
MM_PACKED(kn_avx512_mm_q4p, 4, 16)
MM_PACKED(kn_avx512_mm_q4p_i8, 4, 8)
MM_PACKED(kn_avx512_mm_q8p, 8, 16)
MM_PACKED(kn_avx512_mm_q8p_i8, 8, 8)
