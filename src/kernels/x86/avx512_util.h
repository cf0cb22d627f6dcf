/* avx512_util.h - small AVX-512 helpers shared by the *_avx512.c files
 * (include only from files compiled with the AVX-512 target flags).
 *
 * Thread: any (pure inline functions).
 */
#ifndef SEM_KN_AVX512_UTIL_H
#define SEM_KN_AVX512_UTIL_H

#include "kernels/x86/avx2_util.h"

/* 16 halves (bf16: bfloat16s) at p, any alignment, as f32. */
KN_AVX_INLINE __m512 kn_ld16_h(const void *p, bool bf16)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)p);
    if (bf16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

#endif /* SEM_KN_AVX512_UTIL_H */
