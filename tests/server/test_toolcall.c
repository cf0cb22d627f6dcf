/* test_toolcall.c - the tool-call parsers (server/toolcall.c) through
 * srv_int.h: each model family's format, fed whole and split at every byte
 * (the streamed pieces must add up to the same calls and text), calls in
 * other key orders, text that only looks like a call, and limits.
 * White-box: uses the server room's internal header. */
#include "server/srv_int.h"

#include "test_util.h"

/* What a parse produced: text, and per call name + concatenated args. */
typedef struct result {
    buf text;
    char names[8][64];
    buf args[8];
    int n_calls;
    int n_ends;
    int bad_order; /* a piece for a call that was not the latest */
} result;

static void res_init(result *r)
{
    memset(r, 0, sizeof *r);
    buf_init(&r->text);
    buf_append(&r->text, "", 0);
    for (int i = 0; i < 8; i++) buf_init(&r->args[i]);
}

static void res_fini(result *r)
{
    buf_fini(&r->text);
    for (int i = 0; i < 8; i++) buf_fini(&r->args[i]);
}

static void sink(void *ctx, const srv_piece *p)
{
    result *r = ctx;
    switch (p->kind) {
    case SRV_PIECE_TEXT: buf_append(&r->text, p->text, p->len); break;
    case SRV_PIECE_CALL_START:
        if (p->call_index != r->n_calls) r->bad_order++;
        if (r->n_calls < 8) snprintf(r->names[r->n_calls], 64, "%.*s", (int)p->len, p->text);
        r->n_calls++;
        break;
    case SRV_PIECE_CALL_ARGS:
        if (p->call_index != r->n_calls - 1) r->bad_order++;
        if (p->call_index >= 0 && p->call_index < 8) buf_append(&r->args[p->call_index], p->text, p->len);
        break;
    case SRV_PIECE_CALL_END:
        if (p->call_index != r->n_calls - 1) r->bad_order++;
        r->n_ends++;
        break;
    }
}

/* Parses s fed in pieces of `step` bytes (0 = all at once). */
static void parse(srv_tool_format f, const char *s, size_t step, result *r)
{
    res_init(r);
    srv_tc *tc = srv_tc_create(f, sink, r);
    assert_non_null(tc);
    size_t n = strlen(s);
    if (!step) step = n ? n : 1;
    for (size_t i = 0; i < n; i += step)
        assert_true(srv_tc_feed(tc, s + i, n - i < step ? n - i : step));
    assert_true(srv_tc_finish(tc));
    srv_tc_destroy(tc);
}

static const char *args_of(result *r, int i) { return r->args[i].data ? r->args[i].data : ""; }

/* The whole parse and every split give the same result, with ordered pieces. */
static void check_all_splits(srv_tool_format f, const char *s, const char *text, int n_calls,
                             const char *name0, const char *args0)
{
    for (size_t step = 0; step <= 7; step++) {
        result r;
        parse(f, s, step, &r);
        assert_string_equal(r.text.data, text);
        assert_int_equal(r.n_calls, n_calls);
        assert_int_equal(r.n_ends, n_calls);
        assert_int_equal(r.bad_order, 0);
        if (n_calls) {
            assert_string_equal(r.names[0], name0);
            json_t *got = json_loads(args_of(&r, 0), 0, NULL), *want = json_loads(args0, 0, NULL);
            assert_non_null(got);
            assert_true(json_equal(got, want));
            json_decref(got);
            json_decref(want);
        }
        res_fini(&r);
    }
}

static void test_none_passes_through(void **state)
{
    (void)state;
    check_all_splits(SRV_TOOLS_NONE, "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>",
                     "<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>", 0, NULL, NULL);
}

static void test_hermes_basic(void **state)
{
    (void)state;
    check_all_splits(SRV_TOOLS_HERMES,
                     "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                     "{\"city\": \"Paris\", \"units\": {\"c\": [1, \"}\"]}}}\n</tool_call>",
                     "Let me check.\n", 1, "get_weather",
                     "{\"city\": \"Paris\", \"units\": {\"c\": [1, \"}\"]}}");
}

static void test_hermes_two_calls_whitespace_dropped(void **state)
{
    (void)state;
    const char *s = "<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n</tool_call>\n"
                    "<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>\n";
    for (size_t step = 0; step <= 5; step++) {
        result r;
        parse(SRV_TOOLS_HERMES, s, step, &r);
        assert_string_equal(r.text.data, "");
        assert_int_equal(r.n_calls, 2);
        assert_int_equal(r.bad_order, 0);
        assert_string_equal(r.names[0], "a");
        assert_string_equal(r.names[1], "b");
        assert_string_equal(args_of(&r, 0), "{\"x\": 1}");
        assert_string_equal(args_of(&r, 1), "{}");
        res_fini(&r);
    }
}

static void test_hermes_other_key_order(void **state)
{
    (void)state;
    /* arguments first, and arguments as a JSON string: parsed whole */
    check_all_splits(SRV_TOOLS_HERMES,
                     "<tool_call>{\"arguments\": {\"q\": \"hi\"}, \"name\": \"search\"}</tool_call>",
                     "", 1, "search", "{\"q\": \"hi\"}");
    check_all_splits(SRV_TOOLS_HERMES,
                     "<tool_call>{\"name\": \"search\", \"arguments\": \"{\\\"q\\\": 1}\"}</tool_call>",
                     "", 1, "search", "{\"q\": 1}");
}

static void test_hermes_not_a_call(void **state)
{
    (void)state;
    /* bad JSON inside the tags comes out as text, unchanged */
    check_all_splits(SRV_TOOLS_HERMES, "a <tool_call>not json</tool_call> b",
                     "a <tool_call>not json</tool_call> b", 0, NULL, NULL);
    /* a partial marker at the end is text */
    check_all_splits(SRV_TOOLS_HERMES, "x <tool_ca", "x <tool_ca", 0, NULL, NULL);
    /* a '<' that is not a marker */
    check_all_splits(SRV_TOOLS_HERMES, "1 < 2 <b>", "1 < 2 <b>", 0, NULL, NULL);
}

static void test_hermes_unclosed(void **state)
{
    (void)state;
    /* EOS right after the JSON, no closing tag: still a call */
    check_all_splits(SRV_TOOLS_HERMES, "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
                     "", 1, "f", "{\"a\": 1}");
    /* cut off in the middle of the arguments: the call is closed */
    result r;
    parse(SRV_TOOLS_HERMES, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": [1,", 3, &r);
    assert_int_equal(r.n_calls, 1);
    assert_int_equal(r.n_ends, 1);
    res_fini(&r);
}

static void test_llama3(void **state)
{
    (void)state;
    check_all_splits(SRV_TOOLS_LLAMA3,
                     "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", "", 1,
                     "get_weather", "{\"city\": \"Oslo\"}");
    check_all_splits(SRV_TOOLS_LLAMA3,
                     "<|python_tag|>{\"name\": \"f\", \"parameters\": {}}", "", 1, "f", "{}");
    check_all_splits(SRV_TOOLS_LLAMA3, "  Hello {there}", "  Hello {there}", 0, NULL, NULL);
    /* a JSON answer that is not a call stays text */
    check_all_splits(SRV_TOOLS_LLAMA3, "{\"answer\": 42}", "{\"answer\": 42}", 0, NULL, NULL);
    /* two calls separated by ';' */
    result r;
    parse(SRV_TOOLS_LLAMA3, "{\"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", \"parameters\": {\"k\": 2}}", 1, &r);
    assert_int_equal(r.n_calls, 2);
    assert_string_equal(r.names[1], "b");
    assert_string_equal(args_of(&r, 1), "{\"k\": 2}");
    assert_string_equal(r.text.data, "");
    res_fini(&r);
}

static void test_detect(void **state)
{
    (void)state;
    assert_int_equal(srv_tool_format_detect(NULL), SRV_TOOLS_NONE);
    assert_int_equal(srv_tool_format_detect("{{ messages }}"), SRV_TOOLS_NONE);
    assert_int_equal(srv_tool_format_detect("{% if tools %}<tool_call>{% endif %}"), SRV_TOOLS_HERMES);
    assert_int_equal(srv_tool_format_detect("{% if tools %}<|python_tag|>{% endif %}"), SRV_TOOLS_LLAMA3);
    assert_string_equal(srv_tool_format_name(SRV_TOOLS_HERMES), "hermes");
}

static void test_runaway_call(void **state)
{
    (void)state;
    /* a call body over the limit is given up as text, without crashing */
    result r;
    res_init(&r);
    srv_tc *tc = srv_tc_create(SRV_TOOLS_HERMES, sink, &r);
    assert_true(srv_tc_feed(tc, "<tool_call>{\"x\": \"", 18));
    char chunk[4096];
    memset(chunk, 'a', sizeof chunk);
    for (size_t i = 0; i < (SRV_TC_MAX_CALL_BYTES / sizeof chunk) + 2; i++)
        assert_true(srv_tc_feed(tc, chunk, sizeof chunk));
    assert_true(srv_tc_finish(tc));
    assert_int_equal(r.n_calls, 0);
    assert_true(r.text.len > SRV_TC_MAX_CALL_BYTES);
    srv_tc_destroy(tc);
    res_fini(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_none_passes_through),
        cmocka_unit_test(test_hermes_basic),
        cmocka_unit_test(test_hermes_two_calls_whitespace_dropped),
        cmocka_unit_test(test_hermes_other_key_order),
        cmocka_unit_test(test_hermes_not_a_call),
        cmocka_unit_test(test_hermes_unclosed),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_runaway_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
