/* matmul_q4p_avx512.c - AVX-512 VNNI matmul for MLX affine Q4 weights
 * repacked into 16-row tiles (kn_q4_pack, kernels/pack.c), on int16
 * activations (the default AVX-512 Q4 kernel) or int8 ones (the int8
 * mode's).
 *
 * The math is matmul_q_avx2.c's (its top comment derives it): per 32-block
 * k, an exact integer dot product of the weights' nibbles with the block's
 * int16 activations, scaled by d_k, then by the group's scale, plus the
 * group's bias times the exact f32 sum of x over the group.
 *
 * Layout. A tile holds 16 rows; per group g it stores the 16 scales, the
 * 16 biases (the weight's 16-bit scale dtype, F16 or BF16) and GS / 8
 * chunks of 64 bytes. Chunk j's 32-bit lane r holds row r's 4 packed bytes
 * of columns 8j .. 8j+7 as MLX stores them (element 2i in the low nibble
 * of byte i, 2i+1 in the high one), so one load gives 16 rows x 8 columns
 * and each int32 lane accumulates one row: the rows are the vector, and no
 * horizontal sum is ever needed. Masking the low nibbles gives columns
 * 0, 2, 4, 6 of the chunk, shifting gives 1, 3, 5, 7; the activations are
 * stored in that order per 8 (KN_QX_I16_SPLIT), 4 of them broadcast per
 * product.
 *
 * int16 on u8 x s8 VPDPBUSD: the quantizer splits each int16 h into h =
 * 256 * hi + lo, hi = h >> 8 (s8) and lo = h & 255 (u8), stored as two
 * byte planes. The weights (0..15) are u8 against hi and s8 against lo, so
 * two VPDPBUSD per 4 columns give both halves exactly; a block's sum is
 * 256 * sum_hi + sum_lo (|sum_hi| <= 32 * 15 * 128, sum_lo <= 32 * 15 * 255:
 * no overflow). The result is the int16 kernels' to f32 rounding order.
 * int8 activations (KN_QX_I8_EO, the same order per 8) take one VPDPBUSD
 * per 4 columns, half the work: VPDPBUSD throughput is what bounds the
 * multi-token tiles (~250 GMAC/s on int16 and ~420 on int8 for 8 tokens
 * on two Zen 5 cores, the int16 figure 80% of a bare VPDPBUSD loop's).
 *
 * Tiles: one token streams the weights (decode); 2-4 tokens (8 on int8,
 * whose accumulators fit twice as many) share each unpacked 64-byte chunk
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

/* One tile of 16 rows for NT tokens: y[t][0..16) of token t. ACT 16:
 * int16 activations as hi/lo byte planes (KN_QX_I16_SPLIT), four VPDPBUSD
 * per chunk and token; ACT 8: int8 activations (KN_QX_I8_EO), two. */
KN_INLINE void tile_tokens(const uint8_t *tp, size_t ng, size_t GS, bool bf16, const kn_qx *qx,
                           size_t t0, float *y, size_t ldy, int NT, int ACT)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    size_t cols = qx->cols, nb = cols / 32;
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
        const uint8_t *gp = tp + g * (64 + GS * 8);
        __m512 s = kn_ld16_h(gp, bf16), b = kn_ld16_h(gp + 32, bf16);
#pragma GCC unroll 8
        for (int t = 0; t < NT; t++) acc[t] = _mm512_fmadd_ps(b, _mm512_set1_ps(gs[t][g]), acc[t]);
        const uint8_t *dp = gp + 64;
        for (size_t k = 0; k < GS / 32; k++, dp += 256) {
            size_t c = g * GS + k * 32;
            if (NT > 1)
                for (int q = 0; q < 4; q++) _mm_prefetch((const char *)dp + PREFETCH + 64 * q, _MM_HINT_T0);
            __m512i hs[MAX_NT], ls[MAX_NT]; /* sums on the hi (or int8) and lo planes */
#pragma GCC unroll 8
            for (int t = 0; t < NT; t++) hs[t] = ls[t] = _mm512_setzero_si512();
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
                     size_t ldy, size_t n_tokens, size_t GS, bool bf16, int ACT)
{
    size_t ng = w->cols / GS, tile_bytes = ng * (64 + GS * 8);
    const uint8_t *base = w->packed;
    /* token tiles outer: a tile's activations stay in L1 while the row
     * range's weights (a work unit, tens of KiB) stay in L2 */
    size_t t = 0;
    if (ACT == 8) /* int16 8-token tiles measured no faster: the VPDPBUSD port is the limit */
        for (; t + 8 <= n_tokens; t += 8)
            for (size_t r = r0; r < r1; r += TILE)
                tile_tokens(base + (r / TILE) * tile_bytes, ng, GS, bf16, qx, t, y + r, ldy, 8, ACT);
    for (; t + 4 <= n_tokens; t += 4)
        for (size_t r = r0; r < r1; r += TILE)
            tile_tokens(base + (r / TILE) * tile_bytes, ng, GS, bf16, qx, t, y + r, ldy, 4, ACT);
    int rest = (int)(n_tokens - t);
    if (rest)
        for (size_t r = r0; r < r1; r += TILE) {
            const uint8_t *tp = base + (r / TILE) * tile_bytes;
            if (rest == 3) tile_tokens(tp, ng, GS, bf16, qx, t, y + r, ldy, 3, ACT);
            else if (rest == 2) tile_tokens(tp, ng, GS, bf16, qx, t, y + r, ldy, 2, ACT);
            else tile_tokens(tp, ng, GS, bf16, qx, t, y + r, ldy, 1, ACT);
        }
}

KN_INLINE void mm_q4p(const kn_weight *w, size_t r0, size_t r1, const kn_qx *qx, float *y, size_t ldy,
                      size_t n_tokens, int ACT)
{
    SEM_ASSERT(r0 % TILE == 0 && r1 % TILE == 0 && w->packed);
    bool bf16 = w->scale_dtype == KN_BF16;
    if (w->group_size == 32) mm_gs(w, r0, r1, qx, y, ldy, n_tokens, 32, bf16, ACT);
    else if (w->group_size == 64) mm_gs(w, r0, r1, qx, y, ldy, n_tokens, 64, bf16, ACT);
    else mm_gs(w, r0, r1, qx, y, ldy, n_tokens, 128, bf16, ACT);
}

void kn_avx512_mm_q4p(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                      const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    mm_q4p(w, r0, r1, qx, y, ldy, n_tokens, 16);
}

void kn_avx512_mm_q4p_i8(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                         const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)x, (void)ldx;
    mm_q4p(w, r0, r1, qx, y, ldy, n_tokens, 8);
}
