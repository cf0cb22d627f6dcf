/* convert_ref.c - scalar element conversions: IEEE half and bfloat16 to and
 * from f32 (round to nearest, ties to even; inf and nan preserved,
 * subnormals exact), and whole-row conversion to f32. These are the
 * specification the F16C/AVX-512 paths are tested against.
 *
 * Thread: any (pure functions).
 */
#include "kernels/kn_impl.h"

#include <string.h>

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

const char *kn_dtype_name(kn_dtype t)
{
    switch (t) {
    case KN_F32: return "f32";
    case KN_F16: return "f16";
    case KN_BF16: return "bf16";
    case KN_Q4: return "q4";
    case KN_Q8: return "q8";
    }
    return "unknown";
}

float kn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in f32 */
        float v = (float)mant * 0x1p-24f;
        return bits_f32(f32_bits(v) | sign);
    }
    if (exp == 31) return bits_f32(sign | 0x7f800000u | (mant << 13)); /* inf, nan */
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

/* Rounds m >> shift to nearest, ties to even. shift is 1..31. */
static inline uint32_t shift_rne(uint32_t m, unsigned shift)
{
    uint32_t r = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1))) r++;
    return r;
}

uint16_t kn_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) {
        if (x == 0x7f800000u) return sign | 0x7c00;
        return sign | 0x7e00 | (uint16_t)((x >> 13) & 0x3ff); /* quiet nan */
    }
    if (x >= 0x47800000u) return sign | 0x7c00; /* >= 65536: inf */
    uint32_t e = x >> 23;
    if (e < 113) {
        /* below 2^-14: half subnormal (or zero); unit is 2^-24 */
        if (e < 102) return sign; /* < 2^-25: rounds to zero */
        uint32_t m = (x & 0x7fffffu) | 0x800000u;
        return sign | (uint16_t)shift_rne(m, 126 - e);
    }
    /* normal: the carry of rounding may bump the exponent, up to inf */
    uint32_t h = ((e - 112) << 10) | ((x & 0x7fffffu) >> 13);
    uint32_t rem = x & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1))) h++;
    return sign | (uint16_t)h;
}

float kn_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t kn_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

void kn_to_f32(kn_dtype t, const void *src, float *dst, size_t n)
{
    switch (t) {
    case KN_F32:
        memmove(dst, src, n * sizeof(float));
        return;
    case KN_F16: {
        for (size_t i = 0; i < n; i++) dst[i] = kn_f16_to_f32(kn_ld_u16(src, i));
        return;
    }
    case KN_BF16: {
        for (size_t i = 0; i < n; i++) dst[i] = kn_bf16_to_f32(kn_ld_u16(src, i));
        return;
    }
    case KN_Q4:
    case KN_Q8:
        break;
    }
    SEM_ASSERT(!"kn_to_f32: not an element format");
}
