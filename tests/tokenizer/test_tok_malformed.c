/* test_tok_malformed.c - malformed tokenizer.json: a table of edits to a
 * small valid file (wrong types, unknown component types, bad merges, ids
 * out of range, invalid regexes, unsupported options, limits), each with
 * the status and the JSON path its error must name; plus raw-text cases
 * (empty, not an object, duplicate keys, deep nesting, invalid UTF-8),
 * truncation at every byte, and seeded byte flips. Nothing may crash, and
 * every error names the file. */
#include "tok_test_util.h"

typedef struct bad_case {
    const char *name;
    const char *pointer; /* JSON pointer of the edit */
    const char *value;   /* JSON text; NULL deletes */
    sem_status want;
    const char *in_msg;  /* substring of the error (the path) */
} bad_case;

static const bad_case CASES[] = {
    {"vocab not object", "/model/vocab", "[]", SEM_ECORRUPT, "/model/vocab"},
    {"vocab id negative", "/model/vocab/a", "-1", SEM_ECORRUPT, "/model/vocab/a"},
    {"vocab id huge", "/model/vocab/a", "99999999", SEM_ECORRUPT, "/model/vocab/a"},
    {"vocab id string", "/model/vocab/a", "\"8\"", SEM_ECORRUPT, "/model/vocab/a"},
    {"vocab id real", "/model/vocab/a", "8.5", SEM_ECORRUPT, "/model/vocab/a"},
    {"merge without space", "/model/merges/1", "\"ab\"", SEM_ECORRUPT, "/model/merges/1"},
    {"merge two spaces", "/model/merges/1", "\"a b c\"", SEM_ECORRUPT, "/model/merges/1"},
    {"merge unknown token", "/model/merges/1", "\"a z\"", SEM_ECORRUPT,
     "/model/merges/1: merge token is not in the vocab: \"z\""},
    {"merged token missing", "/model/merges/1", "\"b a\"", SEM_ECORRUPT,
     "merged token is not in the vocab: \"ba\""},
    {"merge ids not strings", "/model/merges/2", "[1, 2]", SEM_ECORRUPT, "/model/merges/2"},
    {"merge triple", "/model/merges/2", "[\"a\", \"b\", \"c\"]", SEM_ECORRUPT, "/model/merges/2"},
    {"merges not array", "/model/merges", "{}", SEM_ECORRUPT, "/model/merges"},
    {"model missing", "/model", NULL, SEM_ECORRUPT, "model"},
    {"model not object", "/model", "7", SEM_ECORRUPT, "/model"},
    {"model WordPiece", "/model/type", "\"WordPiece\"", SEM_EUNSUPPORTED, "/model: model type 'WordPiece'"},
    {"model Unigram", "/model/type", "\"Unigram\"", SEM_EUNSUPPORTED, "Unigram"},
    {"dropout", "/model/dropout", "0.1", SEM_EUNSUPPORTED, "dropout"},
    {"fuse_unk type", "/model/fuse_unk", "\"yes\"", SEM_ECORRUPT, "/model/fuse_unk"},
    {"unk_token type", "/model/unk_token", "3", SEM_ECORRUPT, "/model/unk_token"},
    {"normalizer unknown", "/normalizer", "{\"type\":\"BertNormalizer\"}", SEM_EUNSUPPORTED,
     "/normalizer: normalizer type 'BertNormalizer'"},
    {"normalizer untyped", "/normalizer", "{}", SEM_ECORRUPT, "/normalizer"},
    {"normalizer string", "/normalizer", "\"NFC\"", SEM_ECORRUPT, "/normalizer"},
    {"normalizers not array", "/normalizer/normalizers", "5", SEM_ECORRUPT, "/normalizer/normalizers"},
    {"normalizer bad regex", "/normalizer/normalizers/1/pattern", "{\"Regex\":\"(\"}", SEM_EINVAL,
     "/normalizer/normalizers/1/pattern"},
    {"pattern both kinds", "/normalizer/normalizers/1/pattern", "{\"String\":\" \",\"Regex\":\" \"}",
     SEM_ECORRUPT, "/normalizer/normalizers/1/pattern"},
    {"pattern not string", "/normalizer/normalizers/1/pattern", "{\"String\":5}", SEM_ECORRUPT, "pattern"},
    {"prepend missing", "/normalizer/normalizers/0/prepend", NULL, SEM_ECORRUPT, "/normalizer/normalizers/0"},
    {"pre_tokenizer unknown", "/pre_tokenizer", "{\"type\":\"BertPreTokenizer\"}", SEM_EUNSUPPORTED,
     "/pre_tokenizer: pre-tokenizer type 'BertPreTokenizer'"},
    {"split invalid regex", "/pre_tokenizer",
     "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"((\"},\"behavior\":\"Isolated\",\"invert\":false}",
     SEM_EINVAL, "/pre_tokenizer/pattern: invalid regex"},
    {"split unsupported escape", "/pre_tokenizer",
     "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[\\\\W]\"},\"behavior\":\"Isolated\"}",
     SEM_EUNSUPPORTED, "/pre_tokenizer/pattern"},
    {"split unknown behavior", "/pre_tokenizer",
     "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Sideways\"}", SEM_ECORRUPT,
     "split behavior 'Sideways'"},
    {"split invert type", "/pre_tokenizer",
     "{\"type\":\"Split\",\"pattern\":{\"String\":\" \"},\"behavior\":\"Isolated\",\"invert\":1}",
     SEM_ECORRUPT, "/pre_tokenizer/invert"},
    {"metaspace two chars", "/pre_tokenizer", "{\"type\":\"Metaspace\",\"replacement\":\"ab\"}",
     SEM_ECORRUPT, "/pre_tokenizer/replacement"},
    {"metaspace scheme mismatch", "/pre_tokenizer",
     "{\"type\":\"Metaspace\",\"replacement\":\"_\",\"add_prefix_space\":false,\"prepend_scheme\":\"always\"}",
     SEM_ECORRUPT, "/pre_tokenizer"},
    {"metaspace scheme unknown", "/pre_tokenizer",
     "{\"type\":\"Metaspace\",\"replacement\":\"_\",\"prepend_scheme\":\"sometimes\"}", SEM_ECORRUPT,
     "prepend_scheme"},
    {"sequence item bad", "/pre_tokenizer",
     "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\"},{\"type\":\"Nope\"}]}",
     SEM_EUNSUPPORTED, "/pre_tokenizer/pretokenizers/1"},
    {"decoder unknown", "/decoder", "{\"type\":\"WordPiece\"}", SEM_EUNSUPPORTED, "/decoder"},
    {"strip negative", "/decoder/decoders/3/start", "-1", SEM_ECORRUPT, "/decoder/decoders/3/start"},
    {"strip content long", "/decoder/decoders/3/content", "\"ab\"", SEM_ECORRUPT,
     "/decoder/decoders/3/content"},
    {"decoders not array", "/decoder/decoders", "null", SEM_ECORRUPT, "/decoder/decoders"},
    {"post unknown", "/post_processor", "{\"type\":\"Bogus\"}", SEM_EUNSUPPORTED, "/post_processor"},
    {"template unknown special", "/post_processor/single/0/SpecialToken/id", "\"<x>\"", SEM_ECORRUPT,
     "/post_processor/single/0"},
    {"template bad sequence", "/post_processor/single/1/Sequence/id", "\"C\"", SEM_ECORRUPT,
     "/post_processor/single/1"},
    {"template piece string", "/post_processor/single", "\"<s> $C\"", SEM_ECORRUPT, "/post_processor/single"},
    {"template special id", "/post_processor/special_tokens/<s>/ids/0", "-4", SEM_ECORRUPT,
     "/post_processor/single/0"},
    {"bert sep shape", "/post_processor", "{\"type\":\"BertProcessing\",\"sep\":[\"x\"],\"cls\":[\"y\",1]}",
     SEM_ECORRUPT, "/post_processor"},
    {"added id huge", "/added_tokens/0/id", "5000000", SEM_ECORRUPT, "/added_tokens/0"},
    {"added content missing", "/added_tokens/1/content", NULL, SEM_ECORRUPT, "/added_tokens/1"},
    {"added flag type", "/added_tokens/2/lstrip", "\"no\"", SEM_ECORRUPT, "/added_tokens/2/lstrip"},
    {"added not array", "/added_tokens", "{}", SEM_ECORRUPT, "/added_tokens"},
    {"truncation", "/truncation", "{\"max_length\":5}", SEM_EUNSUPPORTED, "truncation"},
    {"fixed padding", "/padding", "{\"strategy\":{\"Fixed\":8}}", SEM_EUNSUPPORTED, "padding"},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const bad_case *c = &CASES[i];
        json_t *j = tt_tiny_json();
        tt_set(j, c->pointer, c->value);
        tok_tokenizer *t = NULL;
        sem_err err;
        sem_err_clear(&err);
        sem_status st = tt_load_json(j, &t, &err);
        json_decref(j);
        if (st != c->want || !strstr(err.msg, c->in_msg) || strncmp(err.msg, "tokenizer.json: ", 16))
            fail_msg("case '%s': got %s \"%s\", want %s containing \"%s\"", c->name,
                     sem_status_name(st), err.msg, sem_status_name(c->want), c->in_msg);
        assert_null(t);
    }
}

static sem_status load_text(const char *s, size_t n, sem_err *err)
{
    tok_tokenizer *t = NULL;
    sem_status st = tok_load_buffer(s, n, "tokenizer.json", &t, err);
    tok_destroy(t);
    return st;
}

static void test_raw_text(void **state)
{
    (void)state;
    sem_err err;
    assert_int_equal(load_text("", 0, &err), SEM_ECORRUPT);
    assert_int_equal(load_text("[]", 2, &err), SEM_ECORRUPT);
    assert_non_null(strstr(err.msg, "expected a JSON object"));
    assert_int_equal(load_text("{}", 2, &err), SEM_ECORRUPT);
    assert_non_null(strstr(err.msg, "model"));
    /* Duplicate keys: rejected, not "last one wins". */
    buf b;
    buf_init(&b);
    const char *at = strstr(TT_TINY, "\"a\":8,");
    buf_append(&b, TT_TINY, (size_t)(at - TT_TINY));
    buf_append_str(&b, "\"a\":8,\"a\":9,");
    buf_append_str(&b, at + 6);
    assert_int_equal(load_text(b.data, b.len, &err), SEM_ECORRUPT);
    assert_non_null(strstr(err.msg, "duplicate"));
    /* Deep JSON nesting. */
    buf_clear(&b);
    buf_append_str(&b, "{\"model\":");
    for (int i = 0; i < 100000; i++) buf_append(&b, "[", 1);
    assert_int_equal(load_text(b.data, b.len, &err), SEM_ECORRUPT);
    /* Sequence nesting beyond TOK_MAX_NESTING. */
    json_t *j = tt_tiny_json();
    buf_clear(&b);
    for (int i = 0; i < TOK_MAX_NESTING + 4; i++)
        buf_append_str(&b, "{\"type\":\"Sequence\",\"pretokenizers\":[");
    buf_append_str(&b, "{\"type\":\"Digits\"}");
    for (int i = 0; i < TOK_MAX_NESTING + 4; i++) buf_append_str(&b, "]}");
    tt_set(j, "/pre_tokenizer", b.data);
    tok_tokenizer *t = NULL;
    assert_int_equal(tt_load_json(j, &t, &err), SEM_ELIMIT);
    assert_non_null(strstr(err.msg, "/pre_tokenizer/pretokenizers/0/pretokenizers"));
    json_decref(j);
    /* A vocab piece over TOK_MAX_TOKEN_BYTES. */
    j = tt_tiny_json();
    char *big = malloc(TOK_MAX_TOKEN_BYTES + 8);
    memset(big, 'x', TOK_MAX_TOKEN_BYTES + 1);
    big[TOK_MAX_TOKEN_BYTES + 1] = '\0';
    json_object_set_new(json_object_get(json_object_get(j, "model"), "vocab"), big, json_integer(16));
    free(big);
    assert_int_equal(tt_load_json(j, &t, &err), SEM_ELIMIT);
    json_decref(j);
    /* Invalid UTF-8 and NUL bytes inside the JSON text. */
    buf_clear(&b);
    buf_append(&b, TT_TINY, sizeof TT_TINY - 1);
    b.data[strstr(b.data, "\"b\":9") - b.data + 1] = (char)0xFF;
    assert_int_equal(load_text(b.data, b.len, &err), SEM_ECORRUPT);
    b.data[strstr(b.data, "\"c\":10") - b.data + 1] = '\0';
    assert_int_equal(load_text(b.data, b.len, &err), SEM_ECORRUPT);
    /* The size limit is checked before a byte is read. */
    assert_int_equal(load_text("{}", TOK_MAX_FILE_BYTES + 1, &err), SEM_ELIMIT);
    /* "model" spelled with an escape: the fast scan misses it, the jansson
     * fallback loads the same tokenizer. */
    buf_clear(&b);
    at = strstr(TT_TINY, "\"model\":");
    buf_append(&b, TT_TINY, (size_t)(at - TT_TINY));
    buf_append_str(&b, "\"mod\\u0065l\":");
    buf_append_str(&b, at + 8);
    tok_tokenizer *t2 = NULL;
    assert_int_equal(tok_load_buffer(b.data, b.len, "tokenizer.json", &t2, &err), SEM_OK);
    tok_ids v;
    tok_ids_init(&v);
    tt_encode(t2, "abc ab<s>", true, &v);
    tt_assert_ids(&v, (tok_id[]){1, 15, 14, 1}, 4);
    tok_ids_fini(&v);
    tok_destroy(t2);
    /* Errors inside the vocab carry the line and column of the file. */
    buf_clear(&b);
    at = strstr(TT_TINY, "\"b\":9");
    buf_append(&b, TT_TINY, (size_t)(at - TT_TINY));
    buf_append_str(&b, "\n\"b\":9x");
    buf_append_str(&b, at + 5);
    assert_int_equal(load_text(b.data, b.len, &err), SEM_ECORRUPT);
    assert_non_null(strstr(err.msg, "/model/vocab: invalid JSON at line 2"));
    buf_fini(&b);
    /* A file that does not exist. */
    assert_int_equal(tok_load_file("/nonexistent/tokenizer.json", &t, &err), SEM_ENOTFOUND);
    assert_int_equal(tok_load_dir("/nonexistent", &t, &err), SEM_ENOTFOUND);
}

/* Every proper prefix of the file is invalid JSON: an error, never a crash. */
static void test_truncation_every_byte(void **state)
{
    (void)state;
    size_t n = sizeof TT_TINY - 1;
    for (size_t i = 0; i < n; i++) {
        sem_err err;
        sem_status st = load_text(TT_TINY, i, &err);
        if (st != SEM_ECORRUPT || strncmp(err.msg, "tokenizer.json: ", 16))
            fail_msg("truncated at %zu: %s %s", i, sem_status_name(st), err.msg);
    }
    sem_err err;
    assert_int_equal(load_text(TT_TINY, n, &err), SEM_OK);
}

/* Seeded byte flips: any status, no crash; a file that still loads must
 * still encode and decode. */
static void test_byte_flips(void **state)
{
    (void)state;
    size_t n = sizeof TT_TINY - 1;
    char *copy = malloc(n);
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    size_t loaded = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(copy, TT_TINY, n);
        int flips = 1 + it % 3;
        for (int f = 0; f < flips; f++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            copy[rng % n] = (char)(rng >> 32);
        }
        tok_tokenizer *t = NULL;
        sem_err err;
        if (tok_load_buffer(copy, n, "tokenizer.json", &t, &err) != SEM_OK) {
            assert_int_equal(strncmp(err.msg, "tokenizer.json: ", 16), 0);
            continue;
        }
        loaded++;
        tok_ids v;
        tok_ids_init(&v);
        const char *texts[] = {"abc ab", "<s>A\xE2\x82\xAC zz</s>", "", "  \t\n"};
        for (size_t k = 0; k < 4; k++) {
            v.len = 0;
            sem_status st = tok_encode(t, NULL, texts[k], strlen(texts[k]), true, &v, &err);
            assert_true(st == SEM_OK || st == SEM_EINVAL);
            buf out;
            buf_init(&out);
            assert_int_equal(tok_decode(t, v.data, v.len, false, &out, &err), SEM_OK);
            buf_fini(&out);
        }
        tok_ids_fini(&v);
        tok_destroy(t);
    }
    assert_true(loaded > 0);
    free(copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_raw_text),
        cmocka_unit_test(test_truncation_every_byte),
        cmocka_unit_test(test_byte_flips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
