/* fuzz_pretokenizer.c - fuzz target for tokenizer.json loading and the
 * normalizer / pre-tokenizer / decoder pipeline with arbitrary patterns:
 *   mode 0: the input is a whole tokenizer.json; if it loads, a few texts
 *           are encoded and decoded;
 *   mode 1: the input is [selector][pattern \xFF text]: the pattern becomes
 *           the Regex (or String) of a Split pre-tokenizer and a Replace
 *           normalizer, combined with Metaspace / Digits / ByteLevel /
 *           WhitespaceSplit stages chosen by the selector, inside a small
 *           byte-fallback BPE; then the text is encoded, decoded, streamed.
 * Errors are fine (a bad regex, a match limit); crashes, sanitizer reports,
 * hangs and leaks are bugs.
 *
 * Built as a libFuzzer target (SEM_FUZZ=ON, clang) and as a plain driver
 * under FUZZ_STANDALONE for ctest (tok_fuzz_driver.h).
 *
 * Thread: single-threaded.
 */
#include "tokenizer/tokenizer.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A small byte-fallback BPE: every byte has a <0xNN> token. */
static json_t *base_tokenizer(void)
{
    json_t *vocab = json_object(), *merges = json_array();
    json_object_set_new(vocab, "<unk>", json_integer(0));
    json_object_set_new(vocab, "<s>", json_integer(1));
    json_object_set_new(vocab, "</s>", json_integer(2));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        json_object_set_new(vocab, name, json_integer(3 + b));
    }
    const char *pieces[] = {"\xE2\x96\x81", "a", "b", "c", " ", "ab", "abc", "\xE2\x96\x81" "a", "1", "12"};
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++)
        json_object_set_new(vocab, pieces[i], json_integer(259 + (json_int_t)i));
    json_array_append_new(merges, json_string("a b"));
    json_array_append_new(merges, json_string("ab c"));
    json_array_append_new(merges, json_string("\xE2\x96\x81 a"));
    json_array_append_new(merges, json_string("1 2"));
    return json_pack("{s:s, s:[{s:i, s:s, s:b, s:b}], s:o, s:{s:s, s:s, s:b, s:b, s:o, s:o}}",
                     "version", "1.0", "added_tokens", "id", 1, "content", "<s>", "special", 1,
                     "normalized", 0, "decoder",
                     json_pack("{s:s, s:[{s:s}, {s:s}, {s:s, s:{s:s}, s:s}]}", "type", "Sequence",
                               "decoders", "type", "ByteFallback", "type", "Fuse", "type", "Replace",
                               "pattern", "String", "\xE2\x96\x81", "content", " "),
                     "model", "type", "BPE", "unk_token", "<unk>", "byte_fallback", 1, "fuse_unk", 1,
                     "vocab", vocab, "merges", merges);
}

static const char *const TEXTS[] = {"abc ab 12 x", "  \t\n<s>abc</s> \xE2\x82\xAC\xF0\x9F\x98\x80",
                                    "", "e\xCC\x81 123456 \xE4\xB8\xAD"};

static void exercise(const tok_tokenizer *t, const char *s, size_t n)
{
    tok_ids ids;
    tok_ids_init(&ids);
    sem_err err;
    sem_status rc = tok_encode(t, NULL, s, n, true, &ids, &err);
    if (rc != SEM_OK) {
        if (rc != SEM_EINVAL && rc != SEM_ELIMIT) abort();
        tok_ids_fini(&ids);
        return;
    }
    buf out;
    buf_init(&out);
    if (tok_decode(t, ids.data, ids.len, true, &out, &err) != SEM_OK) abort();
    tok_stream *st;
    if (tok_stream_create(t, ids.data, ids.len / 2, false, &st, &err) != SEM_OK) abort();
    for (size_t i = ids.len / 2; i < ids.len; i++)
        if (tok_stream_push(st, ids.data[i], &out, &err) != SEM_OK) abort();
    if (tok_stream_finish(st, &out, &err) != SEM_OK) abort();
    tok_stream_destroy(st);
    buf_fini(&out);
    tok_ids_fini(&ids);
}

static void run_json(const uint8_t *d, size_t n)
{
    tok_tokenizer *t;
    sem_err err;
    if (tok_load_buffer((const char *)d, n, "fuzz.json", &t, &err) != SEM_OK) return;
    for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) exercise(t, TEXTS[i], strlen(TEXTS[i]));
    tok_destroy(t);
}

static json_t *split_stage(json_t *pattern, unsigned sel)
{
    static const char *const behaviors[] = {"Removed", "Isolated", "MergedWithPrevious",
                                            "MergedWithNext", "Contiguous"};
    return json_pack("{s:s, s:o, s:s, s:b}", "type", "Split", "pattern", pattern, "behavior",
                     behaviors[sel % 5], "invert", (int)((sel >> 3) & 1));
}

static void run_pipeline(unsigned sel, const uint8_t *d, size_t n)
{
    const uint8_t *sep = memchr(d, 0xFF, n);
    size_t pl = sep ? (size_t)(sep - d) : n;
    const char *text = sep ? (const char *)sep + 1 : "";
    size_t tl = sep ? n - pl - 1 : 0;
    json_t *pat = json_pack("{s:s%}", (sel & 0x10) ? "String" : "Regex", (const char *)d, pl);
    if (!pat) return; /* not UTF-8: jansson refuses it, as a file would be */
    json_t *stages = json_array();
    if (sel & 0x20) json_array_append_new(stages, json_pack("{s:s, s:b}", "type", "Digits",
                                                             "individual_digits", (int)(sel & 1)));
    json_array_append_new(stages, split_stage(json_deep_copy(pat), sel));
    if (sel & 0x40) json_array_append_new(stages, json_pack("{s:s}", "type", "WhitespaceSplit"));
    if (sel & 0x80)
        json_array_append_new(stages, json_pack("{s:s, s:s, s:s, s:b}", "type", "Metaspace", "replacement",
                                                "\xE2\x96\x81", "prepend_scheme",
                                                (sel & 2) ? "first" : "always", "split", (int)(sel & 4)));
    else
        json_array_append_new(stages, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space",
                                                (int)(sel & 2), "trim_offsets", 0, "use_regex", (int)(sel & 4)));
    json_t *tj = base_tokenizer();
    json_object_set_new(tj, "pre_tokenizer", json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", stages));
    json_object_set_new(tj, "normalizer",
                        json_pack("{s:s, s:[{s:s}, {s:s, s:o, s:s}]}", "type", "Sequence", "normalizers",
                                  "type", (sel & 8) ? "NFKC" : "NFC", "type", "Replace", "pattern", pat,
                                  "content", "_"));
    char *js = json_dumps(tj, JSON_COMPACT);
    json_decref(tj);
    tok_tokenizer *t;
    sem_err err;
    if (js && tok_load_buffer(js, strlen(js), "fuzz.json", &t, &err) == SEM_OK) {
        exercise(t, text, tl);
        for (size_t i = 0; i < sizeof TEXTS / sizeof TEXTS[0]; i++) exercise(t, TEXTS[i], strlen(TEXTS[i]));
        tok_destroy(t);
    }
    free(js);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2 || size > (1u << 16)) return 0;
    if (data[0] & 1) run_pipeline(data[1], data + 2, size - 2);
    else run_json(data + 1, size - 1);
    return 0;
}

#ifdef FUZZ_STANDALONE
#include "tok_fuzz_driver.h"

static void add(fz_bytes **seeds, size_t *n, uint8_t mode, uint8_t sel, const char *body)
{
    size_t len = strlen(body);
    uint8_t *b = malloc(len + 2);
    if (!b) abort();
    b[0] = mode;
    b[1] = sel;
    memcpy(b + 2, body, len);
    fz_add_seed(seeds, n, b, len + 2);
    free(b);
}

static void fuzz_seeds(fz_bytes **seeds, size_t *n)
{
    static const char *const pipelines[] = {
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
        "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+\xFFHello  world's 123\n\n",
        "\\p{N}{1,3}\xFF" "1234567 ab",
        "[\xE4\xB8\x80-\xE9\xBE\xA5\xE3\x81\x80-\xE3\x82\x9F]+\xFF\xE4\xB8\xAD\xE6\x96\x87x",
        " \xFF" "a b  c",
        "x*\xFFxxaxx",
        "\\b\xFF" "ab cd",
        "\\w+|[^\\w\\s]+\xFF" "a.b, c!",
        "(a|b)*c\xFF" "ababababababababababababababx",
        "\\s+\xFF\xC2\xA0\xE3\x80\x80 \t\n",
    };
    for (size_t i = 0; i < sizeof pipelines / sizeof pipelines[0]; i++)
        for (unsigned sel = 0; sel < 256; sel += 37) add(seeds, n, 1, (uint8_t)sel, pipelines[i]);
    json_t *tj = base_tokenizer();
    char *js = json_dumps(tj, JSON_COMPACT);
    json_decref(tj);
    add(seeds, n, 0, 0, js);
    free(js);
    add(seeds, n, 0, 0, "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":"
                        "{\"type\":\"Metaspace\",\"replacement\":\"_\"}}");
}

int main(int argc, char **argv) { return fz_main(argc, argv, "fuzz_pretokenizer"); }
#endif
