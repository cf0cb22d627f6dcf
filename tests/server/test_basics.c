/* test_basics.c - the server room's small pieces through srv_int.h
 * (white-box): the error table and envelopes, request and agent ids, JSON
 * bodies with limits and UTF-8 repair, API keys and the admin key, token
 * buckets, metrics rendering, the route table and SSE framing. */
#include "server/srv_int.h"

#include "test_util.h"

/* ---- errors ---------------------------------------------------------------- */

static void test_error_table(void **state)
{
    (void)state;
    assert_int_equal(srv_http_status_for(SEM_EINVAL), 400);
    assert_int_equal(srv_http_status_for(SEM_ENOTFOUND), 404);
    assert_int_equal(srv_http_status_for(SEM_EAUTH), 401);
    assert_int_equal(srv_http_status_for(SEM_EEXIST), 409);
    assert_int_equal(srv_http_status_for(SEM_EDEGRADED), 503);
    assert_int_equal(srv_http_status_for(SEM_ENOMEM), 500);
    assert_int_equal(srv_http_status_for((sem_status)999), 500);
    assert_string_equal(srv_error_type(SRV_API_ANTHROPIC, 413), "request_too_large");
    assert_string_equal(srv_error_type(SRV_API_ANTHROPIC, 503), "overloaded_error");
    assert_string_equal(srv_error_type(SRV_API_OPENAI, 429), "rate_limit_error");
    assert_string_equal(srv_error_type(SRV_API_OPENAI, 418), "invalid_request_error");
    assert_string_equal(srv_error_type(SRV_API_ANTHROPIC, 502), "api_error");
    assert_string_equal(srv_http_reason(405), "Method Not Allowed");
}

static void test_envelopes(void **state)
{
    (void)state;
    srv_error e;
    assert_false(srv_errorf(&e, 400, "invalid_value", "max_tokens", "bad %d", 7));
    json_t *o = srv_error_envelope(SRV_API_OPENAI, &e);
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "message")), "bad 7");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "type")), "invalid_request_error");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "param")), "max_tokens");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "code")), "invalid_value");
    json_decref(o);
    srv_errorf(&e, 401, NULL, NULL, "no \xff key"); /* bad UTF-8 in a message is repaired */
    o = srv_error_envelope(SRV_API_ANTHROPIC, &e);
    assert_string_equal(json_string_value(json_object_get(o, "type")), "error");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "type")), "authentication_error");
    assert_string_equal(json_string_value(json_object_get(json_object_get(o, "error"), "message")), "no \xEF\xBF\xBD key");
    json_decref(o);
    o = srv_error_envelope(SRV_API_OPENAI, &e);
    assert_true(json_is_null(json_object_get(json_object_get(o, "error"), "param")));
    assert_true(json_is_null(json_object_get(json_object_get(o, "error"), "code")));
    json_decref(o);
}

/* ---- ids ------------------------------------------------------------------------ */

static void test_ids(void **state)
{
    (void)state;
    assert_true(srv_agent_id_valid("planner-1.v2_x", 14));
    assert_false(srv_agent_id_valid("", 0));
    assert_false(srv_agent_id_valid(".hidden", 7));
    assert_false(srv_agent_id_valid("..", 2));
    assert_false(srv_agent_id_valid("../etc", 6));
    assert_false(srv_agent_id_valid("a/b", 3));
    assert_false(srv_agent_id_valid("a\0b", 3));
    assert_false(srv_agent_id_valid("a b", 3));
    assert_false(srv_agent_id_valid("caf\xc3\xa9", 5));
    char long_id[130];
    memset(long_id, 'a', sizeof long_id);
    assert_true(srv_agent_id_valid(long_id, 128));
    assert_false(srv_agent_id_valid(long_id, 129));
    assert_true(srv_request_id_valid(".x", 2)); /* request ids may start with a dot */
    assert_false(srv_request_id_valid("x\r\nSet-Cookie: a", 16));
    srv_idgen g;
    srv_idgen_init(&g, 42);
    char a[48], b[48];
    srv_idgen_str(&g, "call_", a, sizeof a);
    srv_idgen_str(&g, "call_", b, sizeof b);
    assert_int_equal(strlen(a), 5 + 24);
    assert_string_not_equal(a, b);
    assert_true(srv_request_id_valid(a, strlen(a)));
}

/* ---- JSON bodies ------------------------------------------------------------------- */

static int parse_status(const char *s, size_t len, int32_t depth)
{
    json_t *v = NULL;
    srv_error e = {0};
    bool ok = srv_json_parse_body(s, len, depth, &v, &e);
    json_decref(v);
    return ok ? 200 : e.http_status;
}

/* A string literal's status (its length without the NUL). */
#define PARSE(lit, depth) parse_status(lit, sizeof lit - 1, depth)

static void test_json_bodies(void **state)
{
    (void)state;
    assert_int_equal(PARSE("{\"a\": [1, {\"b\": 2}]}", 3), 200);
    assert_int_equal(PARSE("{\"a\": [1, {\"b\": 2}]}", 2), 400);
    assert_int_equal(PARSE("{\"a\": \"[[[[[[[[\"}", 2), 200); /* brackets in strings */
    assert_int_equal(PARSE("", 8), 400);
    assert_int_equal(PARSE("[1]", 8), 400);            /* not an object */
    assert_int_equal(PARSE("{\"a\": 1", 8), 400);       /* truncated */
    assert_int_equal(PARSE("{\"a\": \"\xff\"}", 8), 400);  /* bad UTF-8 */
    assert_int_equal(PARSE("{\"a\": \"\\u0000\"}", 8), 400); /* NUL */
    assert_int_equal(PARSE("{\"a\": 99999999999999999999999}", 8), 400);
    assert_int_equal(PARSE("{\"a\": 1} x", 8), 400);   /* trailing garbage */
    char deep[5000];
    for (int i = 0; i < 2500; i++) deep[i] = '[';
    for (int i = 0; i < 2500; i++) deep[2500 + i] = ']';
    assert_int_equal(parse_status(deep, sizeof deep, 64), 400);
}

static void test_utf8_repair(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    const char in[] = "ok \xe2\x82\xac \xe2\x82 \xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80 end\xf0";
    assert_true(srv_utf8_repair(in, sizeof in - 1, &b));
    assert_non_null(b.data);
    json_t *ok = json_stringn(b.data, b.len); /* jansson accepts it */
    assert_non_null(ok);
    json_decref(ok);
    assert_non_null(strstr(b.data, "\xe2\x82\xac")); /* the valid euro sign is kept */
    assert_memory_equal(b.data + b.len - 3, "\xEF\xBF\xBD", 3);
    buf_fini(&b);
    json_t *t = srv_json_text("a\xff", 2);
    assert_string_equal(json_string_value(t), "a\xEF\xBF\xBD");
    json_decref(t);
}

/* ---- auth -------------------------------------------------------------------- */

static void test_auth(void **state)
{
    (void)state;
    srv_auth a;
    sem_err err;
    assert_int_equal(srv_auth_init(&a, NULL, NULL, &err), SEM_OK);
    assert_false(srv_auth_required(&a));
    assert_true(srv_auth_check_api(&a, NULL, NULL));
    assert_int_equal(srv_auth_check_admin(&a, "x"), SRV_ADMIN_DISABLED);
    srv_auth_fini(&a);
    assert_int_equal(srv_auth_init(&a, " sk-one , ,sk-two", "adm1n", &err), SEM_OK);
    assert_int_equal(a.n_keys, 2);
    assert_true(srv_auth_check_api(&a, "Bearer sk-one", NULL));
    assert_true(srv_auth_check_api(&a, "bearer  sk-two", NULL));
    assert_true(srv_auth_check_api(&a, NULL, "sk-two"));
    assert_false(srv_auth_check_api(&a, "Bearer sk-on", NULL));
    assert_false(srv_auth_check_api(&a, "Bearer sk-one2", NULL));
    assert_false(srv_auth_check_api(&a, "sk-one", NULL));
    assert_false(srv_auth_check_api(&a, NULL, NULL));
    assert_false(srv_auth_check_api(&a, "Bearer ", ""));
    assert_int_equal(srv_auth_check_admin(&a, NULL), SRV_ADMIN_MISSING);
    assert_int_equal(srv_auth_check_admin(&a, "adm1"), SRV_ADMIN_WRONG);
    assert_int_equal(srv_auth_check_admin(&a, "adm1n"), SRV_ADMIN_OK);
    srv_auth_fini(&a);
    assert_int_equal(srv_auth_init(&a, NULL, "   ", &err), SEM_EINVAL);
    assert_true(srv_ct_equal("abc", 3, "abc", 3));
    assert_false(srv_ct_equal("abd", 3, "abc", 3));
    assert_false(srv_ct_equal("ab", 2, "abc", 3));
    assert_false(srv_ct_equal("abcd", 4, "abc", 3));
    assert_true(srv_ct_equal("", 0, "", 0));
}

/* ---- rate limits ------------------------------------------------------------------- */

static void test_rate_limit(void **state)
{
    (void)state;
    srv_rl *rl;
    sem_err err;
    assert_int_equal(srv_rl_create(2, 3, 4, &rl, &err), SEM_OK);
    double ra = 0;
    for (int i = 0; i < 3; i++) assert_true(srv_rl_take(rl, "a", 100.0, &ra));
    assert_false(srv_rl_take(rl, "a", 100.0, &ra));
    assert_true(ra > 0.49 && ra < 0.51); /* one token back after 1/rps */
    assert_true(srv_rl_take(rl, "b", 100.0, &ra)); /* separate bucket */
    assert_true(srv_rl_take(rl, "a", 100.5, &ra));  /* refilled one */
    assert_false(srv_rl_take(rl, "a", 100.5, &ra));
    assert_true(srv_rl_take(rl, "a", 1000.0, &ra)); /* capped at burst, not more */
    assert_true(srv_rl_take(rl, "a", 1000.0, &ra));
    assert_true(srv_rl_take(rl, "a", 1000.0, &ra));
    assert_false(srv_rl_take(rl, "a", 1000.0, &ra));
    for (int i = 0; i < 10; i++) { /* bounded: the stalest keys go */
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        srv_rl_take(rl, k, 2000.0 + i, &ra);
    }
    assert_int_equal(srv_rl_n_keys(rl), 4);
    srv_rl_destroy(rl);
    assert_int_equal(srv_rl_create(0, 0, 1, &rl, &err), SEM_OK); /* off */
    for (int i = 0; i < 100; i++) assert_true(srv_rl_take(rl, "", 0, &ra));
    srv_rl_destroy(rl);
    assert_int_equal(srv_rl_create(-1, 1, 1, &rl, &err), SEM_EINVAL);
}

/* ---- metrics ------------------------------------------------------------------------ */

static void test_metrics(void **state)
{
    (void)state;
    static const char *const routes[] = {"/v1/a", "/v1/b"};
    srv_metrics *m;
    sem_err err;
    assert_int_equal(srv_metrics_create(routes, 2, &m, &err), SEM_OK);
    srv_metrics_request(m, 0, 200, 0.02);
    srv_metrics_request(m, 0, 200, 3.0);
    srv_metrics_request(m, 1, 429, 0.001);
    srv_metrics_request(m, 7, 418, 0.001); /* unmatched route, odd status */
    srv_metrics_ttft(m, 0.3);
    srv_metrics_inter_token(m, 0.004);
    srv_metrics_add(m, SRV_C_PROMPT_TOKENS, 12);
    srv_metrics_cache(m, SRV_TIER_HOT);
    srv_metrics_swap(m, SRV_SWAP_OK, 4, NULL, 0);
    srv_gauges g = {0};
    g.have_eng = true;
    g.eng.blocks_total = 10;
    g.eng.blocks_used = 3;
    g.eng.kv_bytes_used = 5505024; /* past 2^22: printed whole, not in exponent form */
    g.eng.kv_bytes_total = 26214400;
    g.state = "serving";
    g.model_id = "we\"ird\\model\n";
    g.model_arch = "LlamaForCausalLM";
    g.model_dtype = "q4";
    buf b;
    buf_init(&b);
    assert_true(srv_metrics_render(m, &g, &b));
    const char *t = b.data;
    assert_non_null(strstr(t, "semantic_http_requests_total{route=\"/v1/a\",status=\"200\"} 2\n"));
    assert_non_null(strstr(t, "semantic_http_requests_total{route=\"/v1/b\",status=\"429\"} 1\n"));
    assert_non_null(strstr(t, "semantic_http_requests_total{route=\"other\",status=\"other\"} 1\n"));
    assert_non_null(strstr(t, "semantic_http_request_duration_seconds_bucket{route=\"/v1/a\",le=\"0.025\"} 1\n"));
    assert_non_null(strstr(t, "semantic_http_request_duration_seconds_bucket{route=\"/v1/a\",le=\"+Inf\"} 2\n"));
    assert_non_null(strstr(t, "semantic_http_request_duration_seconds_count{route=\"/v1/a\"} 2\n"));
    assert_non_null(strstr(t, "semantic_prompt_tokens_total 12\n"));
    assert_non_null(strstr(t, "semantic_cache_lookups_total{tier=\"hot\"} 1\n"));
    assert_non_null(strstr(t, "semantic_swaps_total{result=\"ok\"} 1\n"));
    assert_non_null(strstr(t, "semantic_pool_blocks_used 3\n"));
    assert_non_null(strstr(t, "# TYPE semantic_kv_bytes_used gauge\n"));
    assert_non_null(strstr(t, "semantic_kv_bytes_used 5505024\n"));
    assert_non_null(strstr(t, "semantic_kv_bytes_total 26214400\n"));
    assert_non_null(strstr(t, "semantic_state{state=\"serving\"} 1\n"));
    assert_non_null(strstr(t, "semantic_model_info{model=\"we\\\"ird\\\\model\\n\",arch=\"LlamaForCausalLM\""));
    assert_non_null(strstr(t, "# TYPE semantic_time_to_first_token_seconds histogram\n"));
    buf_fini(&b);
    srv_metrics_destroy(m);
}

/* Swap results and steps, the agent cache series, and routes that share a
 * template (GET and DELETE) sharing their series. */
static void test_metrics_swaps_and_caches(void **state)
{
    (void)state;
    static const char *const routes[] = {"/v1/x/{id}", "/v1/x/{id}"};
    srv_metrics *m;
    sem_err err;
    assert_int_equal(srv_metrics_create(routes, 2, &m, &err), SEM_OK);
    srv_metrics_request(m, 0, 200, 0.01);
    srv_metrics_request(m, 1, 200, 0.01);
    swap_step steps[SWAP_N_STEPS] = {{"drain", 10, true}, {"evict", 20, true}, {"shutdown", 1, true},
                                     {"unload", 2, true}, {"load", 300, true}};
    srv_metrics_swap(m, SRV_SWAP_ROLLED_BACK, 1.5, steps, 5);
    srv_metrics_swap(m, SRV_SWAP_ABANDONED, 1.0, steps, 1); /* only the drain: steps kept */
    srv_gauges g = {0};
    g.state = "degraded";
    g.have_cache = true;
    g.cache.hits_hot = 3;
    g.cache.hits_warm = 2;
    g.cache.misses = 5;
    g.cache.quarantined = 1;
    g.cache.bytes_written = 4096;
    buf b;
    buf_init(&b);
    assert_true(srv_metrics_render(m, &g, &b));
    const char *t = b.data;
    assert_non_null(strstr(t, "semantic_http_requests_total{route=\"/v1/x/{id}\",status=\"200\"} 2\n"));
    assert_non_null(strstr(t, "semantic_swaps_total{result=\"rolled_back\"} 1\n"));
    assert_non_null(strstr(t, "semantic_swaps_total{result=\"abandoned\"} 1\n"));
    assert_non_null(strstr(t, "semantic_swaps_total{result=\"ok\"} 0\n"));
    assert_non_null(strstr(t, "semantic_swap_last_step_seconds{step=\"load\"} 0.3\n"));
    assert_non_null(strstr(t, "semantic_swap_last_step_seconds{step=\"reinit\"} 0\n"));
    assert_non_null(strstr(t, "semantic_agent_cache_hits_total{tier=\"warm\"} 2\n"));
    assert_non_null(strstr(t, "semantic_agent_cache_misses_total 5\n"));
    assert_non_null(strstr(t, "semantic_agent_cache_quarantined_total 1\n"));
    assert_non_null(strstr(t, "semantic_agent_cache_written_bytes_total 4096\n"));
    assert_non_null(strstr(t, "semantic_state{state=\"degraded\"} 1\n"));
    assert_non_null(strstr(t, "semantic_state{state=\"serving\"} 0\n"));
    assert_null(strstr(t, "semantic_model_info{")); /* no model */
    buf_fini(&b);
    /* no model: the cache series keep their TYPE but have no samples */
    g.have_cache = false;
    buf_init(&b);
    assert_true(srv_metrics_render(m, &g, &b));
    assert_non_null(strstr(b.data, "# TYPE semantic_agent_cache_misses_total counter\n"));
    assert_null(strstr(b.data, "semantic_agent_cache_misses_total 5"));
    buf_fini(&b);
    srv_metrics_destroy(m);
}

/* ---- routes, SSE ------------------------------------------------------------------ */

static void test_routes(void **state)
{
    (void)state;
    bool path_ok;
    char allow[64];
    char param[SWAP_MAX_MODEL_ID] = "";
    const srv_route *r = srv_route_find("POST", "/v1/chat/completions", &path_ok, param, sizeof param);
    assert_non_null(r);
    assert_int_equal(r->auth, SRV_AUTH_API);
    assert_null(srv_route_find("GET", "/v1/chat/completions", &path_ok, param, sizeof param));
    assert_true(path_ok);
    assert_null(srv_route_find("GET", "/nope", &path_ok, param, sizeof param));
    assert_false(path_ok);
    r = srv_route_find("GET", "/v1/models/my-model", &path_ok, param, sizeof param);
    assert_non_null(r);
    assert_string_equal(param, "my-model");
    r = srv_route_find("GET", "/v1/models/org/name", &path_ok, param, sizeof param); /* model ids have a slash */
    assert_non_null(r);
    assert_string_equal(param, "org/name");
    assert_null(srv_route_find("GET", "/v1/models/", &path_ok, param, sizeof param));
    assert_null(srv_route_find("GET", "/v1/models/a//b", &path_ok, param, sizeof param));
    assert_null(srv_route_find("GET", "/v1/models/a/", &path_ok, param, sizeof param));
    /* agent ids are one segment; GET and DELETE share a path */
    r = srv_route_find("DELETE", "/v1/agents/alice", &path_ok, param, sizeof param);
    assert_non_null(r);
    assert_string_equal(param, "alice");
    assert_null(srv_route_find("GET", "/v1/agents/a/b", &path_ok, param, sizeof param));
    assert_null(srv_route_find("POST", "/v1/agents/alice", &path_ok, param, sizeof param));
    assert_true(path_ok);
    srv_route_allow("/v1/agents/alice", allow, sizeof allow);
    assert_string_equal(allow, "GET, DELETE, OPTIONS");
    assert_int_equal(srv_route_find("POST", "/admin/models/swap", &path_ok, NULL, 0)->auth, SRV_AUTH_ADMIN);
    assert_int_equal(srv_route_find("DELETE", "/admin/caches", &path_ok, NULL, 0)->auth, SRV_AUTH_ADMIN);
    assert_int_equal(srv_route_find("GET", "/health/ready", &path_ok, NULL, 0)->auth, SRV_AUTH_PUBLIC);
    assert_int_equal(srv_route_find("GET", "/admin/models/current", &path_ok, NULL, 0)->auth, SRV_AUTH_ADMIN);
    srv_route_allow("/v1/messages", allow, sizeof allow);
    assert_string_equal(allow, "POST, OPTIONS");
    for (size_t i = 0; i < srv_n_routes; i++) assert_string_equal(srv_route_names[i], srv_routes[i].path);
}

static void test_sse(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    json_t *o = json_pack("{s:s}", "t", "a\nb");
    assert_true(srv_sse_json(&b, "message_start", o));
    assert_true(srv_sse_raw(&b, NULL, "[DONE]"));
    assert_string_equal(b.data, "event: message_start\ndata: {\"t\":\"a\\nb\"}\n\ndata: [DONE]\n\n");
    json_decref(o);
    buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_table), cmocka_unit_test(test_envelopes),
        cmocka_unit_test(test_ids),         cmocka_unit_test(test_json_bodies),
        cmocka_unit_test(test_utf8_repair), cmocka_unit_test(test_auth),
        cmocka_unit_test(test_rate_limit),  cmocka_unit_test(test_metrics), cmocka_unit_test(test_metrics_swaps_and_caches),
        cmocka_unit_test(test_routes),      cmocka_unit_test(test_sse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
