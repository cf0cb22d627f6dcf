/* swap_fixture.h - what the swap tests share: generated models under the
 * build dir (tools/gen_model.py, made once), a cache dir in a temp dir, a
 * two-thread compute pool, swap_params for small test engines, and chat(),
 * which runs one greedy request of 8 tokens through the current bundle.
 * Each test file includes it once and passes its models subdirectory and
 * generator seed to fx_setup / fx_gen.
 */
#ifndef SEM_TESTS_SWAP_FIXTURE_H
#define SEM_TESTS_SWAP_FIXTURE_H

#include "swap/swap.h"

#include "test_util.h"

static char models_dir[512], cache_dir[512];
static tp_pool *g_pool;

/* Generates models_dir/name with gen_model.py (tiny shape, llama2
 * tokenizer) unless it is already there. */
static void fx_gen(const char *name, int seed, const char *args)
{
    char *out = NULL;
    int rc = tu_run(&out, "/usr/bin/python3 %s/tools/gen_model.py --shape tiny --tokenizer llama2 --seed %d "
                          "--if-missing --quiet %s --out %s/%s",
                    tu_source_dir(), seed, args, models_dir, name);
    if (rc) fprintf(stderr, "%s\n", out);
    free(out);
    assert_int_equal(rc, 0);
}

static int fx_setup(const char *models_subdir)
{
    snprintf(models_dir, sizeof models_dir, "%s/models/%s", tu_build_dir(), models_subdir);
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

/* Small engines: 8 MiB of KV in 16-token blocks; cdir NULL = no cache. */
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
    int32_t n_tokens;
    int32_t cached; /* cached_tokens of the DONE event */
} reply;

/* One greedy request of 8 tokens (EOS ignored) as `agent` (NULL: none).
 * Fails only if the bundle cannot be acquired (swap_acquire's status). */
static sem_status chat(swap_mgr *sm, const char *agent, const int32_t *prompt, size_t n, reply *r)
{
    const swap_bundle *b;
    sem_err err;
    sem_status st = swap_acquire(sm, 5000, &b, &err);
    if (st) return st;
    eng_request_params p = eng_request_default_params();
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = 8;
    p.ignore_eos = true;
    p.agent_id = agent;
    eng_request *rq;
    assert_int_equal(eng_submit(b->eng, &p, &rq, &err), SEM_OK);
    r->n_tokens = 0;
    for (;;) {
        eng_event *ev;
        assert_int_equal(eng_request_next(rq, 60000, &ev), SEM_OK);
        bool done = ev->kind == ENG_EV_DONE;
        if (done) r->cached = ev->cached_tokens;
        else if (r->n_tokens < 8) r->tokens[r->n_tokens++] = ev->token;
        eng_event_free(ev);
        if (done) break;
    }
    assert_int_equal(r->n_tokens, 8);
    eng_request_release(rq);
    swap_release(sm, b);
    return SEM_OK;
}

#endif /* SEM_TESTS_SWAP_FIXTURE_H */
