/* test_matmul.c - kernels room: kn_matmul and kn_weight_row in every
 * weight format. The reference is checked against a naive double-precision
 * product of the test's own unpacked weights; every SIMD table the CPU
 * supports (int16, f32 and int8 activations for Q4/Q8) is checked against
 * the same, at sizes 1, 7, 31, 33, 63, 4095
 * (float formats) and at the group edges 32/64/128 (quantized), for
 * n_tokens 1..9, with unaligned views, padded strides, 1 and 3 threads, and
 * token counts above the context's max_tokens.
 *
 * Tolerances (u = 2^-24, the f32 unit roundoff; S = sum_c |w_c x_c|):
 *   TOL_REF    4u S: the reference forms each w in f32 like the test and
 *              sums in double; only the final store rounds.
 *   TOL_FLOAT  (cols + 2) u S: any f32 summation order, with or without
 *              FMA, is within gamma_n S (Higham, Accuracy and Stability,
 *              3.1) of the exact sum.
 *   TOL_QF     for Q4/Q8 kernels on f32 activations, which compute
 *              s_g * (sum q_c x_c) + b_g * (sum x_c) instead of the
 *              reference's sum (s_g q_c + b_g) x_c: (cols + 16) u times
 *              2 (S + sum_c |s_g q_c x_c|), as |b_g x_c| <= |w_c x_c| +
 *              |s_g q_c x_c| bounds the bias products.
 *   TOL_QX     for Q4/Q8 kernels that quantize x per 32-block, the bias
 *              term using the exact f32 group sum:
 *                |y - y_ref| <= sum_c |s_g q_c| * e_c
 *              where e_c bounds |x_c - x_hat_c|:
 *               - int8: x_hat = d_b q, d_b = amax_b / 127, e_c = d_b / 2:
 *                 a relative error of at most 1/254 (0.4%) of
 *                 sum_c |s_g q_c| amax_b;
 *               - int16 (the default): x_hat = d_b h, h = round(x id_b),
 *                 id_b = fl(32767 / amax_b) (32639 for the packed Q8
 *                 tiles): e_c = d_b / 2 (h's rounding, 1/65534 of amax_b,
 *                 1/65278 for the Q8 tiles) + |x_c| 2^-22 (d_b and id_b
 *                 rounded);
 *              plus (cols + 16) u times sum_c (|w_c x_c| + |s_g q_c| (|x_c|
 *              + amax_b)) for the f32 arithmetic that follows the exact
 *              integer dot products.
 */
#include "kn_test.h"

typedef struct mm_case {
    kn_dtype dt;
    size_t rows, cols;
    kn_dtype sdt;
    int gs;
} mm_case;

/* Largest error/tolerance ratio seen per check kind (printed at the end). */
static double g_worst_float, g_worst_qx8, g_worst_qx16, g_worst_qf;

static double block_amax(const float *x, size_t cols, size_t c)
{
    size_t b0 = c / 32 * 32, b1 = b0 + 32 < cols ? b0 + 32 : cols;
    double m = 0;
    for (size_t i = b0; i < b1; i++) m = fabs(x[i]) > m ? fabs(x[i]) : m;
    return m;
}

/* Bound on |x - x_hat| for one activation quantized per 32-block to int8
 * or to int16 (TOL_QX above; the packed Q8 layout quantizes to 32639, not
 * 32767, so the int16 bound uses that). */
static double act_err(int bits, double x, double amax)
{
    if (bits == 8) return amax / 254.0;
    return fabs(x) * 0x1p-22 + amax / 65278.0 * (1 + 0x1p-20);
}

/* Runs one matmul through ctx and checks every output against the naive
 * product under the tolerance of its kind. */
static void check_one(kn_ctx *kc, const kt_weight *k, size_t n_tokens, kt_rng *r, bool is_ref)
{
    const kn_weight *w = &k->w;
    size_t rows = w->rows, cols = w->cols, ldx = cols + 3, ldy = rows + 5;
    float *xmem = calloc(n_tokens * ldx + 1, sizeof(float));
    float *ymem = calloc(n_tokens * ldy + 1, sizeof(float));
    float *x = xmem + 1, *y = ymem + 1; /* 4-byte aligned, not 32 */
    for (size_t t = 0; t < n_tokens; t++) kt_fill(r, x + t * ldx, cols, 1.0f);
    for (size_t i = 0; i < n_tokens * ldy; i++) y[i] = 12345.0f;
    kn_matmul(kc, w, x, ldx, y, ldy, n_tokens);
    bool quant = w->dtype == KN_Q4 || w->dtype == KN_Q8;
    bool qx = !is_ref && quant && kc->ops->uses_qx;
    bool qf = !is_ref && quant && !kc->ops->uses_qx;
    double *amax = malloc(cols * sizeof(double));
    for (size_t t = 0; t < n_tokens; t++) {
        const float *xt = x + t * ldx;
        for (size_t c = 0; c < cols; c++) amax[c] = c % 32 ? amax[c - 1] : block_amax(xt, cols, c);
        for (size_t row = 0; row < rows; row++) {
            const float *wr = k->dense + row * cols, *aq = k->absq + row * cols;
            double exact = 0, s_abs = 0, qbound = 0, qterm = 0, sq_abs = 0;
            for (size_t c = 0; c < cols; c++) {
                exact += (double)wr[c] * xt[c];
                s_abs += fabs((double)wr[c] * xt[c]);
                sq_abs += aq[c] * fabs(xt[c]);
                if (qx) {
                    double am = amax[c];
                    qbound += aq[c] * act_err(kc->ops->act_bits, xt[c], am);
                    qterm += aq[c] * (fabs(xt[c]) + am);
                }
            }
            double tol;
            if (is_ref) tol = 4 * KT_U32 * s_abs;
            else if (qx) tol = qbound * (1 + 0x1p-20) + (double)(cols + 16) * KT_U32 * (s_abs + qterm);
            else if (qf) tol = (double)(cols + 16) * KT_U32 * 2 * (s_abs + sq_abs);
            else tol = (double)(cols + 2) * KT_U32 * s_abs;
            tol += 1e-30;
            double err = fabs((double)y[t * ldy + row] - exact);
            if (!(err <= tol))
                fail_msg("%s %s %zux%zu gs=%d t=%zu/%zu row=%zu: got %.9g want %.9g err %.3g tol %.3g",
                         kn_ctx_isa(kc), kn_dtype_name(w->dtype), rows, cols, w->group_size, t,
                         n_tokens, row, y[t * ldy + row], exact, err, tol);
            double ratio = err / tol;
            double *worst_qx = kc->ops->act_bits == 8 ? &g_worst_qx8 : &g_worst_qx16;
            if (qx && ratio > *worst_qx) *worst_qx = ratio;
            if (qf && ratio > g_worst_qf) g_worst_qf = ratio;
            if (!is_ref && !quant && ratio > g_worst_float) g_worst_float = ratio;
        }
        for (size_t i = rows; i < ldy && t + 1 < n_tokens; i++)
            assert_true(y[t * ldy + i] == 12345.0f); /* padding untouched */
    }
    free(amax);
    free(xmem);
    free(ymem);
}

static void run_cases(const kn_ops *ops, const mm_case *cases, size_t n_cases, tp_pool *pool,
                      bool many_tokens)
{
    kt_rng r = {0x9e3779b97f4a7c15ull};
    for (size_t i = 0; i < n_cases; i++) {
        const mm_case *c = &cases[i];
        kt_weight k = kt_make_weight(&r, c->dt, c->rows, c->cols, c->sdt, c->gs, i % 4);
        /* max_tokens 4 makes n_tokens 5..9 take the slicing path */
        kn_ctx *kc = kt_ctx(ops, pool, 4, 4096 + 128);
        size_t tmax = many_tokens && c->cols < 4000 ? 9 : 3;
        for (size_t n = 1; n <= tmax; n++) check_one(kc, &k, n, &r, ops == kn_ops_ref());
        if (!many_tokens) check_one(kc, &k, 9, &r, ops == kn_ops_ref());
        kn_ctx_destroy(kc);
        kt_free_weight(&k);
    }
}

static const size_t FLOAT_COLS[] = {1, 7, 31, 33, 63, 4095};
static const size_t ROWS[] = {1, 7, 33};

static size_t float_cases(mm_case *out)
{
    size_t n = 0;
    kn_dtype dts[] = {KN_F32, KN_F16, KN_BF16};
    for (size_t d = 0; d < 3; d++)
        for (size_t ci = 0; ci < 6; ci++)
            for (size_t ri = 0; ri < 3; ri++)
                out[n++] = (mm_case){dts[d], ROWS[ri], FLOAT_COLS[ci], KN_F32, 0};
    return n;
}

/* Group edges: one group, an odd number of 32-blocks (a half 64-chunk at
 * the end), a SmolLM2-like 576, and a wide row. */
static size_t quant_cases(mm_case *out)
{
    static const size_t cols32[] = {32, 96, 160, 4064};
    static const size_t cols64[] = {64, 192, 576, 4032};
    static const size_t cols128[] = {128, 384, 4096};
    kn_dtype sdts[] = {KN_F16, KN_BF16, KN_F32};
    size_t n = 0, k = 0;
    for (int bits = 4; bits <= 8; bits += 4) {
        kn_dtype dt = bits == 4 ? KN_Q4 : KN_Q8;
        for (size_t i = 0; i < 4; i++, k++)
            out[n++] = (mm_case){dt, ROWS[k % 3], cols32[i], sdts[k % 3], 32};
        for (size_t i = 0; i < 4; i++, k++)
            out[n++] = (mm_case){dt, ROWS[k % 3] + 4, cols64[i], sdts[k % 3], 64};
        for (size_t i = 0; i < 3; i++, k++)
            out[n++] = (mm_case){dt, ROWS[k % 3] + 1, cols128[i], sdts[k % 3], 128};
    }
    return n;
}

static void test_ref_float(void **state)
{
    (void)state;
    mm_case cases[128];
    size_t n = float_cases(cases);
    run_cases(kn_ops_ref(), cases, n, NULL, true);
}

static void test_ref_quant(void **state)
{
    (void)state;
    mm_case cases[128];
    size_t n = quant_cases(cases);
    run_cases(kn_ops_ref(), cases, n, NULL, false);
}

static void test_simd_float(void **state)
{
    tp_pool *pool = *state;
    kt_variant v[KT_MAX_VARIANTS];
    int nv = kt_simd_variants(v);
    if (nv == 0) skip();
    mm_case cases[128];
    size_t n = float_cases(cases);
    for (int i = 0; i < nv; i++) {
        if (v[i].ops->uses_qx) continue; /* same float kernels as its exact twin */
        run_cases(v[i].ops, cases, n, NULL, true);
        run_cases(v[i].ops, cases, n, pool, false);
    }
    print_message("worst float error / TOL_FLOAT: %.3g\n", g_worst_float);
}

static void test_simd_quant(void **state)
{
    tp_pool *pool = *state;
    kt_variant v[KT_MAX_VARIANTS];
    int nv = kt_simd_variants(v);
    if (nv == 0) skip();
    mm_case cases[128];
    size_t n = quant_cases(cases);
    for (int i = 0; i < nv; i++) {
        run_cases(v[i].ops, cases, n, NULL, true);
        run_cases(v[i].ops, cases, n, pool, false);
    }
    print_message("worst quantized error / TOL_QX (int16 act): %.3g, (int8 act): %.3g, / "
                  "TOL_QF (f32 act): %.3g\n", g_worst_qx16, g_worst_qx8, g_worst_qf);
}

/* The chosen table of a default context, and force_ref. */
static void test_dispatch(void **state)
{
    (void)state;
    kn_ctx_params p = kn_ctx_default_params();
    kn_ctx *kc;
    sem_err err;
    assert_int_equal(kn_ctx_create(&p, &kc, &err), SEM_OK);
    kn_cpu_features f = kn_ctx_features(kc);
    print_message("cpu: avx2=%d fma=%d f16c=%d avx512f=%d bw=%d vl=%d vnni=%d bf16=%d -> %s\n",
                  f.avx2, f.fma, f.f16c, f.avx512f, f.avx512bw, f.avx512vl, f.avx512_vnni,
                  f.avx512_bf16, kn_ctx_isa(kc));
    bool simd = f.avx2 && f.fma && f.f16c && kn_ops_avx2();
    if (simd) { /* the default quantizes Q4/Q8 activations to int16 */
        assert_string_not_equal(kn_ctx_isa(kc), "ref");
        assert_null(strchr(kn_ctx_isa(kc), '-'));
        assert_int_equal(kc->ops->act_bits, 16);
    }
    assert_null(kn_ctx_pool(kc));
    kn_ctx_destroy(kc);
    if (simd) {
        p.q_exact = true;
        assert_int_equal(kn_ctx_create(&p, &kc, &err), SEM_OK);
        assert_non_null(strstr(kn_ctx_isa(kc), "-exact"));
        assert_false(kc->ops->uses_qx);
        kn_ctx_destroy(kc);
        p.q_int8_act = true; /* wins over q_exact */
        assert_int_equal(kn_ctx_create(&p, &kc, &err), SEM_OK);
        assert_non_null(strstr(kn_ctx_isa(kc), "-int8"));
        kn_ctx_destroy(kc);
    }
    p.force_ref = true;
    assert_int_equal(kn_ctx_create(&p, &kc, &err), SEM_OK);
    assert_string_equal(kn_ctx_isa(kc), "ref");
    kn_ctx_destroy(kc);
    p.max_tokens = 0;
    assert_int_equal(kn_ctx_create(&p, &kc, &err), SEM_EINVAL);
    kn_ctx_destroy(NULL);
}

/* A token's result does not depend on the other tokens of the call: a
 * batch of 9 (prefill tiles of 4 plus leftovers) equals 9 single-token
 * calls (decode tiles of 4 rows) bit for bit, for every table and format. */
static void test_batch_invariance(void **state)
{
    tp_pool *pool = *state;
    kt_variant v[KT_MAX_VARIANTS + 1];
    int nv = kt_simd_variants(v);
    v[nv++] = (kt_variant){"ref", kn_ops_ref()};
    mm_case cases[128];
    size_t n = quant_cases(cases);
    n += float_cases(cases + n);
    kt_rng r = {7};
    for (int vi = 0; vi < nv; vi++) {
        for (size_t i = 0; i < n; i += 3) {
            if (cases[i].cols > 1000 && v[vi].ops == kn_ops_ref()) continue;
            kt_weight k = kt_make_weight(&r, cases[i].dt, cases[i].rows + 6, cases[i].cols,
                                         cases[i].sdt, cases[i].gs, 1);
            size_t rows = k.w.rows, cols = k.w.cols;
            float *x = malloc(9 * cols * sizeof(float));
            float *yb = malloc(9 * rows * sizeof(float)), *y1 = malloc(9 * rows * sizeof(float));
            kt_fill(&r, x, 9 * cols, 2.0f);
            kn_ctx *kc = kt_ctx(v[vi].ops, pool, 16, 4096);
            kn_matmul(kc, &k.w, x, cols, yb, rows, 9);
            for (size_t t = 0; t < 9; t++) kn_matmul(kc, &k.w, x + t * cols, cols, y1 + t * rows, rows, 1);
            if (memcmp(yb, y1, 9 * rows * sizeof(float)) != 0)
                fail_msg("%s %s %zux%zu: batched and single-token results differ", v[vi].name,
                         kn_dtype_name(k.w.dtype), rows, cols);
            kn_ctx_destroy(kc);
            free(x);
            free(yb);
            free(y1);
            kt_free_weight(&k);
        }
    }
}

/* Q4 and Q8 weights repacked into 16-row tiles (kn_pack) for the tables
 * that have a packed kernel: every group size and scale dtype it takes, at
 * the group edges, through the same TOL_QX check as the unpacked kernels
 * (1 and 3 threads, 1..9 tokens, slicing above max_tokens), and batched ==
 * single-token bit for bit. Weights it does not take (rows not a multiple
 * of 16, F32 scales) report 0 bytes and stay on the unpacked kernel. */
static void test_packed(void **state)
{
    tp_pool *pool = *state;
    kt_variant v[KT_MAX_VARIANTS];
    int nv = kt_simd_variants(v), tested = 0;
    static const size_t cols[3][4] = {{32, 96, 160, 4064}, {64, 192, 576, 4032}, {128, 384, 4096, 0}};
    kt_rng r = {0x5eed};
    for (int vi = 0; vi < nv; vi++) {
        if (!v[vi].ops->mm_q4p && !v[vi].ops->mm_q8p) continue;
        tested++;
        for (int gi = 0; gi < 6; gi++) {
            kn_dtype dt = gi < 3 ? KN_Q4 : KN_Q8;
            if (!(dt == KN_Q4 ? v[vi].ops->mm_q4p : v[vi].ops->mm_q8p)) continue;
            for (int ci = 0; ci < 4 && cols[gi % 3][ci]; ci++) {
                size_t rows = 16 * (size_t)(1 + (ci + gi) % 3);
                kn_dtype sdt = (ci + gi) % 2 ? KN_BF16 : KN_F16;
                kt_weight k = kt_make_weight(&r, dt, rows, cols[gi % 3][ci], sdt, 32 << (gi % 3), (size_t)ci % 4);
                kn_ctx *kc = kt_ctx(v[vi].ops, pool, 4, 4096 + 128);
                size_t bytes = kn_packed_bytes(kc, &k.w);
                assert_int_equal(bytes, k.w.rows * k.w.cols * (size_t)k.w.bits / 8 +
                                            2 * 2 * k.w.rows * (k.w.cols / (size_t)k.w.group_size));
                void *packed = sem_alloc_aligned(bytes);
                kn_pack(kc, &k.w, packed);
                k.w.packed = packed;
                for (size_t n = 1; n <= 9; n++) check_one(kc, &k, n, &r, false);
                kn_ctx *k1 = kt_ctx(v[vi].ops, NULL, 4, 4096 + 128);
                check_one(k1, &k, 1, &r, false);
                check_one(k1, &k, 6, &r, false);
                /* batched == single-token */
                float *x = malloc(9 * k.w.cols * sizeof(float));
                float *yb = malloc(9 * rows * sizeof(float)), *y1 = malloc(9 * rows * sizeof(float));
                kt_fill(&r, x, 9 * k.w.cols, 2.0f);
                kn_matmul(kc, &k.w, x, k.w.cols, yb, rows, 9);
                for (size_t t = 0; t < 9; t++) kn_matmul(k1, &k.w, x + t * k.w.cols, k.w.cols, y1 + t * rows, rows, 1);
                if (memcmp(yb, y1, 9 * rows * sizeof(float)) != 0)
                    fail_msg("%s packed %s %zux%zu: batched and single-token results differ", v[vi].name,
                             kn_dtype_name(dt), rows, k.w.cols);
                free(x);
                free(yb);
                free(y1);
                kn_ctx_destroy(k1);
                kn_ctx_destroy(kc);
                sem_free_aligned(packed);
                kt_free_weight(&k);
            }
        }
        kn_ctx *kc = kt_ctx(v[vi].ops, NULL, 4, 4096);
        kt_weight odd = kt_make_weight(&r, KN_Q4, 24, 64, KN_F16, 64, 0);
        kt_weight f32s = kt_make_weight(&r, KN_Q4, 32, 64, KN_F32, 64, 0);
        kt_weight wide = kt_make_weight(&r, KN_Q4, 16, 8192, KN_F16, 64, 0);
        assert_int_equal(kn_packed_bytes(kc, &odd.w), 0);
        assert_int_equal(kn_packed_bytes(kc, &f32s.w), 0);
        assert_int_equal(kn_packed_bytes(kc, &wide.w), 0); /* above max_cols */
        kt_free_weight(&odd);
        kt_free_weight(&f32s);
        kt_free_weight(&wide);
        kn_ctx_destroy(kc);
    }
    kn_ctx *kc = kt_ctx(kn_ops_ref(), NULL, 4, 4096);
    kt_weight k = kt_make_weight(&r, KN_Q4, 16, 64, KN_F16, 64, 0);
    assert_int_equal(kn_packed_bytes(kc, &k.w), 0); /* the reference never packs */
    kt_free_weight(&k);
    kn_ctx_destroy(kc);
    print_message("packed Q4/Q8 kernels tested on %d table(s); worst / TOL_QX (int16 act): %.3g, (int8 act): %.3g\n",
                  tested, g_worst_qx16, g_worst_qx8);
    if (!tested) skip();
}

/* kn_weight_row reproduces the exact weights in every format. */
static void test_weight_row(void **state)
{
    (void)state;
    kt_rng r = {42};
    mm_case cases[128];
    size_t n = quant_cases(cases);
    n += float_cases(cases + n);
    float *out = malloc(4096 * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        kt_weight k = kt_make_weight(&r, cases[i].dt, cases[i].rows, cases[i].cols, cases[i].sdt,
                                     cases[i].gs, 3);
        for (size_t row = 0; row < k.w.rows; row++) {
            kn_weight_row(&k.w, row, out);
            assert_memory_equal(out, k.dense + row * k.w.cols, k.w.cols * sizeof(float));
        }
        kt_free_weight(&k);
    }
    free(out);
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
        cmocka_unit_test(test_dispatch),
        cmocka_unit_test(test_weight_row),
        cmocka_unit_test(test_ref_float),
        cmocka_unit_test(test_ref_quant),
        cmocka_unit_test(test_simd_float),
        cmocka_unit_test(test_simd_quant),
        cmocka_unit_test(test_batch_invariance),
        cmocka_unit_test(test_packed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
