/* ops_avx2.c - AVX2+FMA pointwise ops: the SiLU gate of the MLP (x86
 * tables), out = silu(gate) * up = gate / (1 + e^-gate) * up, eight at a
 * time with the vector exp of avx2_util.h (about 2 ulp; libm's expf per
 * element made the gate a visible part of both decode and prefill); and
 * f32 -> f16 rows with F16C for the KV stores (kn_f32_to_f16_row).
 *
 * Thread: any (pure functions of their arguments).
 */
#include "kernels/x86/avx2_util.h"

#include <math.h>

void kn_avx2_silu_mul(float *out, const float *gate, const float *up, size_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        /* e^-g is clamped to [e^-87.3, e^88.3]: g / (1 + e^88.3) is -0
         * to f32 precision for g < -88, as the true value is */
        __m256 e = kn_exp256(_mm256_xor_ps(g, sign));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* vcvtps2ph rounds to nearest even with IEEE subnormals, overflow to inf
 * and NaNs quieted with their payload's top bits, as kn_f32_to_f16 does
 * (tests/kernels/test_convert.c compares them on random bit patterns). */
size_t kn_avx2_f32_to_f16_8s(const float *x, void *out, size_t n)
{
    uint8_t *o = out;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(o + 2 * i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    return i;
}
