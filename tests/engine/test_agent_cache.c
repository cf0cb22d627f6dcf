/* test_agent_cache.c - agent caches through the real engine on a generated
 * model: continuing, diverging and exact-repeat conversations reuse the
 * cache and give the same greedy tokens as a cold run; a restart reuses
 * the files; a corrupted file is quarantined and counts as a miss;
 * anonymous requests match by prefix; a pool too small for every agent
 * evicts to disk and reloads; after a delete or a clear nothing of the
 * dropped cache is reused, even while its file is still being written.
 */
#include "engine/engine.h"

#include "test_util.h"

#include <sys/stat.h>

static char model_path[512];
static model *g_model;
static tp_pool *g_pool;
static kn_ctx *g_kc;
static char *g_dir;

static int setup(void **state)
{
    (void)state;
    snprintf(model_path, sizeof model_path, "%s/models/engine-llama-q4", tu_build_dir());
    char *out = NULL;
    int rc = tu_run(&out, "/usr/bin/python3 %s/tools/gen_model.py --shape tiny --dtype q4 --arch llama "
                          "--layers 2 --seed 11 --if-missing --quiet --out %s",
                    tu_source_dir(), model_path);
    free(out);
    sem_err err;
    if (rc || model_load(model_path, &g_model, &err) || tp_create(2, &g_pool, &err)) return -1;
    kn_ctx_params kp = kn_ctx_default_params();
    kp.pool = g_pool;
    kp.max_tokens = 1024;
    kp.max_cols = model_max_matmul_cols(g_model);
    g_dir = tu_tmpdir();
    return kn_ctx_create(&kp, &g_kc, &err) == SEM_OK && g_dir ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    kn_ctx_destroy(g_kc);
    tp_destroy(g_pool);
    model_destroy(g_model);
    tu_rmrf(g_dir);
    free(g_dir);
    return 0;
}

static eng_engine *start(const char *cache_dir, size_t budget_kb)
{
    eng_params p = eng_default_params();
    p.m = g_model;
    p.kc = g_kc;
    p.block_tokens = 16;
    p.max_batch = 4;
    p.prefill_chunk = 256;
    p.kv_budget_bytes = budget_kb << 10;
    p.max_ctx = 2048;
    p.cache_dir = cache_dir;
    p.model_id = "test/engine-llama-q4";
    p.fingerprint = "0123456789abcdef";
    eng_engine *e;
    sem_err err;
    assert_int_equal(eng_start(&p, &e, &err), SEM_OK);
    return e;
}

typedef struct turn {
    int32_t tokens[256];
    int32_t n;
    int32_t cached;
    eng_finish finish;
} turn;

static void run_turn(eng_engine *e, const char *agent, const int32_t *prompt, size_t n, int32_t gen, turn *t)
{
    eng_request_params p = eng_request_default_params();
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = gen;
    p.ignore_eos = true;
    p.agent_id = agent;
    eng_request *r;
    sem_err err;
    assert_int_equal(eng_submit(e, &p, &r, &err), SEM_OK);
    memset(t, 0, sizeof *t);
    for (;;) {
        eng_event *ev;
        assert_int_equal(eng_request_next(r, 60000, &ev), SEM_OK);
        if (ev->kind == ENG_EV_DONE) {
            t->cached = ev->cached_tokens;
            t->finish = ev->finish;
            eng_event_free(ev);
            break;
        }
        t->tokens[t->n++] = ev->token;
        eng_event_free(ev);
    }
    eng_request_release(r);
}

/* The same turn on a fresh engine with no cache: the reference output. */
static void cold_turn(const int32_t *prompt, size_t n, int32_t gen, turn *t)
{
    eng_engine *e = start(NULL, 4096);
    run_turn(e, NULL, prompt, n, gen, t);
    assert_int_equal(t->cached, 0);
    eng_stop(e);
}

static void make_prompt(int32_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) p[i] = (int32_t)((seed * 2654435761u + (uint32_t)i * 40503u) % 1000u);
}

static void test_continue_diverge_repeat(void **state)
{
    (void)state;
    eng_engine *e = start(NULL, 4096);
    int32_t conv[600];
    make_prompt(conv, 50, 1);
    turn t1, t2, cold;
    run_turn(e, "alice", conv, 50, 20, &t1);
    assert_int_equal(t1.cached, 0);
    /* continue: previous prompt + reply + a new user message */
    memcpy(conv + 50, t1.tokens, 20 * sizeof(int32_t));
    make_prompt(conv + 70, 30, 2);
    run_turn(e, "alice", conv, 100, 20, &t2);
    assert_int_equal(t2.cached, 69); /* prompt + reply, minus the last reply token (no KV yet) */
    cold_turn(conv, 100, 20, &cold);
    assert_memory_equal(t2.tokens, cold.tokens, 20 * sizeof(int32_t));
    /* diverge inside the first turn's prompt */
    int32_t div[100];
    memcpy(div, conv, sizeof div);
    div[37] = (div[37] + 1) % 1000;
    run_turn(e, "alice", div, 100, 16, &t2);
    assert_int_equal(t2.cached, 37);
    cold_turn(div, 100, 16, &cold);
    assert_memory_equal(t2.tokens, cold.tokens, 16 * sizeof(int32_t));
    /* exact repeat: everything but the last prompt token is reused */
    run_turn(e, "alice", div, 100, 16, &t2);
    assert_int_equal(t2.cached, 99);
    assert_memory_equal(t2.tokens, cold.tokens, 16 * sizeof(int32_t));
    /* another agent does not see alice's cache */
    run_turn(e, "bob", div, 100, 4, &t2);
    eng_stop(e);
}

static void test_anonymous_prefix(void **state)
{
    (void)state;
    eng_engine *e = start(NULL, 4096);
    int32_t a[90], b[90];
    make_prompt(a, 90, 7);
    memcpy(b, a, sizeof a);
    make_prompt(b + 70, 20, 8);
    turn t, cold;
    run_turn(e, NULL, a, 90, 8, &t);
    run_turn(e, NULL, b, 90, 8, &t);
    assert_int_equal(t.cached, 70); /* 4 full blocks shared + 6 tokens of the partial one */
    cold_turn(b, 90, 8, &cold);
    assert_memory_equal(t.tokens, cold.tokens, 8 * sizeof(int32_t));
    cache_entry_info *list;
    size_t n;
    sem_err err;
    assert_int_equal(eng_agents_list(e, &list, &n, &err), SEM_OK);
    assert_true(n >= 1);
    assert_true(list[0].anonymous);
    free(list);
    eng_stop(e);
}

static int count_files(const char *dir, const char *suffix)
{
    char *out;
    tu_run(&out, "find '%s' -name '*%s' | wc -l", dir, suffix);
    int n = atoi(out);
    free(out);
    return n;
}

static void test_restart_and_corruption(void **state)
{
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/restart", g_dir);
    int32_t conv[200];
    make_prompt(conv, 60, 3);
    turn t1, t2, cold;
    eng_engine *e = start(dir, 4096);
    run_turn(e, "carol", conv, 60, 12, &t1);
    eng_stop(e); /* flushes to disk */
    assert_int_equal(count_files(dir, "carol.safetensors"), 1);
    memcpy(conv + 60, t1.tokens, 12 * sizeof(int32_t));
    make_prompt(conv + 72, 10, 4);
    e = start(dir, 4096);
    run_turn(e, "carol", conv, 82, 12, &t2);
    assert_int_equal(t2.cached, 71); /* from the file */
    cache_stats cs = eng_cache_stats(e);
    assert_int_equal(cs.hits_warm, 1);
    eng_stop(e);
    cold_turn(conv, 82, 12, &cold);
    assert_memory_equal(t2.tokens, cold.tokens, 12 * sizeof(int32_t));
    /* corrupt one data byte near the end: CRC fails at load, the file is
     * quarantined, the request is a miss and still correct */
    char *path;
    tu_run(&path, "find '%s' -name carol.safetensors | head -1 | tr -d '\\n'", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    FILE *f = fopen(path, "r+b");
    fseek(f, st.st_size - 5, SEEK_SET);
    int c = fgetc(f);
    fseek(f, st.st_size - 5, SEEK_SET);
    fputc(c ^ 0x40, f);
    fclose(f);
    free(path);
    e = start(dir, 4096);
    run_turn(e, "carol", conv, 82, 12, &t2);
    assert_int_equal(t2.cached, 0);
    assert_memory_equal(t2.tokens, cold.tokens, 12 * sizeof(int32_t));
    cs = eng_cache_stats(e);
    assert_int_equal(cs.quarantined, 1);
    eng_stop(e);
    assert_int_equal(count_files(dir, ".corrupt"), 1);
}

/* Six agents, a pool with room for about two: entries are evicted (written
 * first) and come back warm, with the same outputs. */
static void test_eviction_to_disk(void **state)
{
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/evict", g_dir);
    eng_engine *e = start(dir, 16 * 16); /* 16 blocks of 16 tokens */
    int32_t prompts[6][70];
    turn first[6], again;
    char name[32];
    for (int a = 0; a < 6; a++) {
        make_prompt(prompts[a], 60, 100 + (uint32_t)a);
        snprintf(name, sizeof name, "agent%d", a);
        run_turn(e, name, prompts[a], 60, 8, &first[a]);
        assert_int_equal(first[a].finish, ENG_FINISH_LENGTH);
    }
    for (int a = 0; a < 6; a++) {
        memcpy(prompts[a] + 60, first[a].tokens, 8 * sizeof(int32_t));
        snprintf(name, sizeof name, "agent%d", a);
        run_turn(e, name, prompts[a], 68, 4, &again);
        assert_int_equal(again.cached, 67);
        turn cold;
        cold_turn(prompts[a], 68, 4, &cold);
        assert_memory_equal(again.tokens, cold.tokens, 4 * sizeof(int32_t));
    }
    cache_stats cs = eng_cache_stats(e);
    assert_true(cs.evictions > 0);
    assert_true(cs.hits_warm > 0);
    sem_err err;
    assert_int_equal(eng_agent_delete(e, "agent0", false, &err), SEM_OK);
    assert_int_equal(eng_agent_delete(e, "agent0", false, &err), SEM_ENOTFOUND);
    assert_int_equal(eng_agent_delete(e, "agent1", true, &err), SEM_OK);
    eng_stop(e);
    assert_int_equal(count_files(dir, "agent0.safetensors"), 0);
    assert_int_equal(count_files(dir, "agent1.safetensors"), 1);
}

/* A turn's file write starts as the turn ends, so a delete or a clear right
 * after it finds the write in flight, holding the blocks: they must not be
 * shared with the next agent all the same (a cleared cache means cold). */
static void test_dropped_is_cold(void **state)
{
    (void)state;
    char dir[600];
    snprintf(dir, sizeof dir, "%s/dropped", g_dir);
    eng_engine *e = start(dir, 4096);
    sem_err err;
    int32_t prompt[200];
    turn t;
    for (uint32_t i = 0; i < 8; i++) {
        make_prompt(prompt, 200, 300 + i);
        run_turn(e, "owner", prompt, 200, 1, &t);
        if (i % 2) {
            assert_int_equal(eng_agent_delete(e, "owner", false, &err), SEM_OK);
        } else {
            size_t n;
            assert_int_equal(eng_caches_clear(e, &n, &err), SEM_OK);
            assert_int_equal(n, 1);
        }
        run_turn(e, "newcomer", prompt, 200, 1, &t);
        assert_int_equal(t.cached, 0);
        assert_int_equal(eng_agent_delete(e, "newcomer", false, &err), SEM_OK);
    }
    eng_stop(e);
    assert_int_equal(count_files(dir, ".safetensors"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_continue_diverge_repeat),
        cmocka_unit_test(test_anonymous_prefix),
        cmocka_unit_test(test_restart_and_corruption),
        cmocka_unit_test(test_eviction_to_disk),
        cmocka_unit_test(test_dropped_is_cold),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
