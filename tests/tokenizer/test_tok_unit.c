/* test_tok_unit.c - the tokenizer door, case by case: BPE merges, byte
 * fallback and unk fusing, added tokens, templates, decode, the streaming
 * detokenizer (held bytes, leading-space continuation), the configuration
 * files of real model directories, limits, and (white-box, through
 * tok_int.h) Rust's lossy UTF-8 repair and the Oniguruma -> PCRE2 regex
 * translation. Parity with HF on large corpora is test_tok_parity.c. */
#include "tokenizer/tok_int.h"

#include "tok_test_util.h"

/* ---- tiny tokenizer --------------------------------------------------------- */

static void test_bpe_merges(void **state)
{
    (void)state;
    tok_tokenizer *t = tt_tiny();
    tok_ids v;
    tok_ids_init(&v);
    tt_encode(t, "abc", false, &v);
    tt_assert_ids(&v, (tok_id[]){15}, 1); /* ▁ a b c -> ▁a b c -> ▁ab c -> ▁abc */
    tt_encode(t, "abc ab", true, &v);
    tt_assert_ids(&v, (tok_id[]){1, 15, 14}, 3);
    tt_encode(t, "", true, &v);
    tt_assert_ids(&v, (tok_id[]){1}, 1);
    tt_encode(t, "", false, &v);
    assert_int_equal(v.len, 0);
    tok_ids_fini(&v);
    tok_destroy(t);
}

static void test_byte_fallback_and_unk(void **state)
{
    (void)state;
    tok_tokenizer *t = tt_tiny();
    tok_ids v;
    tok_ids_init(&v);
    tt_encode(t, "A\xE2\x82\xAC", false, &v); /* A€: <0x41> then the three bytes of € */
    tt_assert_ids(&v, (tok_id[]){7, 3, 4, 5, 6}, 5);
    tt_encode(t, "zzyb", false, &v); /* z, z, y have no byte token: one fused <unk> */
    tt_assert_ids(&v, (tok_id[]){7, 0, 9}, 3);
    buf out;
    buf_init(&out);
    sem_err err;
    tok_id ids[] = {3, 4, 5, 6, 4, 8};
    assert_int_equal(tok_decode(t, ids, 6, false, &out, &err), SEM_OK);
    /* 41 E2 82 AC E2: not valid UTF-8 as a run -> one U+FFFD per byte (HF). */
    assert_string_equal(out.data, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "a");
    buf_clear(&out);
    assert_int_equal(tok_decode(t, ids, 4, false, &out, &err), SEM_OK);
    assert_string_equal(out.data, "A\xE2\x82\xAC");
    buf_fini(&out);
    tok_ids_fini(&v);
    tok_destroy(t);
}

static void test_added_tokens_and_prepend(void **state)
{
    (void)state;
    tok_tokenizer *t = tt_tiny();
    tok_ids v;
    tok_ids_init(&v);
    /* The Prepend normalizer runs on each segment between added tokens. */
    tt_encode(t, "ab<s>ab</s>", false, &v);
    tt_assert_ids(&v, (tok_id[]){14, 1, 14, 2}, 4);
    tt_encode(t, "<s", false, &v);
    assert_true(v.len > 0 && v.data[0] != 1);
    buf out;
    buf_init(&out);
    sem_err err;
    tok_id ids[] = {1, 14, 2, 13};
    assert_int_equal(tok_decode(t, ids, 4, false, &out, &err), SEM_OK);
    assert_string_equal(out.data, "<s> ab</s> a");
    buf_clear(&out);
    assert_int_equal(tok_decode(t, ids, 4, true, &out, &err), SEM_OK);
    assert_string_equal(out.data, "ab a"); /* Strip drops the first space */
    assert_true(tok_is_special(t, 1));
    assert_false(tok_is_special(t, 14));
    buf_fini(&out);
    tok_ids_fini(&v);
    tok_destroy(t);
}

static void test_pair_template(void **state)
{
    (void)state;
    tok_tokenizer *t = tt_tiny();
    tok_ids v;
    tok_ids_init(&v);
    sem_err err;
    assert_int_equal(tok_encode_pair(t, NULL, "ab", 2, "c", 1, true, &v, &err), SEM_OK);
    tt_assert_ids(&v, (tok_id[]){1, 14, 7, 10}, 4);
    v.len = 0;
    assert_int_equal(tok_encode_pair(t, NULL, "ab", 2, "c", 1, false, &v, &err), SEM_OK);
    tt_assert_ids(&v, (tok_id[]){14, 7, 10}, 3);
    tok_ids_fini(&v);
    tok_destroy(t);
}

static void test_vocab_accessors(void **state)
{
    (void)state;
    tok_tokenizer *t = tt_tiny();
    assert_int_equal(tok_vocab_size(t), 16);
    size_t n;
    const char *p = tok_id_to_piece(t, 12, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "abc", 3);
    assert_null(tok_id_to_piece(t, 16, &n));
    assert_null(tok_id_to_piece(t, -1, &n));
    tok_id id;
    assert_true(tok_piece_to_id(t, "</s>", 4, &id));
    assert_int_equal(id, 2);
    assert_false(tok_piece_to_id(t, "zz", 2, &id));
    tok_destroy(t);
}

static void test_limits_and_invalid_input(void **state)
{
    (void)state;
    tok_tokenizer *t = tt_tiny();
    tok_ids v;
    tok_ids_init(&v);
    tok_ids_push(&v, 42);
    sem_err err;
    assert_int_equal(tok_encode(t, NULL, "a\xC3(", 3, false, &v, &err), SEM_EINVAL);
    assert_non_null(strstr(err.msg, "byte 1"));
    assert_int_equal(tok_encode(t, NULL, "\xED\xA0\x80", 3, false, &v, &err), SEM_EINVAL); /* surrogate */
    assert_int_equal(tok_encode(t, NULL, "\xC0\x80", 2, false, &v, &err), SEM_EINVAL);    /* overlong */
    /* The length is checked before a byte is read. */
    assert_int_equal(tok_encode(t, NULL, "a", TOK_MAX_INPUT_BYTES + 1, false, &v, &err), SEM_ELIMIT);
    assert_int_equal(v.len, 1); /* unchanged on failure */
    assert_int_equal(v.data[0], 42);
    tok_ids_fini(&v);
    tok_destroy(t);
}

static void test_encoder_reuse_and_cache_reset(void **state)
{
    (void)state;
    tok_tokenizer *t = tt_tiny();
    tok_encoder *enc;
    sem_err err;
    assert_int_equal(tok_encoder_create(t, &enc, &err), SEM_OK);
    tok_ids a, b;
    tok_ids_init(&a);
    tok_ids_init(&b);
    char text[64];
    /* More distinct words than the cache holds: it resets and stays right. */
    for (int i = 0; i < TOK_CACHE_MAX_ENTRIES + 500; i++) {
        snprintf(text, sizeof text, "%c%c%cab%d", 'a' + i % 3, 'a' + (i / 3) % 3, 'a' + (i / 9) % 3, i);
        a.len = b.len = 0;
        assert_int_equal(tok_encode(t, enc, text, strlen(text), true, &a, &err), SEM_OK);
        if (i % 97 == 0) {
            assert_int_equal(tok_encode(t, NULL, text, strlen(text), true, &b, &err), SEM_OK);
            assert_int_equal(a.len, b.len);
            assert_memory_equal(a.data, b.data, a.len * sizeof(tok_id));
        }
    }
    tok_ids_fini(&a);
    tok_ids_fini(&b);
    tok_encoder_destroy(enc);
    tok_destroy(t);
}

/* ---- streaming ------------------------------------------------------------------ */

static void stream_all(const tok_tokenizer *t, const tok_id *prefix, size_t np, const tok_id *ids,
                       size_t n, buf *out, size_t *n_nonempty_pushes)
{
    tok_stream *s;
    sem_err err;
    assert_int_equal(tok_stream_create(t, prefix, np, false, &s, &err), SEM_OK);
    *n_nonempty_pushes = 0;
    for (size_t i = 0; i < n; i++) {
        size_t before = out->len;
        assert_int_equal(tok_stream_push(s, ids[i], out, &err), SEM_OK);
        if (out->len > before) (*n_nonempty_pushes)++;
    }
    assert_int_equal(tok_stream_finish(s, out, &err), SEM_OK);
    tok_stream_destroy(s);
}

static void test_stream_leading_space(void **state)
{
    (void)state;
    tok_tokenizer *t = tt_tiny();
    buf out;
    buf_init(&out);
    size_t pushes;
    /* First token of a text: decode() drops the leading space ... */
    stream_all(t, NULL, 0, (tok_id[]){14, 13}, 2, &out, &pushes);
    assert_string_equal(out.data, "ab a");
    /* ... a continuation after a prompt keeps it. */
    buf_clear(&out);
    stream_all(t, (tok_id[]){1, 14}, 2, (tok_id[]){13, 15}, 2, &out, &pushes);
    assert_string_equal(out.data, " a abc");
    assert_int_equal(pushes, 2);
    buf_fini(&out);
    tok_destroy(t);
}

static void test_stream_holds_partial_bytes(void **state)
{
    (void)state;
    tok_tokenizer *t = tt_tiny();
    buf out;
    buf_init(&out);
    size_t pushes;
    /* € as three byte pieces: nothing until the last one. */
    stream_all(t, (tok_id[]){14}, 1, (tok_id[]){4, 5, 6, 8}, 4, &out, &pushes);
    assert_string_equal(out.data, "\xE2\x82\xAC" "a");
    assert_int_equal(pushes, 2);
    /* A character cut off at the end comes out as U+FFFD at finish. */
    buf_clear(&out);
    stream_all(t, NULL, 0, (tok_id[]){8, 4, 5}, 3, &out, &pushes);
    assert_string_equal(out.data, "a\xEF\xBF\xBD\xEF\xBF\xBD");
    /* A prompt that ends inside a character: the stream completes it. */
    buf_clear(&out);
    stream_all(t, (tok_id[]){8, 4, 5}, 3, (tok_id[]){6, 9}, 2, &out, &pushes);
    assert_string_equal(out.data, "\xE2\x82\xAC" "b");
    buf_fini(&out);
    tok_destroy(t);
}

static void test_stream_garbage_is_bounded(void **state)
{
    (void)state;
    tok_tokenizer *t = tt_tiny();
    tok_stream *s;
    sem_err err;
    buf out;
    buf_init(&out);
    assert_int_equal(tok_stream_create(t, NULL, 0, true, &s, &err), SEM_OK);
    for (int i = 0; i < 1000; i++) assert_int_equal(tok_stream_push(s, 4, &out, &err), SEM_OK);
    assert_int_equal(tok_stream_finish(s, &out, &err), SEM_OK);
    assert_true(out.len >= 3 * 1000 - 3 * 64); /* flushed along the way */
    tok_stream_destroy(s);
    buf_fini(&out);
    tok_destroy(t);
}

/* ---- real model directories ------------------------------------------------------- */

static tok_tokenizer *load_real_dir(const char *name)
{
    char dir[1024];
    tok_tokenizer *t;
    sem_err err;
    if (tok_load_dir(tt_real(name, dir, sizeof dir), &t, &err) != SEM_OK) fail_msg("%s: %s", name, err.msg);
    return t;
}

static void test_config_llama2_and_deepseek(void **state)
{
    (void)state;
    if (!tt_have_real()) skip();
    tok_tokenizer *t = load_real_dir("llama2");
    assert_string_equal(tok_special_text(t, TOK_SPECIAL_BOS), "<s>");
    assert_string_equal(tok_special_text(t, TOK_SPECIAL_UNK), "<unk>");
    assert_null(tok_special_text(t, TOK_SPECIAL_PAD));
    assert_int_equal(tok_bos_id(t), 1);
    assert_true(tok_is_eos(t, 2));
    assert_int_equal(tok_config_template_count(t), 0);
    assert_null(tok_config_template_find(t, NULL));
    tok_destroy(t);

    /* DeepSeek: AddedToken objects in the config, add_bos_token with a
     * ByteLevel post-processor -> BOS added like transformers does, while
     * tokenizer.json alone (HF tokenizers) adds nothing. */
    t = load_real_dir("deepseek_v3");
    assert_int_equal(tok_bos_id(t), 0);
    const tok_id *eos;
    assert_int_equal(tok_eos_ids(t, &eos), 1);
    assert_int_equal(eos[0], 1);
    tok_ids v;
    tok_ids_init(&v);
    tt_encode(t, "hi", true, &v);
    assert_int_equal(v.data[0], 0);
    size_t with_bos = v.len;
    tt_encode(t, "hi", false, &v);
    assert_int_equal(v.len + 1, with_bos);
    assert_non_null(tok_config_template_find(t, "default"));
    tok_destroy(t);
    char path[1100], dir[1024];
    snprintf(path, sizeof path, "%s/tokenizer.json", tt_real("deepseek_v3", dir, sizeof dir));
    sem_err err;
    assert_int_equal(tok_load_file(path, &t, &err), SEM_OK);
    tt_encode(t, "hi", true, &v);
    assert_int_equal(v.len + 1, with_bos);
    assert_int_equal(tok_bos_id(t), -1);
    tok_ids_fini(&v);
    tok_destroy(t);
}

static void test_config_qwen3_llama3(void **state)
{
    (void)state;
    if (!tt_have_real()) skip();
    tok_tokenizer *t = load_real_dir("qwen3");
    assert_null(tok_special_text(t, TOK_SPECIAL_BOS));
    assert_int_equal(tok_bos_id(t), -1);
    assert_string_equal(tok_special_text(t, TOK_SPECIAL_EOS), "<|im_end|>");
    assert_true(tok_is_eos(t, 151645));
    assert_int_equal(tok_vocab_size(t), 151669);
    assert_true(tok_is_special(t, 151644));
    assert_false(tok_is_special(t, 151657)); /* <tool_call> is added, not special */
    const char *name;
    assert_non_null(tok_config_template(t, 0, &name));
    assert_string_equal(name, "default");
    assert_non_null(strstr(tok_config_template_find(t, NULL), "im_start"));
    tok_destroy(t);
    t = load_real_dir("llama3");
    assert_int_equal(tok_bos_id(t), 128000);
    assert_true(tok_is_eos(t, 128001));
    tok_destroy(t);
}

static void test_config_synthetic(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char p[512];
    sem_err err;
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    assert_int_equal(fs_write_atomic(p, TT_TINY, sizeof TT_TINY - 1, &err), SEM_OK);
    const char *cfg = "{\"bos_token\":{\"content\":\"<s>\",\"lstrip\":false},\"eos_token\":\"</s>\","
                      "\"chat_template\":[{\"name\":\"default\",\"template\":\"D\"},"
                      "{\"name\":\"tool_use\",\"template\":\"T\"}]}";
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    assert_int_equal(fs_write_atomic(p, cfg, strlen(cfg), &err), SEM_OK);
    const char *gen = "{\"bos_token_id\":1,\"eos_token_id\":[13,2]}";
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    assert_int_equal(fs_write_atomic(p, gen, strlen(gen), &err), SEM_OK);
    tok_tokenizer *t;
    assert_int_equal(tok_load_dir(dir, &t, &err), SEM_OK);
    const tok_id *eos;
    assert_int_equal(tok_eos_ids(t, &eos), 2); /* 13, 2 (</s> already listed) */
    assert_int_equal(eos[0], 13);
    assert_int_equal(eos[1], 2);
    assert_int_equal(tok_bos_id(t), 1);
    assert_string_equal(tok_config_template_find(t, "tool_use"), "T");
    assert_string_equal(tok_config_template_find(t, NULL), "D");
    assert_null(tok_config_template_find(t, "nope"));
    assert_int_equal(tok_config_template_count(t), 2);
    tok_destroy(t);
    /* Broken config files are errors that name the file and the path. */
    const char *bad = "{\"bos_token\":5}";
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    assert_int_equal(fs_write_atomic(p, bad, strlen(bad), &err), SEM_OK);
    assert_int_equal(tok_load_dir(dir, &t, &err), SEM_ECORRUPT);
    if (!strstr(err.msg, "tokenizer_config.json: /bos_token")) fail_msg("%s", err.msg);
    bad = "{\"chat_template\":[{\"template\":\"x\"}]}";
    assert_int_equal(fs_write_atomic(p, bad, strlen(bad), &err), SEM_OK);
    assert_int_equal(tok_load_dir(dir, &t, &err), SEM_ECORRUPT);
    assert_non_null(strstr(err.msg, "/chat_template/0"));
    bad = "{\"eos_token_id\":[1,-5]}";
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    assert_int_equal(fs_write_atomic(p, "{}", 2, &err), SEM_OK);
    snprintf(p, sizeof p, "%s/generation_config.json", dir);
    assert_int_equal(fs_write_atomic(p, bad, strlen(bad), &err), SEM_OK);
    assert_int_equal(tok_load_dir(dir, &t, &err), SEM_ECORRUPT);
    assert_non_null(strstr(err.msg, "generation_config.json: /eos_token_id"));
    tu_rmrf(dir);
    free(dir);
}

/* add_bos_token/add_eos_token build a template when tokenizer.json has none. */
static void test_config_add_flags(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char p[512];
    sem_err err;
    json_t *j = tt_tiny_json();
    tt_set(j, "/post_processor", "null");
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    assert_int_equal(fs_write_atomic(p, s, strlen(s), &err), SEM_OK);
    free(s);
    const char *cfg = "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"add_bos_token\":true,"
                      "\"add_eos_token\":true}";
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    assert_int_equal(fs_write_atomic(p, cfg, strlen(cfg), &err), SEM_OK);
    tok_tokenizer *t;
    assert_int_equal(tok_load_dir(dir, &t, &err), SEM_OK);
    tok_ids v;
    tok_ids_init(&v);
    tt_encode(t, "ab", true, &v);
    tt_assert_ids(&v, (tok_id[]){1, 14, 2}, 3);
    v.len = 0;
    assert_int_equal(tok_encode_pair(t, NULL, "ab", 2, "c", 1, true, &v, &err), SEM_OK);
    tt_assert_ids(&v, (tok_id[]){1, 14, 2, 1, 7, 10, 2}, 7);
    tok_ids_fini(&v);
    tok_destroy(t);
    cfg = "{\"add_bos_token\":true}"; /* but no bos_token */
    assert_int_equal(fs_write_atomic(p, cfg, strlen(cfg), &err), SEM_OK);
    assert_int_equal(tok_load_dir(dir, &t, &err), SEM_ECORRUPT);
    assert_non_null(strstr(err.msg, "add_bos_token"));
    tu_rmrf(dir);
    free(dir);
}

/* ---- white-box: UTF-8 repair and regex translation -------------------------------- */

static void test_lossy_utf8_like_rust(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        size_t n;
        const char *out;
    } cases[] = {
        {"abc", 3, "abc"},
        {"\xE2\x82", 2, "\xEF\xBF\xBD"},                 /* truncated 3-byte: one U+FFFD */
        {"\xE2\x82" "A", 3, "\xEF\xBF\xBD" "A"},
        {"\xF0\x9F\x98", 3, "\xEF\xBF\xBD"},
        {"\xC0\xAF", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},      /* C0 never starts a sequence */
        {"\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* surrogate */
        {"\xF4\x90\x80\x80", 4, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"},
        {"\xFF" "a\x80", 3, "\xEF\xBF\xBD" "a\xEF\xBF\xBD"},
        {"\xE0\xA0\x80", 3, "\xE0\xA0\x80"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf b;
        buf_init(&b);
        assert_true(tok_utf8_append_lossy(&b, cases[i].in, cases[i].n));
        assert_string_equal(b.data, cases[i].out);
        buf_fini(&b);
    }
}

static void regex_matches(const char *re, const char *text, const char *want)
{
    tok_pattern p;
    sem_err err;
    if (tok_pattern_regex(&p, re, strlen(re), &err) != SEM_OK) fail_msg("%s: %s", re, err.msg);
    tok_spans sp = {0};
    assert_int_equal(tok_pattern_find(&p, NULL, text, strlen(text), &sp, &err), SEM_OK);
    buf got;
    buf_init(&got);
    for (size_t i = 0; i < sp.n; i++)
        buf_printf(&got, "%s[%.*s]", i ? "" : "", (int)(sp.v[i].end - sp.v[i].start), text + sp.v[i].start);
    buf_append(&got, "", 0);
    if (strcmp(got.data, want)) fail_msg("regex %s on '%s': got %s want %s", re, text, got.data, want);
    buf_fini(&got);
    free(sp.v);
    tok_pattern_fini(&p);
}

static void test_regex_translation(void **state)
{
    (void)state;
    regex_matches("\\s+", "a \xE1\xA0\x8E b", "[ ][ ]");        /* U+180E is not \s */
    regex_matches("\\s", "\xC2\x85\xC2\xA0\xE3\x80\x80", "[\xC2\x85][\xC2\xA0][\xE3\x80\x80]");
    regex_matches("\\w+", "e\xCC\x81t\xC3\xA9 x_1", "[e\xCC\x81t\xC3\xA9][x_1]"); /* marks are word */
    regex_matches("\\bx", "ax x \xCC\x81x", "[x]");
    regex_matches("\\h+", "zz0fA9g", "[0fA9]");                   /* Oniguruma: hex digit */
    regex_matches("\\u0041+", "xAAy", "[AA]");
    regex_matches("[\\s\\d]+", "a1 2b", "[1 2]");
    regex_matches("(?i:'s|'t)", "IT'S it's", "['S]['s]");
    regex_matches("^a", "a\na", "[a][a]");                        /* Ruby: ^ is a line anchor */
    regex_matches("x*", "axxb", "[][xx][]");                      /* empty matches as HF */
    tok_pattern p;
    sem_err err;
    /* A match that outgrows PCRE2's default JIT stack gets a larger one. */
    assert_int_equal(tok_pattern_regex(&p, "(?:a|bb)*c", 10, &err), SEM_OK);
    buf big;
    buf_init(&big);
    for (int i = 0; i < 40000; i++) buf_append(&big, "abb", 3);
    buf_append(&big, "c", 1);
    tok_tokenizer *t = tt_tiny();
    tok_encoder *enc;
    assert_int_equal(tok_encoder_create(t, &enc, &err), SEM_OK);
    tok_spans sp = {0};
    assert_int_equal(tok_pattern_find(&p, enc, big.data, big.len, &sp, &err), SEM_OK);
    assert_int_equal(sp.n, 1);
    assert_int_equal(sp.v[0].end - sp.v[0].start, big.len);
    free(sp.v);
    tok_encoder_destroy(enc);
    tok_destroy(t);
    buf_fini(&big);
    tok_pattern_fini(&p);
    assert_int_equal(tok_pattern_regex(&p, "(", 1, &err), SEM_EINVAL);
    assert_int_equal(tok_pattern_regex(&p, "[\\W]", 4, &err), SEM_EUNSUPPORTED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bpe_merges),
        cmocka_unit_test(test_byte_fallback_and_unk),
        cmocka_unit_test(test_added_tokens_and_prepend),
        cmocka_unit_test(test_pair_template),
        cmocka_unit_test(test_vocab_accessors),
        cmocka_unit_test(test_limits_and_invalid_input),
        cmocka_unit_test(test_encoder_reuse_and_cache_reset),
        cmocka_unit_test(test_stream_leading_space),
        cmocka_unit_test(test_stream_holds_partial_bytes),
        cmocka_unit_test(test_stream_garbage_is_bounded),
        cmocka_unit_test(test_config_llama2_and_deepseek),
        cmocka_unit_test(test_config_qwen3_llama3),
        cmocka_unit_test(test_config_synthetic),
        cmocka_unit_test(test_config_add_flags),
        cmocka_unit_test(test_lossy_utf8_like_rust),
        cmocka_unit_test(test_regex_translation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
