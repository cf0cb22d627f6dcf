/* test_attention.c - kernels room: the KV row formats and kn_attention.
 *
 * Row formats: kn_kv_store then kn_kv_load_row reproduce F32 exactly and
 * F16/BF16/Q8/Q4 within the format's bound (see TOL_* below), through a
 * paged view whose block table is a shuffled permutation.
 *
 * Attention is checked against a naive dense computation in double:
 *  (a) on the values as stored (what the kernel reads), for every format:
 *      only f32 arithmetic differs. With S = scale * max_j sum_i |q_i k_ji|
 *      and V = max |v|, TOL_ARITH = 2 (hd + 4) u S V  (score error, through
 *      the softmax, whose output moves by at most 2 max|ds| in l1) plus
 *      (2 n_pos + 24) u V (exp, sums and the convex combination of V);
 *      softcap is 1-Lipschitz, and adds 4 u softcap V for tanhf.
 *  (b) on the original f32 K/V, for each format: the quantization error
 *      propagates as |d out| <= max|dV| + 2 max|ds| V with |ds| <= scale *
 *      sum_i |q_i| |dk_i| measured from the stored rows (first order; 10%
 *      slack for the second-order terms) plus TOL_ARITH.
 * Cases cover MHA, GQA and MQA (also more query heads per KV head than one
 * pass takes), head_dim != v_head_dim, windows, softcap,
 * prefill chunks (several query tokens) and decode, 1 and 2 threads (with
 * 2, decode splits its positions between units and merges them; more
 * heads than one pass takes, partial states too big to split), and every
 * SIMD table the CPU supports.
 */
#include "kn_test.h"

/* ---- a paged pool of one sequence ---------------------------------------- */

typedef struct kt_kv {
    kn_kv_view v;
    uint8_t *arena;
    int32_t *ids;
    float *k, *vv;  /* original [pos][n_kv_heads][dim] */
    float *ks, *vs; /* as stored (dequantized) */
    size_t n_pos;
} kt_kv;

static kt_kv kv_make(kt_rng *r, kn_kv_dtype dt, int32_t n_kv, int32_t hd, int32_t vd, int32_t bt,
                     size_t n_pos, float amp)
{
    kt_kv p = {0};
    p.n_pos = n_pos;
    size_t n_blocks = (n_pos + (size_t)bt - 1) / (size_t)bt + 3;
    kn_kv_view *v = &p.v;
    v->dtype = dt;
    v->n_kv_heads = n_kv;
    v->head_dim = hd;
    v->v_head_dim = vd;
    v->block_tokens = bt;
    v->k_row_bytes = kn_kv_row_bytes(dt, (size_t)hd);
    v->v_row_bytes = kn_kv_row_bytes(dt, (size_t)vd);
    /* pretend this is layer 1 of 2: the other layer's bytes sit first */
    size_t layer = (size_t)bt * (size_t)n_kv * (v->k_row_bytes + v->v_row_bytes);
    v->k_offset = layer + 8;
    v->v_offset = v->k_offset + (size_t)bt * (size_t)n_kv * v->k_row_bytes;
    v->block_stride = 2 * layer + 24;
    p.arena = calloc(n_blocks * v->block_stride, 1);
    v->base = p.arena;
    p.ids = calloc(n_blocks, sizeof(int32_t));
    for (size_t i = 0; i < n_blocks; i++) p.ids[i] = (int32_t)i;
    for (size_t i = n_blocks - 1; i > 0; i--) { /* shuffle: non-contiguous blocks */
        size_t j = kt_below(r, (uint32_t)i + 1);
        int32_t t = p.ids[i];
        p.ids[i] = p.ids[j];
        p.ids[j] = t;
    }
    v->block_ids = p.ids;
    size_t kn = n_pos * (size_t)n_kv * (size_t)hd, vn = n_pos * (size_t)n_kv * (size_t)vd;
    p.k = malloc(kn * sizeof(float));
    p.vv = malloc(vn * sizeof(float));
    p.ks = malloc(kn * sizeof(float));
    p.vs = malloc(vn * sizeof(float));
    kt_fill(r, p.k, kn, amp);
    kt_fill(r, p.vv, vn, 1.0f);
    for (size_t t = 0; t < n_pos; t++) {
        kn_kv_store(v, (int32_t)t, p.k + t * (size_t)n_kv * (size_t)hd,
                    p.vv + t * (size_t)n_kv * (size_t)vd);
    }
    for (size_t t = 0; t < n_pos; t++) {
        for (int32_t h = 0; h < n_kv; h++) {
            kn_kv_load_row(v, (int32_t)t, h, false, p.ks + (t * (size_t)n_kv + (size_t)h) * (size_t)hd);
            kn_kv_load_row(v, (int32_t)t, h, true, p.vs + (t * (size_t)n_kv + (size_t)h) * (size_t)vd);
        }
    }
    return p;
}

static void kv_free(kt_kv *p)
{
    free(p->arena);
    free(p->ids);
    free(p->k);
    free(p->vv);
    free(p->ks);
    free(p->vs);
}

/* ---- row formats ------------------------------------------------------------ */

/* Per-element bound of one stored group (see kv_ref.c): f16 and bf16 round
 * to nearest (relative 2^-11, 2^-8); the affine formats are within half a
 * step (scale <= (max - min + 2^-11 |min|) / levels * (1 + 2^-9)) plus the
 * F16 rounding of the bias. Absolute 2^-24 covers f16 subnormals. */
static double format_bound(kn_kv_dtype dt, const float *x, size_t c, size_t dim)
{
    double ax = fabs(x[c]);
    switch (dt) {
    case KN_KV_F32: return 0;
    case KN_KV_F16: return ax * 0x1p-11 + 0x1p-24;
    case KN_KV_BF16: return ax * 0x1p-8;
    case KN_KV_Q8:
    case KN_KV_Q4: {
        (void)dim;
        size_t g0 = c / KN_KV_GROUP * KN_KV_GROUP;
        double mn = x[g0], mx = x[g0];
        for (size_t i = g0; i < g0 + KN_KV_GROUP; i++) {
            mn = x[i] < mn ? x[i] : mn;
            mx = x[i] > mx ? x[i] : mx;
        }
        double levels = dt == KN_KV_Q8 ? 255 : 15;
        double step = (mx - mn + 0x1p-11 * fabs(mn)) / levels * (1 + 0x1p-9);
        return step / 2 + 0x1p-11 * fabs(mn) + 4 * KT_U32 * (fabs(mn) + fabs(mx)) + 0x1p-24;
    }
    }
    return 0;
}

static void test_kv_formats(void **state)
{
    (void)state;
    kt_rng r = {7};
    kn_kv_dtype dts[] = {KN_KV_F32, KN_KV_F16, KN_KV_BF16, KN_KV_Q8, KN_KV_Q4};
    assert_int_equal(kn_kv_row_bytes(KN_KV_F16, 128), 256);
    assert_int_equal(kn_kv_row_bytes(KN_KV_Q8, 128), 128 + 8);
    assert_int_equal(kn_kv_row_bytes(KN_KV_Q4, 128), 64 + 8);
    for (int d = 0; d < 5; d++) {
        float amps[] = {1.0f, 1e-3f, 300.0f};
        for (int a = 0; a < 3; a++) {
            kt_kv p = kv_make(&r, dts[d], 2, 128, 64, 16, 37, amps[a]);
            size_t kn = p.n_pos * 2 * 128;
            double worst = 0;
            for (size_t i = 0; i < kn; i++) {
                double err = fabs((double)p.ks[i] - p.k[i]);
                double b = format_bound(dts[d], p.k, i, 128);
                if (!(err <= b))
                    fail_msg("%s amp %g elem %zu: %.9g stored as %.9g (bound %.3g)",
                             kn_kv_dtype_name(dts[d]), amps[a], i, p.k[i], p.ks[i], b);
                if (b > 0 && err / b > worst) worst = err / b;
            }
            if (a == 0) print_message("%s: worst error / bound %.3g\n", kn_kv_dtype_name(dts[d]), worst);
            kv_free(&p);
        }
    }
    /* a constant group and a group with one outlier */
    kt_kv p = kv_make(&r, KN_KV_Q4, 1, 64, 64, 4, 2, 1.0f);
    float k[64], v[64], out[64];
    for (int i = 0; i < 64; i++) k[i] = 0.75f, v[i] = i == 5 ? 1000.0f : 0.0f;
    kn_kv_store(&p.v, 1, k, v);
    kn_kv_load_row(&p.v, 1, 0, false, out);
    for (int i = 0; i < 64; i++) assert_true(out[i] == 0.75f);
    kn_kv_load_row(&p.v, 1, 0, true, out);
    assert_true(fabsf(out[5] - 1000.0f) <= 1000.0f / 15 / 2);
    for (int i = 0; i < 64; i++) if (i != 5) assert_true(fabsf(out[i]) <= 1000.0f / 15 / 2 + 0.01f);
    kv_free(&p);
}

/* ---- attention ---------------------------------------------------------------- */

typedef struct at_case {
    kn_kv_dtype dt;
    int32_t n_heads, n_kv, hd, vd, bt;
    size_t n_pos, n_q;
    int32_t window;
    float softcap, qamp;
} at_case;

/* Dense attention in double over K (n_pos, n_kv, hd) and V. */
static void dense(const at_case *c, const float *q, const int32_t *q_pos, const float *K,
                  const float *V, double *out)
{
    double *s = malloc(c->n_pos * sizeof(double));
    float scale = 1.0f / sqrtf((float)c->hd);
    for (size_t t = 0; t < c->n_q; t++) {
        for (int32_t h = 0; h < c->n_heads; h++) {
            int32_t kvh = h / (c->n_heads / c->n_kv), p = q_pos[t];
            int32_t lo = c->window > 0 && p - c->window + 1 > 0 ? p - c->window + 1 : 0;
            const float *qh = q + (t * (size_t)c->n_heads + (size_t)h) * (size_t)c->hd;
            double mx = -INFINITY, sum = 0;
            for (int32_t j = lo; j <= p; j++) {
                const float *kr = K + ((size_t)j * (size_t)c->n_kv + (size_t)kvh) * (size_t)c->hd;
                double d = 0;
                for (int32_t i = 0; i < c->hd; i++) d += (double)qh[i] * kr[i];
                d *= scale;
                if (c->softcap > 0) d = c->softcap * tanh(d / c->softcap);
                s[j] = d;
                mx = d > mx ? d : mx;
            }
            for (int32_t j = lo; j <= p; j++) sum += (s[j] = exp(s[j] - mx));
            double *o = out + (t * (size_t)c->n_heads + (size_t)h) * (size_t)c->vd;
            for (int32_t i = 0; i < c->vd; i++) o[i] = 0;
            for (int32_t j = lo; j <= p; j++) {
                const float *vr = V + ((size_t)j * (size_t)c->n_kv + (size_t)kvh) * (size_t)c->vd;
                for (int32_t i = 0; i < c->vd; i++) o[i] += s[j] / sum * vr[i];
            }
        }
    }
    free(s);
}

/* max over keys of scale * sum_i |q_i| |a_i| for head h's KV head, where a
 * is K (for S) or K_stored - K (for ds). */
static double score_bound(const at_case *c, const float *qh, int32_t kvh, const float *A,
                          const float *B)
{
    double m = 0, scale = 1.0 / sqrt((double)c->hd);
    for (size_t j = 0; j < c->n_pos; j++) {
        const float *a = A + (j * (size_t)c->n_kv + (size_t)kvh) * (size_t)c->hd;
        const float *b = B ? B + (j * (size_t)c->n_kv + (size_t)kvh) * (size_t)c->hd : NULL;
        double s = 0;
        for (int32_t i = 0; i < c->hd; i++) s += fabs(qh[i]) * fabs(b ? (double)a[i] - b[i] : a[i]);
        m = s * scale > m ? s * scale : m;
    }
    return m;
}

static double max_abs(const float *x, size_t n, const float *y)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double v = y ? fabs((double)x[i] - y[i]) : fabs(x[i]);
        m = v > m ? v : m;
    }
    return m;
}

static void run_case(const kn_ops *ops, tp_pool *pool, const at_case *c, kt_rng *r)
{
    kt_kv p = kv_make(r, c->dt, c->n_kv, c->hd, c->vd, c->bt, c->n_pos, 1.0f);
    size_t qn = c->n_q * (size_t)c->n_heads * (size_t)c->hd;
    size_t on = c->n_q * (size_t)c->n_heads * (size_t)c->vd;
    float *q = malloc(qn * sizeof(float)), *out = malloc(on * sizeof(float));
    double *want_a = malloc(on * sizeof(double)), *want_b = malloc(on * sizeof(double));
    int32_t *q_pos = malloc(c->n_q * sizeof(int32_t));
    kt_fill(r, q, qn, c->qamp);
    for (size_t t = 0; t < c->n_q; t++) q_pos[t] = (int32_t)(c->n_pos - c->n_q + t);
    kn_ctx *kc = kt_ctx(ops, pool, 4, 64);
    float scale = 1.0f / sqrtf((float)c->hd);
    kn_attention(kc, &p.v, q, q_pos, c->n_q, c->n_heads, scale, c->window, c->softcap, out);
    dense(c, q, q_pos, p.ks, p.vs, want_a);
    dense(c, q, q_pos, p.k, p.vv, want_b);
    size_t kn = c->n_pos * (size_t)c->n_kv, vn = kn * (size_t)c->vd;
    double V = max_abs(p.vs, vn, NULL), dV = max_abs(p.vs, vn, p.vv);
    double u = KT_U32;
    for (size_t t = 0; t < c->n_q; t++) {
        for (int32_t h = 0; h < c->n_heads; h++) {
            int32_t kvh = h / (c->n_heads / c->n_kv);
            const float *qh = q + (t * (size_t)c->n_heads + (size_t)h) * (size_t)c->hd;
            double S = score_bound(c, qh, kvh, p.ks, NULL);
            double ds = score_bound(c, qh, kvh, p.ks, p.k);
            double arith = 2 * (c->hd + 4) * u * S * V + (2.0 * (double)c->n_pos + 24) * u * V +
                           (c->softcap > 0 ? 4 * u * c->softcap * V : 0);
            double tol_b = 1.1 * (dV + 2 * ds * V) + arith;
            for (int32_t i = 0; i < c->vd; i++) {
                size_t o = (t * (size_t)c->n_heads + (size_t)h) * (size_t)c->vd + (size_t)i;
                double ea = fabs(out[o] - want_a[o]), eb = fabs(out[o] - want_b[o]);
                if (!(ea <= arith + 1e-30) || !(eb <= tol_b))
                    fail_msg("%s kv=%s heads %d/%d hd %d vd %d win %d cap %g t=%zu h=%d i=%d: got "
                             "%.9g stored-dense %.9g (err %.3g tol %.3g) f32-dense %.9g (err %.3g "
                             "tol %.3g)",
                             ops->isa, kn_kv_dtype_name(c->dt), c->n_heads, c->n_kv, c->hd, c->vd,
                             c->window, (double)c->softcap, t, h, i, out[o], want_a[o], ea, arith,
                             want_b[o], eb, tol_b);
            }
        }
    }
    kn_ctx_destroy(kc);
    free(q);
    free(out);
    free(want_a);
    free(want_b);
    free(q_pos);
    kv_free(&p);
}

static void run_all(const kn_ops *ops, tp_pool *pool)
{
    kt_rng r = {99};
    kn_kv_dtype dts[] = {KN_KV_F32, KN_KV_F16, KN_KV_BF16, KN_KV_Q8, KN_KV_Q4};
    for (int d = 0; d < 5; d++) {
        at_case cases[] = {
            {dts[d], 6, 2, 64, 64, 16, 77, 5, 0, 0, 1.0f},      /* GQA prefill chunk */
            {dts[d], 4, 4, 128, 64, 8, 150, 1, 0, 0, 2.0f},     /* MHA decode, vd != hd */
            {dts[d], 8, 1, 64, 128, 32, 100, 3, 17, 0, 1.0f},   /* MQA, window */
            {dts[d], 4, 2, 64, 64, 5, 64, 9, 0, 5.0f, 8.0f},    /* softcap, odd blocks */
            {dts[d], 2, 1, 192, 192, 16, 1, 1, 1, 0, 1.0f},     /* one position */
            {dts[d], 6, 3, 64, 64, 16, 300, 2, 40, 30.0f, 4.0f}, /* window + softcap */
            {dts[d], 20, 1, 64, 64, 16, 50, 4, 0, 0, 1.0f},      /* 20 heads share a KV head */
            /* decode: units of whole rows over position ranges, merged
             * (split with a pool of 2, one range with none) */
            {dts[d], 9, 3, 64, 64, 16, 600, 1, 0, 0, 1.0f},     /* SmolLM2-shaped */
            {dts[d], 8, 1, 64, 128, 32, 700, 1, 0, 5.0f, 8.0f}, /* MQA, softcap */
            {dts[d], 4, 1, 64, 64, 16, 500, 1, 200, 0, 1.0f},   /* window */
            {dts[d], 48, 4, 64, 64, 16, 300, 1, 0, 0, 1.0f},    /* passes of 2 KV heads */
            {dts[d], 40, 1, 64, 64, 16, 300, 1, 0, 0, 1.0f},    /* a group split over passes */
            {dts[d], 64, 2, 128, 128, 16, 300, 1, 0, 0, 1.0f},  /* partials too big: no split */
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(ops, pool, &cases[i], &r);
        if (dts[d] == KN_KV_Q8 || dts[d] == KN_KV_Q4) continue;
        /* float formats take any head dim: ragged SIMD tails */
        static const int32_t dims[][2] = {{1, 1}, {7, 31}, {33, 63}, {63, 7}};
        for (size_t i = 0; i < 4; i++) {
            at_case c = {dts[d], 4, 2, dims[i][0], dims[i][1], 8, 40, 3, 0, 0, 1.0f};
            run_case(ops, pool, &c, &r);
        }
    }
}

static void test_attention_ref(void **state)
{
    run_all(kn_ops_ref(), *state); /* the SIMD test covers the no-pool path */
}

static void test_attention_simd(void **state)
{
    kt_variant v[KT_MAX_VARIANTS];
    int nv = kt_simd_variants(v);
    if (nv == 0) skip();
    for (int i = 0; i < nv; i++) {
        if (v[i].ops->uses_qx) continue; /* same attention kernels as its exact twin */
        run_all(v[i].ops, NULL);
        run_all(v[i].ops, *state); /* 2 threads: split decode */
    }
}

/* kv_scores_g and kv_accum_g give each of g heads bit for bit what
 * kv_scores and kv_accum give it alone: g = 1..KN_GQA_MAX, 4-row groups,
 * odd row counts and remainders, head dims off the 8- and 32-lane grids
 * (the affine formats: whole 64-element groups, random bytes with f16
 * scales and biases, and each head's qgsum). */
static void test_gqa_group(void **state)
{
    (void)state;
    kt_variant v[KT_MAX_VARIANTS];
    int nv = kt_simd_variants(v);
    if (nv == 0) skip();
    kt_rng r = {7};
    enum { G = KN_GQA_MAX, D = 128, N = 64 };
    static const size_t dims[] = {8, 64, 72, 7, 40}, adims[] = {64, 128, 64, 128, 64}, ns[] = {1, 3, 4, 9, 64};
    int checked = 0;
    for (int i = 0; i < nv; i++)
        for (int d = KN_KV_F16; d <= KN_KV_F32; d++) {
            kn_kv_scores_g_fn sg = v[i].ops->kv_scores_g[d];
            kn_kv_accum_g_fn ag = v[i].ops->kv_accum_g[d];
            if (!sg) continue;
            assert_non_null(ag);
            for (size_t di = 0; di < 5; di++)
                for (size_t ni = 0; ni < 5; ni++)
                    for (int g = 1; g <= G; g++) {
                        bool affine = d == KN_KV_Q8 || d == KN_KV_Q4;
                        size_t dim = affine ? adims[di] : dims[di], n = ns[ni];
                        size_t rb = kn_kv_row_bytes((kn_kv_dtype)d, dim), ng = dim / KN_KV_GROUP;
                        float q[G][D], qg[G][D / KN_KV_GROUP], k[D], a[G][N], b[G][N], p[G][N], acc[G][D], ref[G][D];
                        uint8_t *rows = calloc(n, rb + 8);
                        for (size_t s = 0; s < n; s++) {
                            kt_fill(&r, k, dim, 1.0f);
                            uint8_t *row = rows + s * (rb + 8);
                            for (size_t c = 0; c < kn_kv_data_bytes((kn_kv_dtype)d, dim) && affine; c++) row[c] = (uint8_t)kt_next(&r);
                            for (size_t g2 = 0; g2 < 2 * ng && affine; g2++) { /* scale, then bias, per group */
                                uint16_t h = kn_f32_to_f16(g2 < ng ? 0.01f + 0.1f * fabsf(k[g2]) : k[g2]);
                                memcpy(row + rb - 4 * ng + 2 * g2, &h, 2);
                            }
                            for (size_t c = 0; c < dim && !affine; c++) {
                                uint16_t h = d == KN_KV_F16 ? kn_f32_to_f16(k[c]) : kn_f32_to_bf16(k[c]);
                                if (d == KN_KV_F32) memcpy(row + 4 * c, &k[c], 4);
                                else memcpy(row + 2 * c, &h, 2);
                            }
                        }
                        const float *qs[G], *qgs[G], *ps[G];
                        float *os[G], *accs[G];
                        for (int h = 0; h < g; h++) {
                            kt_fill(&r, q[h], dim, 1.0f);
                            kt_fill(&r, p[h], n, 1.0f);
                            kt_fill(&r, acc[h], dim, 1.0f);
                            for (size_t gi = 0; gi < ng; gi++) {
                                qg[h][gi] = 0;
                                for (size_t c = 0; c < KN_KV_GROUP; c++) qg[h][gi] += q[h][gi * KN_KV_GROUP + c];
                            }
                            memcpy(ref[h], acc[h], sizeof acc[h]);
                            qs[h] = q[h], qgs[h] = qg[h], ps[h] = p[h], os[h] = a[h], accs[h] = acc[h];
                        }
                        /* prefetching (here the rows themselves) changes nothing */
                        sg(qs, affine ? qgs : NULL, g, 0.3f, rows, rb + 8, n, dim, g % 2 ? rows : NULL, os);
                        ag(accs, ps, g, rows, rb + 8, n, dim, g % 2 ? NULL : rows);
                        for (int h = 0; h < g; h++) {
                            v[i].ops->kv_scores[d](q[h], affine ? qg[h] : NULL, 0.3f, rows, rb + 8, n, dim, b[h]);
                            v[i].ops->kv_accum[d](ref[h], p[h], rows, rb + 8, n, dim);
                            assert_memory_equal(a[h], b[h], n * sizeof(float));
                            assert_memory_equal(acc[h], ref[h], dim * sizeof(float));
                        }
                        free(rows);
                        checked++;
                    }
        }
    assert_true(checked > 0);
}

static int setup(void **state)
{
    tp_pool *pool;
    sem_err err;
    if (tp_create(2, &pool, &err) != SEM_OK) return -1;
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
        cmocka_unit_test(test_kv_formats),
        cmocka_unit_test(test_gqa_group),
        cmocka_unit_test(test_attention_ref),
        cmocka_unit_test(test_attention_simd),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
