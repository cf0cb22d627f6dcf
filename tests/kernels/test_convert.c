/* test_convert.c - kernels room: f16 and bf16 conversions against an
 * independent model of the formats (ldexp of the fields), exhaustively:
 * every half and bfloat16 decodes right, and every rounding boundary
 * (the f32 midpoint between two neighbours, and the floats either side of
 * it) encodes to the nearest value with ties to even; inf, nan, signed
 * zero, subnormals and overflow; F16C hardware agreement when present. */
#include "kernels/kernels.h"

#include "test_util.h"

#include <math.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

/* Independent decode of a half: (-1)^s * 2^(e-15) * (1 + m/1024), or the
 * subnormal 2^-14 * m/1024. */
static double half_value(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_f16_decode_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kn_f16_to_f32((uint16_t)h);
        int e = (h >> 10) & 31;
        if (e == 31) {
            if (h & 1023) assert_true(isnan(f));
            else assert_true(isinf(f) && (signbit(f) != 0) == ((h >> 15) != 0));
            continue;
        }
        assert_true((double)f == half_value((uint16_t)h));
        assert_true((signbit(f) != 0) == ((h >> 15) != 0));
        /* and back, exactly */
        assert_int_equal(kn_f32_to_f16(f), h);
    }
}

static void test_f16_round_to_nearest_even(void **state)
{
    (void)state;
    /* Positive finite halves h and h+1 (0x7bff + 1 is inf, whose tie is at
     * 65520): the midpoint is exact in f32. */
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double lo = half_value((uint16_t)h);
        double hi = h + 1 == 0x7c00 ? 65536.0 : half_value((uint16_t)(h + 1));
        float mid = (float)((lo + hi) / 2);
        assert_true((double)mid == (lo + hi) / 2);
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        assert_int_equal(kn_f32_to_f16(mid), even);
        assert_int_equal(kn_f32_to_f16(-mid), even | 0x8000);
        assert_int_equal(kn_f32_to_f16(nextafterf(mid, 0)), h);
        assert_int_equal(kn_f32_to_f16(nextafterf(mid, INFINITY)), h + 1);
    }
}

static void test_f16_specials(void **state)
{
    (void)state;
    assert_int_equal(kn_f32_to_f16(INFINITY), 0x7c00);
    assert_int_equal(kn_f32_to_f16(-INFINITY), 0xfc00);
    assert_int_equal(kn_f32_to_f16(1e10f), 0x7c00);
    assert_int_equal(kn_f32_to_f16(65504.0f), 0x7bff);
    assert_int_equal(kn_f32_to_f16(65519.99f), 0x7bff);
    assert_int_equal(kn_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(kn_f32_to_f16(-0.0f), 0x8000);
    assert_int_equal(kn_f32_to_f16(0x1p-24f), 0x0001);  /* smallest subnormal */
    assert_int_equal(kn_f32_to_f16(0x1p-25f), 0x0000);  /* tie -> even (zero) */
    assert_int_equal(kn_f32_to_f16(0x1.8p-25f), 0x0001);
    assert_int_equal(kn_f32_to_f16(0x1p-30f), 0x0000);
    assert_int_equal(kn_f32_to_f16(1e-45f), 0x0000);    /* f32 subnormal */
    uint16_t n = kn_f32_to_f16(NAN);
    assert_true((n & 0x7c00) == 0x7c00 && (n & 0x3ff) != 0);
    assert_true(isnan(kn_f16_to_f32(n)));
    assert_true(isnan(kn_f16_to_f32(kn_f32_to_f16(-NAN))));
}

static double bf16_value(uint16_t h)
{
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v = e == 0 ? ldexp(m, -133) : ldexp(128 + m, e - 134);
    return s ? -v : v;
}

static void test_bf16_all(void **state)
{
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = kn_bf16_to_f32((uint16_t)h);
        int e = (h >> 7) & 255;
        if (e == 255) {
            assert_true((h & 127) ? isnan(f) : isinf(f));
            assert_true(isnan(kn_bf16_to_f32(kn_f32_to_bf16(f))) == isnan(f));
            continue;
        }
        assert_true((double)f == bf16_value((uint16_t)h));
        assert_int_equal(kn_f32_to_bf16(f), h);
        if ((h & 0x7fff) == 0x7f7f) continue; /* the next one up is inf */
        double lo = bf16_value((uint16_t)h), hi = bf16_value((uint16_t)(h + 1));
        if (h & 0x8000) continue; /* negative side checked by symmetry below */
        float mid = (float)((lo + hi) / 2);
        assert_true((double)mid == (lo + hi) / 2);
        uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        assert_int_equal(kn_f32_to_bf16(mid), even);
        assert_int_equal(kn_f32_to_bf16(-mid), even | 0x8000);
        assert_int_equal(kn_f32_to_bf16(nextafterf(mid, 0)), h);
        assert_int_equal(kn_f32_to_bf16(nextafterf(mid, INFINITY)), h + 1);
    }
    assert_int_equal(kn_f32_to_bf16(INFINITY), 0x7f80);
    assert_int_equal(kn_f32_to_bf16(3.4e38f), 0x7f80); /* rounds past max to inf */
    uint16_t n = kn_f32_to_bf16(NAN);
    assert_true(isnan(kn_bf16_to_f32(n)));
    /* a nan whose payload lives only in the low 16 bits stays a nan */
    uint32_t bits = 0x7f800001u;
    float tiny_nan;
    memcpy(&tiny_nan, &bits, 4);
    assert_true(isnan(kn_bf16_to_f32(kn_f32_to_bf16(tiny_nan))));
}

static void test_to_f32_rows(void **state)
{
    (void)state;
    /* unaligned source (odd byte offset) */
    uint8_t raw[2 * 33 + 1];
    float want[33], got[33];
    for (int i = 0; i < 33; i++) {
        want[i] = (float)(i - 16) * 0.25f;
        uint16_t h = kn_f32_to_f16(want[i]);
        memcpy(raw + 1 + 2 * i, &h, 2);
    }
    kn_to_f32(KN_F16, raw + 1, got, 33);
    assert_memory_equal(got, want, sizeof want);
    for (int i = 0; i < 33; i++) {
        uint16_t h = kn_f32_to_bf16(want[i]);
        memcpy(raw + 1 + 2 * i, &h, 2);
    }
    kn_to_f32(KN_BF16, raw + 1, got, 33);
    assert_memory_equal(got, want, sizeof want);
    assert_string_equal(kn_dtype_name(KN_Q4), "q4");
    assert_string_equal(kn_kv_dtype_name(KN_KV_Q8), "q8");
}

#if defined(__x86_64__)
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

static void test_f16c_agrees(void **state)
{
    (void)state;
    if (!kn_cpu_detect().f16c) {
        print_message("skipped: CPU lacks F16C\n");
        skip();
    }
    uint32_t s = 12345;
    for (int i = 0; i < 1000000; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t bits = s;
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f)) continue;
        assert_int_equal(kn_f32_to_f16(f), hw_f32_to_f16(f));
    }
}
#endif

/* kn_f32_to_f16_row (F16C on this machine when present) is bit for bit
 * the scalar conversion: random bit patterns (NaNs with every payload
 * included), the specials, every length up to 40 and odd destinations. */
static void test_f16_row(void **state)
{
    (void)state;
    enum { N = 4096 };
    static float x[N];
    static uint8_t out[2 * N + 1];
    const uint32_t special[] = {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc00001u, 0x7f800001u,
                                0x7fbfffffu, 0x477fe000u, 0x477ff000u, 0x477fefffu, 0x33000000u,
                                0x33000001u, 0x387fc000u, 0x80000000u, 0x00000001u};
    uint32_t s = 777;
    for (size_t i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        uint32_t bits = i < sizeof special / sizeof special[0] ? special[i] : s;
        memcpy(&x[i], &bits, 4);
    }
    for (size_t off = 0; off < 2; off++)
        for (size_t n = 0; n <= N; n = n < 40 ? n + 1 : n * 2) {
            kn_f32_to_f16_row(x, out + off, n);
            for (size_t i = 0; i < n; i++) {
                uint16_t h;
                memcpy(&h, out + off + 2 * i, 2);
                assert_int_equal(h, kn_f32_to_f16(x[i]));
            }
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_decode_all),
        cmocka_unit_test(test_f16_round_to_nearest_even),
        cmocka_unit_test(test_f16_specials),
        cmocka_unit_test(test_bf16_all),
        cmocka_unit_test(test_to_f32_rows),
        cmocka_unit_test(test_f16_row),
#if defined(__x86_64__)
        cmocka_unit_test(test_f16c_agrees),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
