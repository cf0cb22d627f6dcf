/* kv_avx2.c - AVX2+FMA+F16C row kernels of attention: q . k and
 * acc += p * v read straight from a stored KV row in each format, and the
 * accumulator rescale. Affine rows (Q8/Q4, group KN_KV_GROUP) use
 *   q . k = sum_g s_g * (q_g . qk_g) + b_g * sum(q_g)
 * with sum(q_g) precomputed once per query head (qgsum).
 *
 * Thread: any (pure functions of their arguments).
 */
#include "kernels/x86/avx2_util.h"

#define KN_INLINE static inline __attribute__((always_inline))

KN_INLINE __m256 ld_row8(kn_kv_dtype t, const uint8_t *row, size_t c)
{
    if (t == KN_KV_F32) return _mm256_loadu_ps((const float *)(row + 4 * c));
    if (t == KN_KV_F16) return kn_ld8_f16(row + 2 * c);
    return kn_ld8_bf16(row + 2 * c);
}

KN_INLINE float at_scalar(kn_kv_dtype t, const uint8_t *row, size_t c)
{
    if (t == KN_KV_F32) return kn_ld_f32(row, c);
    if (t == KN_KV_F16) return kn_f16_to_f32(kn_ld_u16(row, c));
    return kn_bf16_to_f32(kn_ld_u16(row, c));
}

KN_INLINE float dot_float(kn_kv_dtype t, const float *q, const uint8_t *row, size_t dim)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    size_t c = 0;
    for (; c + 16 <= dim; c += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), ld_row8(t, row, c), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c + 8), ld_row8(t, row, c + 8), a1);
    }
    for (; c + 8 <= dim; c += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), ld_row8(t, row, c), a0);
    float s = kn_hsum256(_mm256_add_ps(a0, a1));
    for (; c < dim; c++) s += q[c] * at_scalar(t, row, c);
    return s;
}

KN_INLINE void axpy_float(kn_kv_dtype t, float *acc, float p, const uint8_t *row, size_t dim)
{
    __m256 pv = _mm256_set1_ps(p);
    size_t c = 0;
    for (; c + 8 <= dim; c += 8)
        _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(pv, ld_row8(t, row, c), _mm256_loadu_ps(acc + c)));
    for (; c < dim; c++) acc[c] += p * at_scalar(t, row, c);
}

float kn_avx2_kv_dot_f32(const float *q, const float *qgsum, const uint8_t *row, size_t dim)
{
    (void)qgsum;
    return dot_float(KN_KV_F32, q, row, dim);
}
float kn_avx2_kv_dot_f16(const float *q, const float *qgsum, const uint8_t *row, size_t dim)
{
    (void)qgsum;
    return dot_float(KN_KV_F16, q, row, dim);
}
float kn_avx2_kv_dot_bf16(const float *q, const float *qgsum, const uint8_t *row, size_t dim)
{
    (void)qgsum;
    return dot_float(KN_KV_BF16, q, row, dim);
}
void kn_avx2_kv_axpy_f32(float *acc, float p, const uint8_t *row, size_t dim)
{
    axpy_float(KN_KV_F32, acc, p, row, dim);
}
void kn_avx2_kv_axpy_f16(float *acc, float p, const uint8_t *row, size_t dim)
{
    axpy_float(KN_KV_F16, acc, p, row, dim);
}
void kn_avx2_kv_axpy_bf16(float *acc, float p, const uint8_t *row, size_t dim)
{
    axpy_float(KN_KV_BF16, acc, p, row, dim);
}

/* ---- affine rows ----------------------------------------------------------- */

/* 16 quantized values from element c of an affine row, as two f32x8. */
KN_INLINE void ld_q16(bool q4, const uint8_t *row, size_t c, __m256 *f0, __m256 *f1)
{
    __m128i nat;
    if (q4) {
        __m128i v = _mm_loadl_epi64((const __m128i *)(row + c / 2));
        const __m128i m4 = _mm_set1_epi8(0x0f);
        nat = _mm_unpacklo_epi8(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    } else {
        nat = _mm_loadu_si128((const __m128i *)(row + c));
    }
    *f0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(nat));
    *f1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(nat, 8)));
}

KN_INLINE float dot_affine(bool q4, const float *q, const float *qgsum, const uint8_t *row,
                           size_t dim)
{
    size_t ng = dim / KN_KV_GROUP;
    const uint8_t *sb = row + (q4 ? dim / 2 : dim);
    __m256 acc = _mm256_setzero_ps();
    float bias = 0;
    for (size_t g = 0; g < ng; g++) {
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (size_t c = g * KN_KV_GROUP; c < (g + 1) * KN_KV_GROUP; c += 16) {
            __m256 f0, f1;
            ld_q16(q4, row, c, &f0, &f1);
            a0 = _mm256_fmadd_ps(f0, _mm256_loadu_ps(q + c), a0);
            a1 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(q + c + 8), a1);
        }
        float s = kn_f16_to_f32(kn_ld_u16(sb, g)), b = kn_f16_to_f32(kn_ld_u16(sb, ng + g));
        acc = _mm256_fmadd_ps(_mm256_add_ps(a0, a1), _mm256_set1_ps(s), acc);
        bias += b * qgsum[g];
    }
    return kn_hsum256(acc) + bias;
}

KN_INLINE void axpy_affine(bool q4, float *acc, float p, const uint8_t *row, size_t dim)
{
    size_t ng = dim / KN_KV_GROUP;
    const uint8_t *sb = row + (q4 ? dim / 2 : dim);
    for (size_t g = 0; g < ng; g++) {
        float s = kn_f16_to_f32(kn_ld_u16(sb, g)), b = kn_f16_to_f32(kn_ld_u16(sb, ng + g));
        __m256 ps = _mm256_set1_ps(p * s), pb = _mm256_set1_ps(p * b);
        for (size_t c = g * KN_KV_GROUP; c < (g + 1) * KN_KV_GROUP; c += 16) {
            __m256 f0, f1;
            ld_q16(q4, row, c, &f0, &f1);
            __m256 a0 = _mm256_add_ps(_mm256_loadu_ps(acc + c), pb);
            __m256 a1 = _mm256_add_ps(_mm256_loadu_ps(acc + c + 8), pb);
            _mm256_storeu_ps(acc + c, _mm256_fmadd_ps(f0, ps, a0));
            _mm256_storeu_ps(acc + c + 8, _mm256_fmadd_ps(f1, ps, a1));
        }
    }
}

float kn_avx2_kv_dot_q8(const float *q, const float *qgsum, const uint8_t *row, size_t dim)
{
    return dot_affine(false, q, qgsum, row, dim);
}
float kn_avx2_kv_dot_q4(const float *q, const float *qgsum, const uint8_t *row, size_t dim)
{
    return dot_affine(true, q, qgsum, row, dim);
}
void kn_avx2_kv_axpy_q8(float *acc, float p, const uint8_t *row, size_t dim)
{
    axpy_affine(false, acc, p, row, dim);
}
void kn_avx2_kv_axpy_q4(float *acc, float p, const uint8_t *row, size_t dim)
{
    axpy_affine(true, acc, p, row, dim);
}

void kn_avx2_scale(float *acc, float s, size_t n)
{
    __m256 sv = _mm256_set1_ps(s);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(acc + i, _mm256_mul_ps(_mm256_loadu_ps(acc + i), sv));
    for (; i < n; i++) acc[i] *= s;
}
