/* test_swap_families.c - hot swaps between a DeepSeek-V2-shaped model (MLA:
 * a latent cache of one 192/128-dim KV head, MoE) and a Llama-shaped one keep
 * both models' agent caches: after DS -> Llama -> DS -> Llama each model's
 * agent continues from its own cache file (cached tokens > 0) with the same
 * greedy tokens as a cold run, and neither model ever loads the other's
 * cache. A Gemma 3 model joins the rotation once, so its hybrid layers go
 * through unload/reload too.
 */
#include "swap/swap.h"

#include "test_util.h"

static char models_dir[512], cache_dir[512];
static tp_pool *g_pool;

static void gen(const char *name, const char *args)
{
    char *out = NULL;
    int rc = tu_run(&out, "/usr/bin/python3 %s/tools/gen_model.py --shape tiny --tokenizer llama2 --seed 9 "
                          "--if-missing --quiet %s --out %s/%s",
                    tu_source_dir(), args, models_dir, name);
    if (rc) fprintf(stderr, "%s\n", out);
    free(out);
    assert_int_equal(rc, 0);
}

static int setup(void **state)
{
    (void)state;
    snprintf(models_dir, sizeof models_dir, "%s/models/swap-families", tu_build_dir());
    char *t = tu_tmpdir();
    snprintf(cache_dir, sizeof cache_dir, "%s", t);
    free(t);
    sem_err err;
    return tp_create(2, &g_pool, &err) == SEM_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    tp_destroy(g_pool);
    tu_rmrf(cache_dir);
    return 0;
}

static swap_params params(const char *cdir)
{
    swap_params p = {0};
    p.models_dir = models_dir;
    p.hf_cache = "/nonexistent";
    p.pool = g_pool;
    p.engine = eng_default_params();
    p.engine.kv_budget_bytes = 8u << 20;
    p.engine.block_tokens = 16;
    p.engine.max_ctx = 1024;
    p.engine.cache_dir = cdir;
    return p;
}

typedef struct reply {
    int32_t tokens[8];
    int32_t cached;
} reply;

static void chat(swap_mgr *sm, const char *agent, const int32_t *prompt, size_t n, reply *r)
{
    const swap_bundle *b;
    sem_err err;
    assert_int_equal(swap_acquire(sm, 5000, &b, &err), SEM_OK);
    eng_request_params p = eng_request_default_params();
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = 8;
    p.ignore_eos = true;
    p.agent_id = agent;
    eng_request *rq;
    assert_int_equal(eng_submit(b->eng, &p, &rq, &err), SEM_OK);
    int k = 0;
    for (;;) {
        eng_event *ev;
        assert_int_equal(eng_request_next(rq, 60000, &ev), SEM_OK);
        bool done = ev->kind == ENG_EV_DONE;
        if (done) r->cached = ev->cached_tokens;
        else r->tokens[k++] = ev->token;
        eng_event_free(ev);
        if (done) break;
    }
    assert_int_equal(k, 8);
    eng_request_release(rq);
    swap_release(sm, b);
}

static void swap_to(swap_mgr *sm, const char *id)
{
    swap_result res;
    assert_int_equal(swap_run(sm, id, 10, &res), SEM_OK);
    assert_int_equal(swap_get_state(sm), SWAP_SERVING);
    char cur[64];
    swap_current_model(sm, cur, sizeof cur);
    assert_string_equal(cur, id);
}

/* The greedy tokens of a cold run of `id` (no cache dir). */
static void cold(const char *id, const int32_t *prompt, size_t n, reply *r)
{
    swap_params p = params(NULL);
    swap_mgr *sm;
    sem_err err;
    assert_int_equal(swap_create(&p, id, &sm, &err), SEM_OK);
    chat(sm, NULL, prompt, n, r);
    assert_int_equal(r->cached, 0);
    swap_destroy(sm);
}

static void test_deepseek_llama_keep_both_caches(void **state)
{
    (void)state;
    gen("org/ds", "--arch deepseek2 --dtype q4 --layers 2");
    gen("org/ll", "--arch llama --dtype q4 --layers 2");
    gen("org/gm", "--arch gemma3 --dtype q4 --layers 3");
    swap_params p = params(cache_dir);
    swap_mgr *sm;
    sem_err err;
    assert_int_equal(swap_create(&p, "org/ds", &sm, &err), SEM_OK);
    int32_t a[64], b[64];
    for (int i = 0; i < 40; i++) a[i] = 200 + i * 11, b[i] = 300 + i * 13;
    reply ra1, rb1, x, ra2, rb2, want;
    chat(sm, "alice", a, 40, &ra1); /* alice talks to DeepSeek */
    assert_int_equal(ra1.cached, 0);
    swap_to(sm, "org/ll");
    chat(sm, "alice", a, 40, &x);
    assert_int_equal(x.cached, 0); /* Llama never sees DeepSeek's cache */
    chat(sm, "bob", b, 40, &rb1); /* bob talks to Llama */
    swap_to(sm, "org/ds");
    memcpy(a + 40, ra1.tokens, sizeof ra1.tokens);
    chat(sm, "alice", a, 48, &ra2);
    assert_int_equal(ra2.cached, 47); /* DeepSeek's cache survived */
    chat(sm, "bob", b, 40, &x);
    assert_int_equal(x.cached, 0); /* DeepSeek never sees Llama's */
    swap_to(sm, "org/gm");
    chat(sm, "carol", a, 40, &x);
    assert_int_equal(x.cached, 0);
    swap_to(sm, "org/ll");
    memcpy(b + 40, rb1.tokens, sizeof rb1.tokens);
    chat(sm, "bob", b, 48, &rb2);
    assert_int_equal(rb2.cached, 47); /* Llama's cache survived two swaps away */
    swap_destroy(sm);
    cold("org/ds", a, 48, &want);
    assert_memory_equal(ra2.tokens, want.tokens, sizeof want.tokens);
    cold("org/ll", b, 48, &want);
    assert_memory_equal(rb2.tokens, want.tokens, sizeof want.tokens);
    /* and the restarted DeepSeek still has alice's file */
    assert_int_equal(swap_create(&p, "org/ds", &sm, &err), SEM_OK);
    chat(sm, "alice", a, 48, &x);
    assert_true(x.cached >= 47);
    assert_memory_equal(x.tokens, ra2.tokens, sizeof x.tokens);
    swap_destroy(sm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deepseek_llama_keep_both_caches),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
