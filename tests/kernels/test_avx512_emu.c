/* test_avx512_emu.c - kernels room: runs the AVX-512 Q4/Q8 matmul source
 * (src/kernels/x86/matmul_q_avx512.c) on any AVX2 machine by compiling it
 * here against avx512_emu.h, a per-lane C model of the AVX-512 intrinsics
 * it uses, and checks it against the naive product under TOL_QX (derived
 * in test_matmul.c) at the same group edges, token counts and threads.
 * The real instructions are checked by test_matmul.c where the CPU has
 * them; this test guards the kernel's logic (layouts, tails, lane
 * bookkeeping) on machines that do not.
 */
#pragma GCC target("avx2,fma,f16c,bmi2")

#include "avx512_emu.h"

#define kn_avx512_mm_q4 emu_kn_avx512_mm_q4
#define kn_avx512_mm_q8 emu_kn_avx512_mm_q8
#include "../../src/kernels/x86/matmul_q_avx512.c"

#include "kn_test.h"

typedef struct qcase {
    kn_dtype dt;
    size_t rows, cols;
    kn_dtype sdt;
    int gs;
} qcase;

static double block_amax(const float *x, size_t cols, size_t c)
{
    size_t b0 = c / 32 * 32, b1 = b0 + 32 < cols ? b0 + 32 : cols;
    double m = 0;
    for (size_t i = b0; i < b1; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

static void check(kn_ctx *kc, const kt_weight *k, size_t n_tokens, kt_rng *r, double *worst)
{
    const kn_weight *w = &k->w;
    size_t rows = w->rows, cols = w->cols, ldx = cols + 1, ldy = rows + 2;
    float *x = calloc(n_tokens * ldx, sizeof(float)), *y = calloc(n_tokens * ldy, sizeof(float));
    for (size_t t = 0; t < n_tokens; t++) kt_fill(r, x + t * ldx, cols, 1.0f);
    kn_matmul(kc, w, x, ldx, y, ldy, n_tokens);
    for (size_t t = 0; t < n_tokens; t++) {
        const float *xt = x + t * ldx;
        for (size_t row = 0; row < rows; row++) {
            const float *wr = k->dense + row * cols, *aq = k->absq + row * cols;
            double exact = 0, s_abs = 0, qb = 0, qf = 0;
            for (size_t c = 0; c < cols; c++) {
                double am = block_amax(xt, cols, c);
                exact += (double)wr[c] * xt[c];
                s_abs += fabs((double)wr[c] * xt[c]);
                qb += aq[c] * am / 254.0;
                qf += aq[c] * (fabs(xt[c]) + am);
            }
            double tol = qb * (1 + 0x1p-20) + (double)(cols + 16) * KT_U32 * (s_abs + qf);
            double err = fabs((double)y[t * ldy + row] - exact);
            if (!(err <= tol))
                fail_msg("emulated avx512 %s %zux%zu gs=%d t=%zu/%zu row=%zu: got %.9g want %.9g "
                         "err %.3g tol %.3g",
                         kn_dtype_name(w->dtype), rows, cols, w->group_size, t, n_tokens, row,
                         y[t * ldy + row], exact, err, tol);
            if (err / tol > *worst) *worst = err / tol;
        }
    }
    free(x);
    free(y);
}

static void test_emulated_avx512_quant(void **state)
{
    tp_pool *pool = *state;
    kn_cpu_features f = kn_cpu_detect();
    if (!(f.avx2 && f.fma && f.f16c)) {
        print_message("skipped: the emulation harness itself needs AVX2\n");
        skip();
    }
    /* the int8 AVX-512 table with its VNNI kernels swapped for the emulated build */
    kn_ops ops = *kn_ops_avx512_int8();
    ops.isa = "avx512-int8-emu";
    ops.mm[KN_Q4] = emu_kn_avx512_mm_q4;
    ops.mm[KN_Q8] = emu_kn_avx512_mm_q8;
    /* cols: one group; 128-pieces plus a 64 tail; plus a 32 tail; wide */
    static const size_t cols32[] = {32, 96, 160, 224, 4064};
    static const size_t cols64[] = {64, 192, 576, 4032};
    static const size_t cols128[] = {128, 384, 4096};
    kn_dtype sdts[] = {KN_F16, KN_BF16, KN_F32};
    qcase cases[32];
    size_t n = 0, k = 0;
    for (int bits = 4; bits <= 8; bits += 4) {
        kn_dtype dt = bits == 4 ? KN_Q4 : KN_Q8;
        for (size_t i = 0; i < 5; i++, k++) cases[n++] = (qcase){dt, 5 + k % 4, cols32[i], sdts[k % 3], 32};
        for (size_t i = 0; i < 4; i++, k++) cases[n++] = (qcase){dt, 4 + k % 5, cols64[i], sdts[k % 3], 64};
        for (size_t i = 0; i < 3; i++, k++) cases[n++] = (qcase){dt, 9, cols128[i], sdts[k % 3], 128};
    }
    kt_rng r = {77};
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        kt_weight kw = kt_make_weight(&r, cases[i].dt, cases[i].rows, cases[i].cols, cases[i].sdt,
                                      cases[i].gs, i % 4);
        kn_ctx *kc = kt_ctx(&ops, i % 2 ? pool : NULL, 4, 4096);
        size_t tmax = cases[i].cols > 1000 ? 2 : 9;
        for (size_t t = 1; t <= tmax; t++) check(kc, &kw, t, &r, &worst);
        if (tmax < 5) check(kc, &kw, 5, &r, &worst);
        kn_ctx_destroy(kc);
        kt_free_weight(&kw);
    }
    print_message("emulated avx512: worst error / TOL_QX %.3g\n", worst);
}

static int setup(void **state)
{
    tp_pool *pool;
    sem_err err;
    if (tp_create(3, &pool, &err) != SEM_OK) return -1;
    *state = pool;
    return 0;
}

static int teardown(void **state)
{
    tp_destroy(*state);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_emulated_avx512_quant),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
