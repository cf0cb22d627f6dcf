/* test_ops.c - kernels room: the elementwise ops against double-precision
 * formulas. RMSNorm (both weight conventions, aliasing), RoPE (identity at
 * position 0, norm preserving, partial rotary dims untouched, the angle of
 * the HF rotate-half convention), SiLU/GELU-tanh gating, softmax (sums to
 * 1, stable for huge inputs) and add.
 *
 * Tolerances: elementwise results within 8 u relative (a few f32
 * roundings and one libm call, each <= 1-2 ulp), sums within n u. */
#include "kn_test.h"

static void test_rmsnorm(void **state)
{
    (void)state;
    kt_rng r = {1};
    size_t sizes[] = {1, 7, 33, 576, 4095};
    for (size_t si = 0; si < 5; si++) {
        size_t n = sizes[si];
        float *x = malloc(n * 4), *w = malloc(n * 4), *out = malloc(n * 4);
        kt_fill(&r, x, n, 3.0f);
        kt_fill(&r, w, n, 1.0f);
        for (int off = 0; off <= 1; off++) {
            double ss = 0;
            for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
            double inv = 1.0 / sqrt(ss / (double)n + 1e-5);
            kn_rmsnorm(out, x, w, n, 1e-5f, (float)off);
            for (size_t i = 0; i < n; i++) {
                double want = x[i] * inv * (off + (double)w[i]);
                assert_true(fabs(out[i] - want) <= 8 * KT_U32 * fabs(x[i] * inv) * (off + fabs(w[i])) + 1e-30);
            }
        }
        /* out may alias x */
        memcpy(out, x, n * 4);
        float *ref = malloc(n * 4);
        kn_rmsnorm(ref, x, w, n, 1e-6f, 0);
        kn_rmsnorm(out, out, w, n, 1e-6f, 0);
        assert_memory_equal(out, ref, n * 4);
        free(ref);
        free(x);
        free(w);
        free(out);
    }
}

static void test_rope(void **state)
{
    (void)state;
    kt_rng r = {2};
    size_t heads = 3, hd = 64;
    float x[3 * 64], y[3 * 64], inv_freq[32];
    for (size_t rot = 2; rot <= hd; rot *= 2) {
        for (size_t i = 0; i < rot / 2; i++) inv_freq[i] = powf(10000.0f, -2.0f * (float)i / (float)rot);
        kt_fill(&r, x, heads * hd, 1.0f);
        memcpy(y, x, sizeof x);
        kn_rope(y, heads, hd, rot, 0, inv_freq, 1.0f);
        assert_memory_equal(x, y, sizeof x); /* position 0 is the identity */
        int32_t positions[] = {1, 17, 4095, 32767};
        for (int pi = 0; pi < 4; pi++) {
            int32_t pos = positions[pi];
            memcpy(y, x, sizeof x);
            kn_rope(y, heads, hd, rot, pos, inv_freq, 1.0f);
            for (size_t h = 0; h < heads; h++) {
                const float *a = x + h * hd, *b = y + h * hd;
                double na = 0, nb = 0;
                for (size_t i = 0; i < hd; i++) {
                    na += (double)a[i] * a[i];
                    nb += (double)b[i] * b[i];
                }
                assert_true(fabs(sqrt(na) - sqrt(nb)) <= 16 * KT_U32 * sqrt(na));
                for (size_t i = 0; i < rot / 2; i++) {
                    double ang = (double)((float)pos * inv_freq[i]);
                    double c = cos(ang), s = sin(ang), h2 = (double)(rot / 2);
                    double w0 = a[i] * c - a[i + rot / 2] * s, w1 = a[i] * s + a[i + rot / 2] * c;
                    double tol = 8 * KT_U32 * (fabs(a[i]) + fabs(a[i + rot / 2]));
                    (void)h2;
                    assert_true(fabs(b[i] - w0) <= tol && fabs(b[i + rot / 2] - w1) <= tol);
                }
                for (size_t i = rot; i < hd; i++) assert_true(a[i] == b[i]); /* tail untouched */
            }
        }
    }
    /* attn_factor scales the result */
    for (size_t i = 0; i < 32; i++) inv_freq[i] = 1.0f / (float)(i + 1);
    memcpy(y, x, sizeof x);
    kn_rope(y, heads, hd, hd, 0, inv_freq, 2.0f);
    for (size_t i = 0; i < heads * hd; i++) assert_true(y[i] == 2.0f * x[i]);
}

static void test_gates(void **state)
{
    (void)state;
    kt_rng r = {3};
    size_t n = 4095;
    float *g = malloc(n * 4), *u = malloc(n * 4), *o = malloc(n * 4);
    kt_fill(&r, g, n, 12.0f);
    kt_fill(&r, u, n, 2.0f);
    g[0] = -100.0f; /* expf(100) overflow must give 0, not nan */
    g[1] = 100.0f;
    kn_silu_mul(o, g, u, n);
    for (size_t i = 0; i < n; i++) {
        double want = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        assert_true(fabs(o[i] - want) <= 8 * KT_U32 * fabs(g[i] * u[i]) + 1e-30);
    }
    kn_gelu_tanh_mul(o, g, u, n);
    for (size_t i = 0; i < n; i++) {
        double x = g[i];
        double want = 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x))) * u[i];
        assert_true(fabs(o[i] - want) <= 16 * KT_U32 * fabs(g[i] * u[i]) + 1e-30);
    }
    /* aliasing out == gate */
    memcpy(o, g, n * 4);
    kn_silu_mul(o, o, u, n);
    float *ref = malloc(n * 4);
    kn_silu_mul(ref, g, u, n);
    assert_memory_equal(o, ref, n * 4);
    free(ref);
    free(g);
    free(u);
    free(o);
}

/* Every table's SiLU gate (the x86 one on a vector exp) within a few ulp
 * of the double formula, also at the overflow ends; kn_swiglu through a
 * context, split over a pool of 2 for a prefill-sized input, gives the
 * table's values bit for bit. */
static void test_simd_gate(void **state)
{
    (void)state;
    kt_rng r = {5};
    size_t n = 70001; /* above kn_swiglu's serial bound; not a multiple of 8 */
    float *g = malloc(n * 4), *u = malloc(n * 4), *o = malloc(n * 4), *p = malloc(n * 4);
    kt_fill(&r, g, n, 12.0f);
    kt_fill(&r, u, n, 2.0f);
    g[0] = -100.0f, g[1] = 100.0f, g[2] = -88.5f, g[3] = 0.0f;
    kt_variant v[KT_MAX_VARIANTS];
    int nv = kt_simd_variants(v);
    tp_pool *pool;
    sem_err err;
    assert_int_equal(tp_create(2, &pool, &err), SEM_OK);
    for (int i = 0; i <= nv; i++) {
        const kn_ops *ops = i < nv ? v[i].ops : kn_ops_ref();
        ops->silu_mul(o, g, u, n);
        for (size_t k = 0; k < n; k++) {
            double want = g[k] / (1.0 + exp(-(double)g[k])) * u[k];
            assert_true(fabs(o[k] - want) <= 8 * KT_U32 * fabs(g[k] * u[k]) + 1e-30);
        }
        kn_ctx *kc = kt_ctx(ops, pool, 1, 64);
        memcpy(p, g, n * 4);
        kn_swiglu(kc, p, p, u, n); /* out aliases gate */
        assert_memory_equal(p, o, n * 4);
        kn_ctx_destroy(kc);
    }
    tp_destroy(pool);
    free(g);
    free(u);
    free(o);
    free(p);
}

static void test_softmax_add(void **state)
{
    (void)state;
    kt_rng r = {4};
    size_t sizes[] = {1, 7, 63, 4095};
    for (size_t si = 0; si < 4; si++) {
        size_t n = sizes[si];
        float *x = malloc(n * 4), *y = malloc(n * 4);
        kt_fill(&r, x, n, 50.0f);
        x[0] += 1e30f; /* stable: max subtraction */
        memcpy(y, x, n * 4);
        kn_softmax(y, n);
        double mx = x[0], sum = 0;
        for (size_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
        for (size_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
        double total = 0;
        for (size_t i = 0; i < n; i++) {
            double want = exp((double)x[i] - mx) / sum;
            assert_true(fabs(y[i] - want) <= 8 * KT_U32 * want + 1e-38);
            total += y[i];
        }
        assert_true(fabs(total - 1) <= (double)(n + 4) * KT_U32);
        memcpy(y, x, n * 4);
        kn_add(y, x, n);
        for (size_t i = 0; i < n; i++) assert_true(y[i] == 2 * x[i]);
        free(x);
        free(y);
    }
    kn_softmax(NULL, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_gates),
        cmocka_unit_test(test_simd_gate),
        cmocka_unit_test(test_softmax_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
