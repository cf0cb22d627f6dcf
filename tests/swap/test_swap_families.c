/* test_swap_families.c - hot swaps between a DeepSeek-V2-shaped model (MLA:
 * a latent cache of one 192/128-dim KV head, MoE) and a Llama-shaped one keep
 * both models' agent caches: after DS -> Llama -> DS -> Llama each model's
 * agent continues from its own cache file (cached tokens > 0) with the same
 * greedy tokens as a cold run, and neither model ever loads the other's
 * cache. A Gemma 3 model joins the rotation once, so its hybrid layers go
 * through unload/reload too.
 */
#include "swap_fixture.h"

static int setup(void **state)
{
    (void)state;
    return fx_setup("swap-families");
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
    assert_int_equal(chat(sm, NULL, prompt, n, r), SEM_OK);
    assert_int_equal(r->cached, 0);
    swap_destroy(sm);
}

static void test_deepseek_llama_keep_both_caches(void **state)
{
    (void)state;
    fx_gen("org/ds", 9, "--arch deepseek2 --dtype q4 --layers 2");
    fx_gen("org/ll", 9, "--arch llama --dtype q4 --layers 2");
    fx_gen("org/gm", 9, "--arch gemma3 --dtype q4 --layers 3");
    swap_params p = params(cache_dir);
    swap_mgr *sm;
    sem_err err;
    assert_int_equal(swap_create(&p, "org/ds", &sm, &err), SEM_OK);
    int32_t a[64], b[64];
    for (int i = 0; i < 40; i++) a[i] = 200 + i * 11, b[i] = 300 + i * 13;
    reply ra1, rb1, x, ra2, rb2, want;
    assert_int_equal(chat(sm, "alice", a, 40, &ra1), SEM_OK); /* alice talks to DeepSeek */
    assert_int_equal(ra1.cached, 0);
    swap_to(sm, "org/ll");
    assert_int_equal(chat(sm, "alice", a, 40, &x), SEM_OK);
    assert_int_equal(x.cached, 0); /* Llama never sees DeepSeek's cache */
    assert_int_equal(chat(sm, "bob", b, 40, &rb1), SEM_OK); /* bob talks to Llama */
    swap_to(sm, "org/ds");
    memcpy(a + 40, ra1.tokens, sizeof ra1.tokens);
    assert_int_equal(chat(sm, "alice", a, 48, &ra2), SEM_OK);
    assert_int_equal(ra2.cached, 47); /* DeepSeek's cache survived */
    assert_int_equal(chat(sm, "bob", b, 40, &x), SEM_OK);
    assert_int_equal(x.cached, 0); /* DeepSeek never sees Llama's */
    swap_to(sm, "org/gm");
    assert_int_equal(chat(sm, "carol", a, 40, &x), SEM_OK);
    assert_int_equal(x.cached, 0);
    swap_to(sm, "org/ll");
    memcpy(b + 40, rb1.tokens, sizeof rb1.tokens);
    assert_int_equal(chat(sm, "bob", b, 48, &rb2), SEM_OK);
    assert_int_equal(rb2.cached, 47); /* Llama's cache survived two swaps away */
    swap_destroy(sm);
    cold("org/ds", a, 48, &want);
    assert_memory_equal(ra2.tokens, want.tokens, sizeof want.tokens);
    cold("org/ll", b, 48, &want);
    assert_memory_equal(rb2.tokens, want.tokens, sizeof want.tokens);
    /* and the restarted DeepSeek still has alice's file */
    assert_int_equal(swap_create(&p, "org/ds", &sm, &err), SEM_OK);
    assert_int_equal(chat(sm, "alice", a, 48, &x), SEM_OK);
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
