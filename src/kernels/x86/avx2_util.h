/* avx2_util.h - small AVX2/FMA/F16C helpers shared by the *_avx2.c files
 * (include only from files compiled with the AVX2 target flags).
 *
 * Thread: any (pure inline functions).
 */
#ifndef SEM_KN_AVX2_UTIL_H
#define SEM_KN_AVX2_UTIL_H

#include "kernels/kn_impl.h"

#include <immintrin.h>

/* Always inlined: GCC may otherwise outline a helper that takes a __m256
 * argument and return from it without VZEROUPPER, and a caller that
 * trusts the call to leave the upper halves clean then returns to SSE
 * code (libm's expf) with them dirty: on Zen 3 every later SSE
 * instruction paid for it (kn_silu_mul ran 20x slower after a matmul). */
#define KN_AVX_INLINE static inline __attribute__((always_inline))

KN_AVX_INLINE float kn_hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 8 halves / bfloat16s at p (any alignment) as f32. */
KN_AVX_INLINE __m256 kn_ld8_f16(const void *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
KN_AVX_INLINE __m256 kn_ld8_bf16(const void *p)
{
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

/* Converts n scale/bias values starting at element i0 of p to f32. */
KN_AVX_INLINE void kn_scales_f32(kn_dtype t, const void *p, size_t i0, size_t n, float *out)
{
    const uint8_t *b = p;
    size_t i = 0;
    if (t == KN_F16) {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, kn_ld8_f16(b + 2 * (i0 + i)));
    } else if (t == KN_BF16) {
        for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, kn_ld8_bf16(b + 2 * (i0 + i)));
    }
    if (t == KN_F16) {
        for (; i < n; i++) out[i] = _cvtsh_ss(kn_ld_u16(b, i0 + i));
    } else {
        for (; i < n; i++) out[i] = kn_scale_at(t, p, i0 + i);
    }
}

/* Decode streams weights from DRAM in 4-row tiles; hardware prefetchers
 * do not run far enough ahead over four short interleaved rows, so each
 * chunk step prefetches its share of a tile ahead (two tiles ahead when
 * tiles are small, so that about 2 KiB or more are in flight). Measured on
 * Zen 3: about +60% on a SmolLM2-shaped decode. Prefetch never faults, so
 * running past the matrix end is harmless. rb = bytes per row. */
KN_AVX_INLINE const uint8_t *kn_prefetch_base(const uint8_t *w0, size_t rb)
{
    /* integer math: the address may lie past the matrix */
    return (const uint8_t *)((uintptr_t)w0 + 4 * rb + (4 * rb < 4096 ? 4 * rb : 0));
}

/* e^x for x in [-87.3, 88.3] (clamped outside: the callers pass x <= 0,
 * where e^-87.3 ~ 1e-38 is as good as 0 beside a sum >= 1): 2^n * e^r with
 * n = round(x / ln2), r = x - n ln2 (two-part ln2), |r| <= ln2/2, e^r by
 * its degree-7 Taylor polynomial (truncation < 2^-27 relative). About
 * 2 ulp. */
KN_AVX_INLINE __m256 kn_exp256(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187045e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#endif /* SEM_KN_AVX2_UTIL_H */
