/* avx512_emu.h - a portable-C model of the few AVX-512 intrinsics the
 * kernels use, so test_avx512_emu.c can run the AVX-512 kernel source on a
 * CPU without AVX-512 (such as the Zen 3 development machine). Each
 * function follows the instruction's documented per-lane semantics
 * (Intel SDM); GCC's generic vectors carry the 512-bit types. Where the
 * real instruction leaves lanes undefined (cast to a wider type), the model
 * zeroes them, one of the allowed outcomes.
 *
 * Include before the kernel source; every name is redirected by macro to
 * an emu512_ function. Thread: any (pure functions).
 */
#ifndef SEM_AVX512_EMU_H
#define SEM_AVX512_EMU_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* The 512-bit types are modelled as plain structs (passed by value like
 * any struct, so no vector ABI is involved); the kernel source sees them
 * through the __m512 / __m512i / __m512d names, redirected below. */
typedef struct emu_m512 { float f[16]; } emu_m512;
typedef struct emu_m512i { uint8_t b[64]; } emu_m512i;
typedef struct emu_m512d { double d[8]; } emu_m512d;

#define EMU static inline __attribute__((unused))

EMU emu_m512 emu512_setzero_ps(void) { return (emu_m512){{0}}; }
EMU emu_m512d emu512_setzero_pd(void) { return (emu_m512d){{0}}; }
EMU emu_m512i emu512_setzero_si512(void) { return (emu_m512i){{0}}; }
EMU emu_m512 emu512_set1_ps(float f)
{
    emu_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = f;
    return r;
}
EMU emu_m512i emu512_set1_epi8(char c)
{
    emu_m512i r;
    memset(r.b, c, 64);
    return r;
}
EMU emu_m512i emu512_setr_epi32(int a0, int a1, int a2, int a3, int a4, int a5, int a6, int a7,
                                int a8, int a9, int a10, int a11, int a12, int a13, int a14,
                                int a15)
{
    int32_t v[16] = {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15};
    emu_m512i r;
    memcpy(r.b, v, 64);
    return r;
}
EMU emu_m512 emu512_add_ps(emu_m512 a, emu_m512 b)
{
    for (int i = 0; i < 16; i++) a.f[i] += b.f[i];
    return a;
}
EMU emu_m512 emu512_mul_ps(emu_m512 a, emu_m512 b)
{
    for (int i = 0; i < 16; i++) a.f[i] *= b.f[i];
    return a;
}
EMU emu_m512 emu512_fmadd_ps(emu_m512 a, emu_m512 b, emu_m512 c)
{
    for (int i = 0; i < 16; i++) a.f[i] = fmaf(a.f[i], b.f[i], c.f[i]); /* one rounding */
    return a;
}
EMU emu_m512i emu512_and_si512(emu_m512i a, emu_m512i b)
{
    for (int i = 0; i < 64; i++) a.b[i] &= b.b[i];
    return a;
}
EMU emu_m512i emu512_srli_epi16(emu_m512i a, unsigned n)
{
    uint16_t v[32];
    memcpy(v, a.b, 64);
    for (int i = 0; i < 32; i++) v[i] = n > 15 ? 0 : (uint16_t)(v[i] >> n);
    memcpy(a.b, v, 64);
    return a;
}
EMU emu_m512i emu512_loadu_si512(const void *p)
{
    emu_m512i r;
    memcpy(r.b, p, 64);
    return r;
}
EMU emu_m512 emu512_loadu_ps(const void *p)
{
    emu_m512 r;
    memcpy(r.f, p, 64);
    return r;
}
EMU emu_m512 emu512_cvtepi32_ps(emu_m512i a)
{
    int32_t v[16];
    memcpy(v, a.b, 64);
    emu_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = (float)v[i]; /* exact below 2^24 */
    return r;
}
/* VPDPBUSD: lane i += sum_k u8(a.byte[4i+k]) * s8(b.byte[4i+k]), no
 * saturation (wraps like int32 addition). */
#define EMU_DPBUSD(name, T, lanes)                                                      \
    EMU T name(T src, T a, T b)                                                         \
    {                                                                                   \
        int32_t s[lanes];                                                               \
        uint8_t ua[lanes * 4];                                                          \
        int8_t sb[lanes * 4];                                                           \
        memcpy(s, &src, sizeof s);                                                      \
        memcpy(ua, &a, sizeof ua);                                                      \
        memcpy(sb, &b, sizeof sb);                                                      \
        for (int i = 0; i < lanes; i++) {                                               \
            int64_t acc = s[i];                                                         \
            for (int k = 0; k < 4; k++) acc += (int32_t)ua[4 * i + k] * sb[4 * i + k];  \
            s[i] = (int32_t)(uint32_t)acc;                                              \
        }                                                                               \
        memcpy(&src, s, sizeof s);                                                      \
        return src;                                                                     \
    }
EMU_DPBUSD(emu512_dpbusd_epi32, emu_m512i, 16)
EMU_DPBUSD(emu256_dpbusd_epi32, __m256i, 8)
EMU_DPBUSD(emu128_dpbusd_epi32, __m128i, 4)

EMU emu_m512 emu512_permutexvar_ps(emu_m512i idx, emu_m512 a)
{
    int32_t ix[16];
    memcpy(ix, idx.b, 64);
    emu_m512 r;
    for (int i = 0; i < 16; i++) r.f[i] = a.f[ix[i] & 15];
    return r;
}
EMU emu_m512 emu512_castps128_ps512(__m128 a)
{
    emu_m512 r = {{0}};
    memcpy(r.f, &a, 16);
    return r;
}
EMU emu_m512 emu512_castps256_ps512(__m256 a)
{
    emu_m512 r = {{0}};
    memcpy(r.f, &a, 32);
    return r;
}
EMU emu_m512d emu512_castps_pd(emu_m512 a)
{
    emu_m512d r;
    memcpy(r.d, a.f, 64);
    return r;
}
EMU emu_m512 emu512_castpd_ps(emu_m512d a)
{
    emu_m512 r;
    memcpy(r.f, a.d, 64);
    return r;
}
EMU emu_m512d emu512_insertf64x4(emu_m512d a, __m256d b, int imm)
{
    memcpy(a.d + (imm & 1) * 4, &b, 32);
    return a;
}
EMU float emu512_reduce_add_ps(emu_m512 a)
{
    float s = 0;
    for (int i = 0; i < 16; i++) s += a.f[i];
    return s;
}

#define __m512 emu_m512
#define __m512i emu_m512i
#define __m512d emu_m512d
#undef _mm512_setzero_ps
#define _mm512_setzero_ps emu512_setzero_ps
#undef _mm512_setzero_pd
#define _mm512_setzero_pd emu512_setzero_pd
#undef _mm512_setzero_si512
#define _mm512_setzero_si512 emu512_setzero_si512
#undef _mm512_set1_ps
#define _mm512_set1_ps emu512_set1_ps
#undef _mm512_set1_epi8
#define _mm512_set1_epi8 emu512_set1_epi8
#undef _mm512_setr_epi32
#define _mm512_setr_epi32 emu512_setr_epi32
#undef _mm512_add_ps
#define _mm512_add_ps emu512_add_ps
#undef _mm512_mul_ps
#define _mm512_mul_ps emu512_mul_ps
#undef _mm512_fmadd_ps
#define _mm512_fmadd_ps emu512_fmadd_ps
#undef _mm512_and_si512
#define _mm512_and_si512 emu512_and_si512
#undef _mm512_srli_epi16
#define _mm512_srli_epi16 emu512_srli_epi16
#undef _mm512_loadu_si512
#define _mm512_loadu_si512 emu512_loadu_si512
#undef _mm512_loadu_ps
#define _mm512_loadu_ps emu512_loadu_ps
#undef _mm512_cvtepi32_ps
#define _mm512_cvtepi32_ps emu512_cvtepi32_ps
#undef _mm512_dpbusd_epi32
#define _mm512_dpbusd_epi32 emu512_dpbusd_epi32
#undef _mm256_dpbusd_epi32
#define _mm256_dpbusd_epi32 emu256_dpbusd_epi32
#undef _mm_dpbusd_epi32
#define _mm_dpbusd_epi32 emu128_dpbusd_epi32
#undef _mm512_permutexvar_ps
#define _mm512_permutexvar_ps emu512_permutexvar_ps
#undef _mm512_castps128_ps512
#define _mm512_castps128_ps512 emu512_castps128_ps512
#undef _mm512_castps256_ps512
#define _mm512_castps256_ps512 emu512_castps256_ps512
#undef _mm512_castps_pd
#define _mm512_castps_pd emu512_castps_pd
#undef _mm512_castpd_ps
#define _mm512_castpd_ps emu512_castpd_ps
#undef _mm512_insertf64x4
#define _mm512_insertf64x4 emu512_insertf64x4
#undef _mm512_reduce_add_ps
#define _mm512_reduce_add_ps emu512_reduce_add_ps

#endif /* SEM_AVX512_EMU_H */
