/* test_matmul_group.c - kn_matmul_group gives exactly (bit for bit) what
 * kn_matmul gives on each item, on every dispatch table this CPU runs (the
 * reference; AVX2 and AVX-512 each with int16, f32 and int8 activations): random groups of
 * 1..KN_GROUP_MAX items mixing every weight format, group sizes 32/64/128,
 * row counts that do not divide the blocks, 0..6 tokens, strided
 * activations and outputs, unaligned weight views, items sharing their
 * input (quantized once). Also groups whose quantized activations overflow the
 * scratch (run in parts, or per item), and that nothing around the output
 * rows is written.
 */
#include "kn_test.h"

enum { MAX_COLS = 512, MAX_TOK = 6, LD_PAD = 3 };

typedef struct case_item {
    kt_weight kw;
    float *x, *y_ref, *y_grp;
    size_t ldx, ldy;
    bool shared_x; /* x belongs to the previous item */
} case_item;

static kt_weight random_weight(kt_rng *r, size_t rows, size_t cols)
{
    static const kn_dtype dts[5] = {KN_F32, KN_F16, KN_BF16, KN_Q4, KN_Q8};
    static const kn_dtype sdts[3] = {KN_F16, KN_BF16, KN_F32};
    static const int gss[3] = {32, 64, 128};
    kn_dtype dt = dts[kt_below(r, 5)];
    int gs = gss[kt_below(r, 3)];
    while (cols % (size_t)gs) gs /= 2;
    return kt_make_weight(r, dt, rows, cols, sdts[kt_below(r, 3)], gs, kt_below(r, 4));
}

/* One random group on one table: group == per-item kn_matmul, exactly. */
static void one_group(kn_ctx *kc, kt_rng *r, size_t n, size_t n_tok)
{
    case_item *c = calloc(n, sizeof *c);
    kn_mm_item *items = calloc(n, sizeof *items);
    for (size_t i = 0; i < n; i++) {
        size_t rows = 1 + kt_below(r, 300), cols = 32 * (1 + kt_below(r, MAX_COLS / 32));
        bool share = i > 0 && kt_below(r, 3) == 0; /* same input as the previous item (gate/up) */
        if (share) cols = c[i - 1].kw.w.cols;
        c[i].kw = random_weight(r, rows, cols);
        c[i].ldy = rows + kt_below(r, LD_PAD);
        if (share) {
            c[i].ldx = c[i - 1].ldx;
            c[i].x = c[i - 1].x;
            c[i].shared_x = true;
        } else {
            c[i].ldx = cols + kt_below(r, LD_PAD);
            c[i].x = calloc(c[i].ldx * (n_tok + 1), sizeof(float));
            kt_fill(r, c[i].x, c[i].ldx * (n_tok + 1), 2.0f);
        }
        c[i].y_ref = calloc(c[i].ldy * (n_tok + 1), sizeof(float));
        c[i].y_grp = calloc(c[i].ldy * (n_tok + 1), sizeof(float));
        for (size_t k = 0; k < c[i].ldy * (n_tok + 1); k++) c[i].y_ref[k] = c[i].y_grp[k] = -7.0f; /* sentinel */
        items[i] = (kn_mm_item){&c[i].kw.w, c[i].x, c[i].ldx, c[i].y_grp, c[i].ldy, n_tok};
    }
    for (size_t i = 0; i < n; i++) kn_matmul(kc, &c[i].kw.w, c[i].x, c[i].ldx, c[i].y_ref, c[i].ldy, n_tok);
    kn_matmul_group(kc, items, n);
    for (size_t i = 0; i < n; i++) {
        if (memcmp(c[i].y_ref, c[i].y_grp, c[i].ldy * (n_tok + 1) * sizeof(float)) != 0)
            fail_msg("%s: item %zu/%zu (%s %zux%zu, %zu tokens) differs from kn_matmul", kn_ctx_isa(kc), i, n,
                     kn_dtype_name(c[i].kw.w.dtype), c[i].kw.w.rows, c[i].kw.w.cols, n_tok);
        /* rows past w.rows in each ldy stride and the spare token stay untouched */
        for (size_t t = 0; t <= n_tok; t++)
            for (size_t k = (t < n_tok ? c[i].kw.w.rows : 0); k < c[i].ldy; k++)
                assert_true(c[i].y_grp[t * c[i].ldy + k] == -7.0f);
        kt_free_weight(&c[i].kw);
        if (!c[i].shared_x) free(c[i].x);
        free(c[i].y_ref);
        free(c[i].y_grp);
    }
    free(c);
    free(items);
}

static void run_table(const kn_ops *ops, const char *name, tp_pool *pool, size_t max_tokens)
{
    kn_ctx *kc = kt_ctx(ops, pool, max_tokens, MAX_COLS);
    kt_rng r = {0x5eed0000u + (uint64_t)max_tokens};
    for (int rep = 0; rep < 12; rep++) {
        size_t n = rep == 0 ? 1 : rep == 1 ? KN_GROUP_MAX : 1 + kt_below(&r, 24);
        one_group(kc, &r, n, kt_below(&r, MAX_TOK + 1));
    }
    print_message("%s (max_tokens %zu): 12 groups equal to kn_matmul\n", name, max_tokens);
    kn_ctx_destroy(kc);
}

static void test_group_equals_matmul(void **state)
{
    (void)state;
    tp_pool *pool;
    sem_err err;
    assert_int_equal(tp_create(2, &pool, &err), SEM_OK);
    kt_variant v[KT_MAX_VARIANTS];
    int nv = kt_simd_variants(v);
    run_table(kn_ops_ref(), "ref", pool, 64);
    for (int i = 0; i < nv; i++) {
        run_table(v[i].ops, v[i].name, pool, 64);
        run_table(v[i].ops, v[i].name, pool, 1); /* scratch for one token: the fallback path */
    }
    tp_destroy(pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_group_equals_matmul)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
