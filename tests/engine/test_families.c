/* test_families.c - DeepSeek-V2 (MLA over a latent cache, MoE) and Gemma 3
 * (sliding-window layers) through the real engine, on tiny generated q4
 * models:
 *   - batching changes nothing: mixed prompt lengths (up to 300 tokens,
 *     well past Gemma's 32-token window; 70 under sanitizers), staggered
 *     arrivals, chunked prefill; greedy tokens equal to each sequence alone
 *     and logprobs within 1e-3, with f16 and (not under sanitizers) q8 KV;
 *   - agent cache files round-trip: a conversation continued after an
 *     engine restart loads its file (cached tokens counted, one warm hit)
 *     and gives the same greedy tokens as a cold run; the file's geometry
 *     is the family's (DeepSeek: the MLA latent, one KV head of 192 / 128;
 *     Gemma: a version 2 file whose sliding layers hold only the ring);
 *   - Gemma's sliding layers keep only their window, as a ring of blocks:
 *     the KV memory of a long sequence (runner and engine) is exactly the
 *     global layer for every block plus the sliding layers for the ring,
 *     the same at 300 and 1,000 tokens for the sliding layers; an agent
 *     continuing its conversation from RAM reuses all of it, a branch
 *     before the held window falls back to a full prefill, and both give
 *     a cold run's tokens.
 * The forward pass itself is checked against the numpy reference by
 * tests/model/families.test.sh. `test_families --write-ring-sample DIR`
 * writes a Gemma ring file and the rows the C side reads from it for
 * tests/cache/independent_reader.test.sh.
 */
#include "cache/cache.h"
#include "engine/engine.h"

#include "test_util.h"

#include <math.h>

typedef struct family {
    const char *name;     /* models/<name> under the build dir */
    const char *gen_args; /* gen_model.py arguments */
    model *m;
} family;

static family fams[] = {
    {"engine-deepseek2-q4", "--arch deepseek2 --dtype q4 --layers 2", NULL}, /* layer 0 dense, 1 MoE */
    {"engine-gemma3-q4", "--arch gemma3 --dtype q4 --layers 3", NULL},       /* 2 sliding, 1 global */
};
enum { N_FAMS = sizeof fams / sizeof fams[0] };

static tp_pool *g_pool;
static kn_ctx *g_kc;
static char *g_dir;

/* Generates (if missing) and loads families first .. N_FAMS - 1, then the
 * thread pool and kernel context. */
static int setup_from(int first)
{
    sem_err err;
    size_t max_cols = 0;
    for (int i = first; i < N_FAMS; i++) {
        char path[512], *out = NULL;
        snprintf(path, sizeof path, "%s/models/%s", tu_build_dir(), fams[i].name);
        int rc = tu_run(&out, "/usr/bin/python3 %s/tools/gen_model.py --shape tiny --seed 13 %s --if-missing --quiet --out %s",
                        tu_source_dir(), fams[i].gen_args, path);
        if (rc) fprintf(stderr, "%s\n", out);
        free(out);
        if (rc || model_load(path, &fams[i].m, &err)) return -1;
        if (model_max_matmul_cols(fams[i].m) > max_cols) max_cols = model_max_matmul_cols(fams[i].m);
    }
    if (tp_create(2, &g_pool, &err)) return -1;
    kn_ctx_params kp = kn_ctx_default_params();
    kp.pool = g_pool;
    kp.max_tokens = 1024;
    kp.max_cols = max_cols;
    g_dir = tu_tmpdir();
    return kn_ctx_create(&kp, &g_kc, &err) == SEM_OK && g_dir ? 0 : -1;
}

static int setup(void **state)
{
    (void)state;
    return setup_from(0);
}

static int teardown(void **state)
{
    (void)state;
    kn_ctx_destroy(g_kc);
    tp_destroy(g_pool);
    for (int i = 0; i < N_FAMS; i++) model_destroy(fams[i].m);
    tu_rmrf(g_dir);
    free(g_dir);
    return 0;
}

static void make_prompt(int32_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (int32_t)((seed * 2654435761u + (uint32_t)i * 40503u) % 1000u);
}

/* Greedy continuation of one prompt alone (eng_runner, chunked prefill of
 * 64 tokens), with the log-softmax of each chosen token. */
static void run_alone(const model *m, const int32_t *prompt, size_t n, int32_t n_gen, kn_kv_dtype kv, int32_t *out,
                      float *lp)
{
    sem_err err;
    eng_runner_params rp = eng_runner_default_params();
    rp.max_ctx = 1024;
    rp.kv_dtype = kv;
    rp.block_tokens = 16;
    rp.chunk_tokens = 64;
    eng_runner *r;
    assert_int_equal(eng_runner_create(m, g_kc, &rp, &r, &err), SEM_OK);
    size_t V = (size_t)model_get_spec(m)->vocab;
    float *logits = calloc(V, sizeof(float));
    assert_int_equal(eng_runner_feed(r, prompt, n, false, logits, &err), SEM_OK);
    for (int32_t i = 0; i < n_gen; i++) {
        out[i] = eng_argmax(logits, V);
        double mx = logits[out[i]], sum = 0;
        for (size_t v = 0; v < V; v++) sum += exp((double)logits[v] - mx);
        lp[i] = (float)-log(sum);
        if (i + 1 < n_gen) assert_int_equal(eng_runner_feed(r, &out[i], 1, false, logits, &err), SEM_OK);
    }
    free(logits);
    eng_runner_destroy(r);
}

static eng_engine *start(const model *m, kn_kv_dtype kv, const char *cache_dir)
{
    eng_params p = eng_default_params();
    p.m = m;
    p.kc = g_kc;
    p.kv_dtype = kv;
    p.max_batch = 4;
    p.prefill_chunk = 64;
    p.block_tokens = 16;
    p.kv_budget_bytes = 24u << 20;
    p.max_ctx = 1024;
    p.cache_dir = cache_dir;
    p.model_id = "test/families";
    p.fingerprint = "00000000000000aa";
    eng_engine *e;
    sem_err err;
    assert_int_equal(eng_start(&p, &e, &err), SEM_OK);
    return e;
}

typedef struct reply {
    int32_t tokens[64];
    float logprobs[64];
    int32_t n, cached;
    eng_finish finish;
} reply;

static eng_request *submit(eng_engine *e, const char *agent, const int32_t *prompt, size_t n, int32_t gen)
{
    eng_request_params p = eng_request_default_params();
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = gen;
    p.logprobs = true;
    p.ignore_eos = true;
    p.agent_id = agent;
    eng_request *r;
    sem_err err;
    assert_int_equal(eng_submit(e, &p, &r, &err), SEM_OK);
    return r;
}

static void collect(eng_request *r, reply *out)
{
    memset(out, 0, sizeof *out);
    for (;;) {
        eng_event *ev;
        assert_int_equal(eng_request_next(r, 60000, &ev), SEM_OK);
        if (ev->kind == ENG_EV_DONE) {
            out->cached = ev->cached_tokens;
            out->finish = ev->finish;
            eng_event_free(ev);
            break;
        }
        assert_true(out->n < 64);
        out->logprobs[out->n] = ev->logprob;
        out->tokens[out->n++] = ev->token;
        eng_event_free(ev);
    }
    eng_request_release(r);
}

/* ---- batched decode == single-sequence decode -------------------------- */

/* Sanitizer builds run a lighter set (the kernels are unoptimized there). */
static bool light(void) { return strstr(tu_build_dir(), "asan") != NULL; }

static void batching_matches_alone(const family *f, kn_kv_dtype kv)
{
    enum { N = 5, GEN = 12 };
    static const size_t lens[N] = {1, 7, 300, 45, 90};
    static const size_t lens_light[N] = {1, 7, 70, 45, 33};
    static const int32_t gens[N] = {GEN, 5, GEN, 9, GEN};
    int32_t *prompts[N], want[N][GEN];
    float want_lp[N][GEN];
    const size_t *len = light() ? lens_light : lens;
    for (int i = 0; i < N; i++) {
        prompts[i] = calloc(len[i], sizeof(int32_t));
        make_prompt(prompts[i], len[i], 100 + (uint32_t)i);
        run_alone(f->m, prompts[i], len[i], gens[i], kv, want[i], want_lp[i]);
    }
    eng_engine *e = start(f->m, kv, NULL);
    eng_request *reqs[N];
    for (int i = 0; i < N; i++) {
        reqs[i] = submit(e, NULL, prompts[i], len[i], gens[i]);
        if (i % 2 == 1) usleep(3000); /* staggered arrivals: joins during decode */
    }
    for (int i = 0; i < N; i++) {
        reply got;
        collect(reqs[i], &got);
        assert_int_equal(got.finish, ENG_FINISH_LENGTH);
        assert_int_equal(got.n, gens[i]);
        for (int t = 0; t < gens[i]; t++) {
            if (got.tokens[t] != want[i][t])
                fail_msg("%s kv %s seq %d token %d: batched %d, alone %d", f->name, kn_kv_dtype_name(kv), i, t,
                         got.tokens[t], want[i][t]);
            if (fabsf(got.logprobs[t] - want_lp[i][t]) > 1e-3f)
                fail_msg("%s kv %s seq %d token %d: logprob %g vs %g", f->name, kn_kv_dtype_name(kv), i, t,
                         got.logprobs[t], want_lp[i][t]);
        }
        free(prompts[i]);
    }
    eng_stop(e);
}

static void test_deepseek2_batching(void **state)
{
    (void)state;
    batching_matches_alone(&fams[0], KN_KV_F16);
    if (!light()) batching_matches_alone(&fams[0], KN_KV_Q8);
}

static void test_gemma3_batching(void **state)
{
    (void)state;
    batching_matches_alone(&fams[1], KN_KV_F16);
    if (!light()) batching_matches_alone(&fams[1], KN_KV_Q8);
}

/* ---- cache files ------------------------------------------------------- */

static void cold(const family *f, const int32_t *prompt, size_t n, int32_t gen, reply *out)
{
    eng_engine *e = start(f->m, KN_KV_F16, NULL);
    collect(submit(e, NULL, prompt, n, gen), out);
    assert_int_equal(out->cached, 0);
    eng_stop(e);
}

/* The agent's file holds the family's geometry. */
static void check_file_geometry(const family *f, const char *dir, const char *agent)
{
    char *path = NULL;
    tu_run(&path, "find '%s' -name '%s.safetensors' | head -1 | tr -d '\\n'", dir, agent);
    assert_true(path && path[0]);
    cache_file_meta meta;
    sem_err err;
    assert_int_equal(cache_file_read_meta(path, &meta, &err), SEM_OK);
    model_kv_geometry g = model_spec_kv_geometry(model_get_spec(f->m));
    assert_int_equal(meta.geo.n_layers, g.n_layers);
    assert_int_equal(meta.geo.n_kv_heads, g.n_kv_heads);
    assert_int_equal(meta.geo.head_dim, g.head_dim);
    assert_int_equal(meta.geo.v_head_dim, g.v_head_dim);
    assert_int_equal(meta.ring.window, g.window);
    if (g.window > 0) { /* 89 tokens: the ring starts at block (89 - 32) / 16 = 3 */
        assert_int_equal(meta.version, CACHE_FORMAT_VERSION_RING);
        assert_int_equal(meta.ring_from, 48);
        for (int32_t l = 0; l < g.n_layers; l++) assert_int_equal(meta.ring.sliding[l], g.layer_sliding[l]);
    } else {
        assert_int_equal(meta.version, CACHE_FORMAT_VERSION);
    }
    free(path);
}

static void cache_round_trip(const family *f)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", g_dir, f->name);
    int32_t conv[200];
    make_prompt(conv, 80, 5); /* longer than Gemma's window */
    reply t1, t2, want;
    eng_engine *e = start(f->m, KN_KV_F16, dir);
    collect(submit(e, "ada", conv, 80, 10), &t1);
    assert_int_equal(t1.cached, 0);
    eng_stop(e); /* writes the file */
    check_file_geometry(f, dir, "ada");
    memcpy(conv + 80, t1.tokens, 10 * sizeof(int32_t));
    make_prompt(conv + 90, 20, 6);
    e = start(f->m, KN_KV_F16, dir);
    collect(submit(e, "ada", conv, 110, 10), &t2);
    assert_int_equal(t2.cached, 89); /* prompt + reply minus the last reply token, from the file */
    assert_int_equal(eng_cache_stats(e).hits_warm, 1);
    eng_stop(e);
    cold(f, conv, 110, 10, &want);
    assert_memory_equal(t2.tokens, want.tokens, 10 * sizeof(int32_t));
}

static void test_deepseek2_cache_files(void **state)
{
    (void)state;
    cache_round_trip(&fams[0]);
    model_kv_geometry g = model_spec_kv_geometry(model_get_spec(fams[0].m));
    assert_int_equal(g.n_kv_heads, 1); /* the MLA latent: [c 128 | k_pe 64], c */
    assert_int_equal(g.head_dim, 192);
    assert_int_equal(g.v_head_dim, 128);
}

static void test_gemma3_cache_files(void **state)
{
    (void)state;
    cache_round_trip(&fams[1]);
}

/* ---- Gemma: sliding layers keep only their window ----------------------- */

enum { RING_BT = 16, UNIT_BYTES = RING_BT * 2 * 128 * 2 * 2 }; /* f16 K+V, 2 heads of 128 */

/* Bytes the ring design says n computed tokens hold: the global layer for
 * every block, the 2 sliding layers for the blocks from (n - 32) / 16 on. */
static size_t ring_bytes(size_t n)
{
    size_t nb = (n + RING_BT - 1) / RING_BT, first = n > 32 ? (n - 32) / RING_BT : 0;
    return (nb * 1 + (nb - first) * 2) * UNIT_BYTES;
}

static void test_gemma3_ring_memory(void **state)
{
    (void)state;
    const family *f = &fams[1];
    model_kv_geometry g = model_spec_kv_geometry(model_get_spec(f->m));
    assert_int_equal(g.window, 32);
    assert_int_equal(g.n_layers, 3);
    size_t n = light() ? 420 : 1000; /* both end with a 3-block ring, like 300 */
    int32_t *prompt = calloc(n, sizeof(int32_t));
    make_prompt(prompt, n, 77);

    /* the runner: the sliding layers' bytes stop growing past the window */
    sem_err err;
    eng_runner_params rp = eng_runner_default_params();
    rp.max_ctx = 1024;
    rp.block_tokens = RING_BT;
    rp.chunk_tokens = 64;
    eng_runner *r;
    assert_int_equal(eng_runner_create(f->m, g_kc, &rp, &r, &err), SEM_OK);
    float *logits = calloc((size_t)model_get_spec(f->m)->vocab, sizeof(float));
    assert_int_equal(eng_runner_feed(r, prompt, 300, false, logits, &err), SEM_OK);
    size_t at300 = eng_runner_kv_bytes(r);
    assert_int_equal(at300, ring_bytes(300));
    assert_int_equal(eng_runner_feed(r, prompt + 300, n - 300, false, logits, &err), SEM_OK);
    size_t at_n = eng_runner_kv_bytes(r), nb = (n + RING_BT - 1) / RING_BT;
    assert_int_equal(at_n, ring_bytes(n));
    assert_int_equal(at_n - at300, (nb - 19) * UNIT_BYTES); /* the global layer's new blocks only */
    assert_true(at_n < nb * 3 * UNIT_BYTES / 2);             /* every layer: nb x 3 units */
    free(logits);
    eng_runner_destroy(r);

    /* the engine: what the agent's hot entry holds once the request is done */
    eng_engine *e = start(f->m, KN_KV_F16, NULL);
    reply got;
    collect(submit(e, "long", prompt, n, 8), &got);
    assert_int_equal(got.n, 8);
    eng_stats st;
    for (int i = 0; i < 500; i++) { /* the stats are published after the step */
        st = eng_get_stats(e);
        if (st.running == 0 && st.kv_bytes_used == ring_bytes(n + 7)) break;
        usleep(10000);
    }
    assert_int_equal(st.kv_bytes_used, ring_bytes(n + 7)); /* prompt + 7 generated tokens with KV */
    eng_stop(e);
    free(prompt);
}

/* An agent continuing its own conversation from RAM reuses all of it; a
 * branch before the held window is a full prefill; both match a cold run. */
static void test_gemma3_ring_agent(void **state)
{
    (void)state;
    const family *f = &fams[1];
    int32_t conv[400], branch[150];
    make_prompt(conv, 200, 21);
    eng_engine *e = start(f->m, KN_KV_F16, NULL);
    reply t1, t2, t3, want;
    collect(submit(e, "bob", conv, 200, 10), &t1);
    assert_int_equal(t1.cached, 0);
    memcpy(conv + 200, t1.tokens, 10 * sizeof(int32_t));
    make_prompt(conv + 210, 30, 22);
    collect(submit(e, "bob", conv, 240, 10), &t2);
    assert_int_equal(t2.cached, 209); /* everything with KV: prompt + 9 reply tokens */
    memcpy(branch, conv, 100 * sizeof(int32_t)); /* edits the conversation at token 100 */
    make_prompt(branch + 100, 50, 23);
    collect(submit(e, "bob", branch, 150, 10), &t3);
    assert_int_equal(t3.cached, 0); /* the window before 100 left the ring long ago */
    eng_stop(e);
    cold(f, conv, 240, 10, &want);
    assert_memory_equal(t2.tokens, want.tokens, 10 * sizeof(int32_t));
    for (int t = 0; t < 10; t++) assert_true(fabsf(t2.logprobs[t] - want.logprobs[t]) <= 1e-3f);
    cold(f, branch, 150, 10, &want);
    assert_memory_equal(t3.tokens, want.tokens, 10 * sizeof(int32_t));
}

/* ---- a ring file for the independent reader ------------------------------- */

/* Writes what the C side reads back from the cache file at path, loaded
 * through cache_file_load into a ring pool's blocks and read with
 * kn_kv_load_row: `tokens` (the engine's, I32 [n_tokens]), then for each
 * layer K then V as f32 [n_tokens - pos0, n_kv_heads, dim], pos0 being
 * ring_from for a sliding layer and 0 for a global one. The file must
 * hold n_tokens tokens. */
static int dump_rows(const char *path, const int32_t *tokens, uint32_t n_tokens, const char *out)
{
    cache_file_meta m;
    cache_file *f = NULL;
    kv_pool *pool = NULL;
    sem_err err;
    if (cache_file_read_meta(path, &m, &err) || cache_file_open_ring(path, &m.geo, &m.ring, NULL, &f, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    assert_int_equal(m.n_tokens, n_tokens);
    int32_t ids[16], bt = m.geo.block_tokens, nb = ((int32_t)n_tokens + bt - 1) / bt;
    assert_true(nb <= 16);
    kv_pool_params pp = {.budget_bytes = kv_block_bytes(&m.geo) * 16, .ring = &m.ring};
    assert_int_equal(kv_pool_create(&m.geo, &pp, &pool, &err), SEM_OK);
    for (int32_t b = 0; b < nb; b++) assert_int_equal(kv_pool_alloc(pool, &ids[b], &err), SEM_OK);
    kn_kv_view v0 = kv_pool_view(pool, ids);
    cache_file_load(f, m.n_tokens, &v0, kv_pool_layer_stride(pool));
    FILE *o = fopen(out, "wb");
    assert_non_null(o);
    fwrite(tokens, sizeof *tokens, m.n_tokens, o);
    float row[256];
    for (int32_t l = 0; l < m.geo.n_layers; l++) {
        kn_kv_view lv = kn_kv_view_layer(&v0, kv_pool_layer_stride(pool), l);
        uint32_t pos0 = m.ring.sliding[l] ? m.ring_from : 0;
        for (int iv = 0; iv < 2; iv++) {
            size_t dim = (size_t)(iv ? m.geo.v_head_dim : m.geo.head_dim);
            assert_true(dim <= 256);
            for (uint32_t p = pos0; p < m.n_tokens; p++) {
                for (int32_t h = 0; h < m.geo.n_kv_heads; h++) {
                    kn_kv_load_row(&lv, (int32_t)p, h, iv, row);
                    fwrite(row, sizeof *row, dim, o);
                }
            }
        }
    }
    int rc = fclose(o) != 0;
    for (int32_t b = 0; b < nb; b++) kv_pool_unref(pool, ids[b]);
    kv_pool_destroy(pool);
    cache_file_close(f);
    return rc;
}

/* `test_families --write-ring-sample DIR` (tests/cache/independent_reader.test.sh):
 * the engine serves agent "ada" 80 prompt tokens and 10 generated ones on
 * the tiny Gemma 3 model with f16 and then q8 KV, caching under DIR/<kv>;
 * its file (89 tokens, ring_from 48) is written at eng_stop, then
 * DIR/<kv>.rows gets dump_rows' view of it. */
static int write_ring_sample(const char *dir)
{
    if (setup_from(1)) return 1;
    static const kn_kv_dtype kvs[] = {KN_KV_F16, KN_KV_Q8};
    int rc = 0;
    for (size_t i = 0; i < 2 && rc == 0; i++) {
        char cache_dir[600], rows[600], *path = NULL;
        snprintf(cache_dir, sizeof cache_dir, "%s/%s", dir, kn_kv_dtype_name(kvs[i]));
        snprintf(rows, sizeof rows, "%s/%s.rows", dir, kn_kv_dtype_name(kvs[i]));
        int32_t conv[90];
        make_prompt(conv, 80, 5);
        reply t;
        eng_engine *e = start(fams[1].m, kvs[i], cache_dir);
        collect(submit(e, "ada", conv, 80, 10), &t);
        eng_stop(e); /* writes the file: the prompt and the reply but its last token */
        memcpy(conv + 80, t.tokens, 9 * sizeof(int32_t));
        tu_run(&path, "find '%s' -name ada.safetensors | head -1 | tr -d '\\n'", cache_dir);
        rc = path && path[0] ? dump_rows(path, conv, 89, rows) : 1;
        if (rc == 0) printf("%s %s\n", path, rows);
        free(path);
    }
    teardown(NULL);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--write-ring-sample")) return write_ring_sample(argv[2]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deepseek2_batching),
        cmocka_unit_test(test_gemma3_batching),
        cmocka_unit_test(test_deepseek2_cache_files),
        cmocka_unit_test(test_gemma3_cache_files),
        cmocka_unit_test(test_gemma3_ring_memory),
        cmocka_unit_test(test_gemma3_ring_agent),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
