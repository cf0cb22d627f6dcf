/* ops_ref.c - the elementwise ops of a transformer layer: RMSNorm, RoPE,
 * the gated activations, softmax and residual add. They are O(n) beside
 * the O(n^2) matmuls, so there is one scalar version (which the compiler
 * may vectorize), and it is the specification.
 *
 * Thread: the calling thread; no state.
 */
#include "kernels/kn_impl.h"

#include <math.h>

void kn_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps, float w_offset)
{
    /* four independent sums: one chain paid an add latency per element,
     * on the calling thread between a decode step's fork-joins */
    double s4[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (size_t k = 0; k < 4; k++) s4[k] += (double)x[i + k] * (double)x[i + k];
    for (; i < n; i++) s4[0] += (double)x[i] * (double)x[i];
    double ss = (s4[0] + s4[1]) + (s4[2] + s4[3]);
    float inv = n ? (float)(1.0 / sqrt(ss / (double)n + (double)eps)) : 0.0f;
    for (i = 0; i < n; i++) out[i] = x[i] * inv * (w_offset + w[i]);
}

/* The angle is formed in f32 (pos * inv_freq, as HF does) and its cos/sin
 * taken once per frequency for all heads. */
void kn_rope_table(float *cs, int32_t pos, const float *inv_freq, size_t rot_dim, float attn_factor)
{
    size_t half = rot_dim / 2;
    for (size_t i = 0; i < half; i++) {
        float ang = (float)pos * inv_freq[i];
        cs[i] = cosf(ang) * attn_factor;
        cs[half + i] = sinf(ang) * attn_factor;
    }
}

void kn_rope_apply(float *x, size_t n_heads, size_t head_dim, size_t rot_dim, const float *cs)
{
    SEM_DASSERT(rot_dim <= head_dim && rot_dim % 2 == 0);
    size_t half = rot_dim / 2;
    for (size_t h = 0; h < n_heads; h++) { /* each head's two halves read in order */
        float *xh = x + h * head_dim;
        for (size_t i = 0; i < half; i++) {
            float c = cs[i], s = cs[half + i], x0 = xh[i], x1 = xh[i + half];
            xh[i] = x0 * c - x1 * s;
            xh[i + half] = x0 * s + x1 * c;
        }
    }
}

void kn_rope(float *x, size_t n_heads, size_t head_dim, size_t rot_dim, int32_t pos,
             const float *inv_freq, float attn_factor)
{
    float cs[KN_ROPE_MAX_DIM];
    SEM_ASSERT(rot_dim <= KN_ROPE_MAX_DIM);
    kn_rope_table(cs, pos, inv_freq, rot_dim, attn_factor);
    kn_rope_apply(x, n_heads, head_dim, rot_dim, cs);
}

void kn_silu_mul(float *out, const float *gate, const float *up, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void kn_gelu_tanh_mul(float *out, const float *gate, const float *up, size_t n)
{
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g))) * up[i];
    }
}

void kn_softmax(float *x, size_t n)
{
    if (n == 0) return;
    float mx = x[0];
    for (size_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (size_t i = 0; i < n; i++) x[i] *= inv;
}

void kn_add(float *y, const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}
