/* test_swap.c - the swap manager on two generated models of different
 * geometry: A -> B -> A keeps A's agent caches (cached tokens > 0 and the
 * same greedy output), B never loads A's caches, unknown ids are 404
 * before anything is touched, concurrent swaps get one EBUSY, a drain
 * timeout abandons the swap, a bad model rolls back, a failed rollback is
 * degraded until a good swap, and unloading returns RSS to the baseline.
 */
#include "swap_fixture.h"

#include <pthread.h>

static int setup(void **state)
{
    (void)state;
    return fx_setup("swap");
}

static void test_a_b_a(void **state)
{
    (void)state;
    fx_gen("org/model-a", 5, "--arch llama --dtype q4 --layers 2");
    fx_gen("org/model-b", 5, "--arch qwen2 --dtype q8 --layers 3 --kv-heads 4");
    swap_params p = params(cache_dir);
    swap_mgr *sm;
    sem_err err;
    assert_int_equal(swap_create(&p, "org/model-a", &sm, &err), SEM_OK);
    int32_t prompt[64];
    for (int i = 0; i < 40; i++) prompt[i] = 100 + i * 7;
    reply r1, r2, r3;
    assert_int_equal(chat(sm, "alice", prompt, 40, &r1), SEM_OK);
    assert_int_equal(r1.cached, 0);
    swap_result res;
    assert_int_equal(swap_run(sm, "org/model-b", 10, &res), SEM_OK);
    assert_int_equal(res.n_steps, 8);
    for (int i = 0; i < 8; i++) assert_true(res.steps[i].done);
    assert_string_equal(res.old_model_id, "org/model-a");
    assert_int_equal(swap_get_state(sm), SWAP_SERVING);
    assert_int_equal(chat(sm, "alice", prompt, 40, &r2), SEM_OK);
    assert_int_equal(r2.cached, 0); /* B never sees A's cache */
    assert_int_equal(swap_run(sm, "org/model-a", 10, &res), SEM_OK);
    memcpy(prompt + 40, r1.tokens, 8 * sizeof(int32_t));
    assert_int_equal(chat(sm, "alice", prompt, 48, &r3), SEM_OK);
    assert_int_equal(r3.cached, 47); /* A's cache survived two swaps */
    /* the same greedy output as a cold run of A */
    swap_params q = params(NULL);
    swap_mgr *cold;
    reply rc;
    assert_int_equal(swap_create(&q, "org/model-a", &cold, &err), SEM_OK);
    assert_int_equal(chat(cold, NULL, prompt, 48, &rc), SEM_OK);
    swap_destroy(cold);
    assert_memory_equal(r3.tokens, rc.tokens, 8 * sizeof(int32_t));
    /* unknown id: 404 before anything is touched */
    assert_int_equal(swap_run(sm, "org/nope", 10, &res), SEM_ENOTFOUND);
    assert_int_equal(swap_run(sm, "../etc", 10, &res), SEM_EINVAL);
    assert_int_equal(swap_get_state(sm), SWAP_SERVING);
    swap_destroy(sm);
}

typedef struct swap_arg {
    swap_mgr *sm;
    const char *id;
    sem_status st;
} swap_arg;

static void *swap_thread(void *p)
{
    swap_arg *a = p;
    swap_result res;
    a->st = swap_run(a->sm, a->id, 10, &res);
    return NULL;
}

static void test_concurrent_and_drain_timeout(void **state)
{
    (void)state;
    swap_params p = params(cache_dir);
    swap_mgr *sm;
    sem_err err;
    assert_int_equal(swap_create(&p, "org/model-a", &sm, &err), SEM_OK);
    /* a held bundle (a long request) makes the first swap wait in drain */
    const swap_bundle *held;
    assert_int_equal(swap_acquire(sm, 1000, &held, &err), SEM_OK);
    swap_arg a = {sm, "org/model-b", SEM_OK}, b = {sm, "org/model-a", SEM_OK};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, swap_thread, &a);
    /* the first swap is in its drain step before the second arrives
     * (polled: a fixed delay can be too short on a loaded host) */
    for (int i = 0; i < 3000 && swap_get_state(sm) != SWAP_DRAINING; i++) usleep(1000);
    assert_int_equal(swap_get_state(sm), SWAP_DRAINING);
    pthread_create(&tb, NULL, swap_thread, &b);
    pthread_join(tb, NULL);
    assert_int_equal(b.st, SEM_EBUSY); /* exactly one 409 */
    /* a request arriving during the swap waits; one with a short timeout gets ETIMEDOUT */
    const swap_bundle *x;
    assert_int_equal(swap_acquire(sm, 50, &x, &err), SEM_ETIMEDOUT);
    swap_release(sm, held);
    pthread_join(ta, NULL);
    assert_int_equal(a.st, SEM_OK);
    char cur[64];
    swap_current_model(sm, cur, sizeof cur);
    assert_string_equal(cur, "org/model-b");
    /* drain timeout: the swap is abandoned and the old model keeps serving */
    assert_int_equal(swap_acquire(sm, 1000, &held, &err), SEM_OK);
    swap_result res;
    assert_int_equal(swap_run(sm, "org/model-a", 1, &res), SEM_ETIMEDOUT);
    assert_true(res.abandoned);
    swap_release(sm, held);
    assert_int_equal(swap_get_state(sm), SWAP_SERVING);
    swap_current_model(sm, cur, sizeof cur);
    assert_string_equal(cur, "org/model-b");
    int32_t prompt[4] = {1, 2, 3, 4};
    reply r;
    assert_int_equal(chat(sm, NULL, prompt, 4, &r), SEM_OK);
    swap_destroy(sm);
}

static void test_rollback_and_degraded(void **state)
{
    (void)state;
    char *out = NULL;
    /* a copy of A with a corrupt safetensors file */
    tu_run(&out, "rm -rf %s/org/broken %s/org/a-copy && cp -r %s/org/model-a %s/org/broken && cp -r %s/org/model-a %s/org/a-copy && "
                 "truncate -s 1000 %s/org/broken/model.safetensors",
           models_dir, models_dir, models_dir, models_dir, models_dir, models_dir, models_dir);
    free(out);
    swap_params p = params(cache_dir);
    swap_mgr *sm;
    sem_err err;
    assert_int_equal(swap_create(&p, "org/a-copy", &sm, &err), SEM_OK);
    swap_result res;
    assert_int_equal(swap_run(sm, "org/broken", 10, &res), SEM_ECORRUPT);
    assert_true(res.rolled_back);
    assert_false(res.degraded);
    assert_int_equal(swap_get_state(sm), SWAP_SERVING);
    int32_t prompt[4] = {1, 2, 3, 4};
    reply r;
    assert_int_equal(chat(sm, NULL, prompt, 4, &r), SEM_OK);
    /* make the old model unloadable too: the rollback fails -> degraded */
    tu_run(&out, "truncate -s 1000 %s/org/a-copy/model.safetensors", models_dir);
    free(out);
    assert_int_equal(swap_run(sm, "org/broken", 10, &res), SEM_ECORRUPT);
    assert_true(res.degraded);
    assert_int_equal(swap_get_state(sm), SWAP_DEGRADED);
    const swap_bundle *b;
    assert_int_equal(swap_acquire(sm, 100, &b, &err), SEM_EDEGRADED);
    /* a good swap recovers */
    assert_int_equal(swap_run(sm, "org/model-b", 10, &res), SEM_OK);
    assert_int_equal(swap_get_state(sm), SWAP_SERVING);
    assert_int_equal(chat(sm, NULL, prompt, 4, &r), SEM_OK);
    swap_destroy(sm);
}

static void test_rss_returns_to_baseline(void **state)
{
    (void)state;
    swap_params p = params(cache_dir);
    swap_mgr *sm;
    sem_err err;
    /* warm up allocator, page cache (and ASan's shadow) with both models
     * once, then measure: one-time growth is not a leak of the swap */
    assert_int_equal(swap_create(&p, "org/model-b", &sm, &err), SEM_OK);
    swap_destroy(sm);
    assert_int_equal(swap_create(&p, "org/model-a", &sm, &err), SEM_OK);
    swap_destroy(sm);
    uint64_t base = swap_rss_bytes();
    assert_int_equal(swap_create(&p, "org/model-a", &sm, &err), SEM_OK);
    int32_t prompt[4] = {1, 2, 3, 4};
    reply r;
    assert_int_equal(chat(sm, NULL, prompt, 4, &r), SEM_OK);
    uint64_t loaded = swap_rss_bytes();
    swap_result res;
    assert_int_equal(swap_run(sm, "org/model-b", 10, &res), SEM_OK);
    swap_destroy(sm);
    uint64_t after = swap_rss_bytes();
    double slack = (double)base * 0.02 > 8.0 * 1048576 ? (double)base * 0.02 : 8.0 * 1048576;
    printf("rss: baseline %.1f MiB, loaded %.1f MiB, after unload (in swap) %.1f MiB, after destroy %.1f MiB\n",
           (double)base / 1048576, (double)loaded / 1048576, (double)res.rss_after_unload / 1048576,
           (double)after / 1048576);
    assert_true((double)after <= (double)base + slack);
    assert_true((double)res.rss_after_unload <= (double)base + slack);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_b_a),
        cmocka_unit_test(test_concurrent_and_drain_timeout),
        cmocka_unit_test(test_rollback_and_degraded),
        cmocka_unit_test(test_rss_returns_to_baseline),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
