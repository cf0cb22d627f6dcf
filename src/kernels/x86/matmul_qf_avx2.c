/* matmul_qf_avx2.c - AVX2 matmul for the MLX affine Q4/Q8 formats on f32
 * activations: the weights are dequantized in registers and the products
 * are exact f32 FMAs, so results match the reference to f32 rounding and a
 * token's result never depends on the other tokens of the call (batching
 * changes nothing, bit for bit).
 *
 * Why not int8 activations (the integer kernels in matmul_q_avx2.c)? They
 * are faster in compute, but quantizing activations to 8 bits costs about
 * 1% of relative error per layer, which random test models amplify to
 * several percent of the logits and which flips greedy choices against
 * the reference. Decode is memory-bound anyway: one pass of about 20 uops
 * per 16 bytes of Q4 data streams faster than DRAM on two cores.
 *
 * For a row and group g with scale s_g and bias b_g:
 *   y = sum_g s_g * (sum_{c in g} q_c x_c) + b_g * X_g,   X_g = sum_{c in g} x_c
 * The inner sum is accumulated in a vector per group and folded with one
 * FMA by s_g; X_g is computed once per token and call.
 *
 * Q4 packing: byte k of a row holds element 2k (low nibble) and 2k+1 (high
 * nibble); unpacking low and high nibbles and interleaving them restores
 * natural order, so x is read as is.
 *
 * Thread: any; a call writes only rows [r0, r1) of y.
 */
#include "kernels/x86/avx2_util.h"

#define KN_INLINE static inline __attribute__((always_inline))

enum { TILE = 4, MAX_GROUPS = 2048 };

/* Four vectors of 8 dequantized (unscaled) values: elements 0..31 of a
 * 32-element chunk. */
KN_INLINE void unpack_q4(const uint8_t *p, __m256 q[4])
{
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    const __m128i m = _mm_set1_epi8(0x0f);
    __m128i lo = _mm_and_si128(v, m), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m);
    __m128i a = _mm_unpacklo_epi8(lo, hi), b = _mm_unpackhi_epi8(lo, hi);
    q[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(a));
    q[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(a, a)));
    q[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
    q[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(b, b)));
}

KN_INLINE void unpack_q8(const uint8_t *p, __m256 q[4])
{
    for (int k = 0; k < 4; k++)
        q[k] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8 * k))));
}

/* Sum of x over each group: xs[t][g]. */
static void group_sums(const float *x, size_t ldx, size_t n_tokens, size_t cols, size_t gs, float *xs)
{
    size_t ng = cols / gs;
    for (size_t t = 0; t < n_tokens; t++) {
        for (size_t g = 0; g < ng; g++) {
            __m256 acc = _mm256_setzero_ps();
            for (size_t c = 0; c < gs; c += 8) acc = _mm256_add_ps(acc, _mm256_loadu_ps(x + t * ldx + g * gs + c));
            xs[t * ng + g] = kn_hsum256(acc);
        }
    }
}

/* One row against nt tokens (nt <= TILE). bits is 4 or 8. The per-token
 * arithmetic is the same whatever nt is. */
KN_INLINE void row_tile(const kn_weight *w, size_t r, const float *x, size_t ldx, const float *xs,
                        float *y, size_t ldy, size_t nt, int bits)
{
    size_t gs = (size_t)w->group_size, ng = w->cols / gs;
    size_t row_bytes = w->cols * (size_t)bits / 8;
    const uint8_t *data = (const uint8_t *)w->data + r * row_bytes;
    __m256 total[TILE];
    float bias_acc[TILE];
    for (size_t t = 0; t < nt; t++) {
        total[t] = _mm256_setzero_ps();
        bias_acc[t] = 0.0f;
    }
    for (size_t g = 0; g < ng; g++) {
        float s = kn_scale_at(w->scale_dtype, w->scales, r * ng + g);
        float b = kn_scale_at(w->scale_dtype, w->biases, r * ng + g);
        __m256 acc[TILE];
        for (size_t t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
        for (size_t c = 0; c < gs; c += 32) {
            size_t col = g * gs + c;
            __m256 q[4];
            if (bits == 4) unpack_q4(data + col / 2, q);
            else unpack_q8(data + col, q);
            for (size_t t = 0; t < nt; t++) {
                const float *xt = x + t * ldx + col;
                acc[t] = _mm256_fmadd_ps(q[0], _mm256_loadu_ps(xt), acc[t]);
                acc[t] = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xt + 8), acc[t]);
                acc[t] = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(xt + 16), acc[t]);
                acc[t] = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xt + 24), acc[t]);
            }
        }
        __m256 sv = _mm256_set1_ps(s);
        for (size_t t = 0; t < nt; t++) {
            total[t] = _mm256_fmadd_ps(sv, acc[t], total[t]);
            bias_acc[t] += b * xs[t * ng + g];
        }
    }
    for (size_t t = 0; t < nt; t++) y[t * ldy + r] = kn_hsum256(total[t]) + bias_acc[t];
}

/* Decode: four rows against one token. Per row the arithmetic is exactly
 * row_tile's for nt == 1 (same FMA order, same group fold, same bias sum),
 * so results are bit-identical to it; the four independent FMA chains hide
 * each other's latency, scales and biases are converted with F16C a
 * segment at a time, and the weights are prefetched a tile ahead (see
 * kn_prefetch_base). */
enum { SEG = 128 };

KN_INLINE void rows4_tile(const kn_weight *w, size_t r, const float *x, const float *xs, float *y,
                          int bits)
{
    size_t gs = (size_t)w->group_size, ng = w->cols / gs;
    size_t row_bytes = w->cols * (size_t)bits / 8;
    const uint8_t *d0 = (const uint8_t *)w->data + r * row_bytes;
    const uint8_t *pf = kn_prefetch_base(d0, row_bytes);
    __m256 tot[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    float bacc[4] = {0, 0, 0, 0};
    float sc[4][SEG], bi[4][SEG];
    for (size_t g0 = 0; g0 < ng; g0 += SEG) {
        size_t gn = ng - g0 < SEG ? ng - g0 : SEG;
        for (int i = 0; i < 4; i++) {
            kn_scales_f32(w->scale_dtype, w->scales, (r + (size_t)i) * ng + g0, gn, sc[i]);
            kn_scales_f32(w->scale_dtype, w->biases, (r + (size_t)i) * ng + g0, gn, bi[i]);
        }
        for (size_t g = g0; g < g0 + gn; g++) {
            __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (size_t c = 0; c < gs; c += 32) {
                size_t col = g * gs + c;
                /* 4 rows x 32 weights of the tile ahead */
                _mm_prefetch((const char *)(pf + col * (size_t)bits / 2), _MM_HINT_T0);
                if (bits == 8) _mm_prefetch((const char *)(pf + col * 4 + 64), _MM_HINT_T0);
                const float *xc = x + col;
#pragma GCC unroll 4
                for (int i = 0; i < 4; i++) {
                    __m256 q[4];
                    const uint8_t *rp = d0 + (size_t)i * row_bytes;
                    if (bits == 4) unpack_q4(rp + col / 2, q);
                    else unpack_q8(rp + col, q);
                    acc[i] = _mm256_fmadd_ps(q[0], _mm256_loadu_ps(xc), acc[i]);
                    acc[i] = _mm256_fmadd_ps(q[1], _mm256_loadu_ps(xc + 8), acc[i]);
                    acc[i] = _mm256_fmadd_ps(q[2], _mm256_loadu_ps(xc + 16), acc[i]);
                    acc[i] = _mm256_fmadd_ps(q[3], _mm256_loadu_ps(xc + 24), acc[i]);
                }
            }
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                tot[i] = _mm256_fmadd_ps(_mm256_set1_ps(sc[i][g - g0]), acc[i], tot[i]);
                bacc[i] += bi[i][g - g0] * xs[g];
            }
        }
    }
    for (int i = 0; i < 4; i++) y[r + (size_t)i] = kn_hsum256(tot[i]) + bacc[i];
}

static void mm_qf(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx, float *y,
                  size_t ldy, size_t n_tokens, int bits)
{
    size_t ng = w->cols / (size_t)w->group_size;
    float xs[TILE * MAX_GROUPS];
    SEM_ASSERT(ng <= MAX_GROUPS && w->group_size % 32 == 0);
    for (size_t t0 = 0; t0 < n_tokens; t0 += TILE) {
        size_t nt = n_tokens - t0 < TILE ? n_tokens - t0 : TILE;
        const float *xt = x + t0 * ldx;
        group_sums(xt, ldx, nt, w->cols, (size_t)w->group_size, xs);
        size_t r = r0;
        if (nt == 1) {
            if (bits == 4)
                for (; r + 4 <= r1; r += 4) rows4_tile(w, r, xt, xs, y + t0 * ldy, 4);
            else
                for (; r + 4 <= r1; r += 4) rows4_tile(w, r, xt, xs, y + t0 * ldy, 8);
        }
        for (; r < r1; r++) {
            if (r + 8 < r1) _mm_prefetch((const char *)w->data + (r + 8) * (w->cols * (size_t)bits / 8), _MM_HINT_T0);
            switch (nt) {
            case 1: row_tile(w, r, xt, ldx, xs, y + t0 * ldy, ldy, 1, bits); break;
            case 2: row_tile(w, r, xt, ldx, xs, y + t0 * ldy, ldy, 2, bits); break;
            case 3: row_tile(w, r, xt, ldx, xs, y + t0 * ldy, ldy, 3, bits); break;
            default: row_tile(w, r, xt, ldx, xs, y + t0 * ldy, ldy, 4, bits); break;
            }
        }
    }
}

void kn_avx2_mm_q4f(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                    const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)qx;
    if (w->bits == 4) mm_qf(w, r0, r1, x, ldx, y, ldy, n_tokens, 4);
    else mm_qf(w, r0, r1, x, ldx, y, ldy, n_tokens, 8);
}

void kn_avx2_mm_q8f(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                    const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
{
    (void)qx;
    mm_qf(w, r0, r1, x, ldx, y, ldy, n_tokens, 8);
}
