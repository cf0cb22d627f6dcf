/* fuzz_api_body.c - fuzz target for the HTTP API request bodies
 * (server/: srv_json_parse_body, then the OpenAI chat and completions and
 * the Anthropic messages parsers). A body that parses is also run through
 * its response formatter, streaming and not, with synthetic engine events
 * whose text is taken from the input, so the tool-call parser and the SSE
 * and JSON builders see hostile text too. Any crash, sanitizer report or
 * leak is a bug; 400s are fine. The first input byte picks the parser.
 *
 * Built two ways (fuzz/CMakeLists.txt):
 *  - with -fsanitize=fuzzer (SEM_FUZZ=ON, clang): the libFuzzer entry point;
 *  - with FUZZ_STANDALONE: a plain driver for ctest that replays the files
 *    given on the command line, or else mutates real request bodies (the
 *    SDKs' shapes, with tools, tool calls and tool results) for
 *    SEM_FUZZ_ITERS rounds (default 3000) from a fixed seed.
 *
 * White-box: includes the server room's internal header.
 * Thread: single-threaded.
 */
#include "server/srv_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds text (split in uneven pieces) as model output, then DONE. */
static void drive(srv_gen *g, const char *text, size_t n, bool stream)
{
    buf out;
    buf_init(&out);
    if (stream) g->fmt->stream_start(g, &out);
    size_t step = 1 + n % 7;
    for (size_t i = 0; i < n; i += step) {
        eng_event ev = {0};
        ev.kind = ENG_EV_TOKEN;
        ev.text = (char *)text + i;
        ev.text_len = n - i < step ? n - i : step;
        ev.logprob = -0.5f;
        srv_gen_on_event(g, &ev, stream ? &out : NULL);
    }
    eng_event done = {0};
    done.kind = ENG_EV_DONE;
    done.finish = n % 3 == 0 ? ENG_FINISH_LENGTH : ENG_FINISH_STOP;
    done.prompt_tokens = 7;
    done.completion_tokens = (int32_t)(n / 3);
    srv_gen_on_event(g, &done, stream ? &out : NULL);
    if (!g->finished) abort();
    if (!stream && !g->result) abort(); /* bodies always build */
    buf_fini(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    int which = data[0] % 4;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    json_t *j = NULL;
    srv_error e;
    if (!srv_json_parse_body(body, n, 64, &j, &e)) {
        if (e.http_status != 400) abort();
        return 0;
    }
    srv_gen_req r;
    srv_gen_req_init(&r);
    srv_parse_ctx pc = {true, NULL};
    bool ok = which == 0   ? srv_oai_parse_chat(j, &pc, &r, &e)
              : which == 1 ? srv_oai_parse_completion(j, &pc, &r, &e)
              : which == 2 ? srv_anth_parse_messages(j, &pc, &r, &e)
                           : srv_anth_parse_count(j, &pc, &r, &e);
    json_decref(j);
    if (!ok) {
        if (e.http_status != 400 || !e.message[0]) abort();
        json_t *env = srv_error_envelope(which >= 2 ? SRV_API_ANTHROPIC : SRV_API_OPENAI, &e);
        if (!env) abort();
        json_decref(env);
        srv_gen_req_fini(&r);
        return 0;
    }
    const srv_fmt_ops *fmt = which == 0 ? &srv_oai_chat_fmt : which == 1 ? &srv_oai_completion_fmt
                                                                         : &srv_anth_messages_fmt;
    srv_backend b = {0};
    b.tool_format = n % 2 ? SRV_TOOLS_HERMES : SRV_TOOLS_LLAMA3;
    b.model_id = "fuzz";
    b.max_ctx = 4096;
    srv_idgen ids;
    srv_idgen_init(&ids, 1);
    bool stream = r.stream;
    const char *text = r.test_completion ? r.test_completion : body;
    size_t tn = r.test_completion ? strlen(r.test_completion) : n;
    char *copy = malloc(tn + 1);
    if (!copy) abort();
    memcpy(copy, text, tn);
    copy[tn] = '\0';
    srv_gen *g = srv_gen_create(fmt, &r, &b, &ids, NULL);
    if (!g) abort();
    drive(g, copy, tn, stream);
    srv_gen_destroy(g);
    free(copy);
    srv_gen_req_fini(&r);
    return 0;
}

#ifdef FUZZ_STANDALONE

static size_t rnd(uint64_t *st, size_t n)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return n ? (size_t)(*st % n) : 0;
}

static const char *const seeds[] = {
    "\x00{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"S\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}],"
    "\"max_tokens\":8,\"temperature\":0.7,\"stop\":[\"###\"],\"stream\":true,\"stream_options\":{\"include_usage\":true},"
    "\"logprobs\":true,\"top_logprobs\":2,\"semantic_test_completion\":\"ok <tool_call>{\\\"name\\\": \\\"f\\\", \\\"arguments\\\": {\\\"a\\\": [1]}}</tool_call>\","
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}}]}",
    "\x00{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},{\"role\":\"assistant\",\"content\":null,"
    "\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1}\"}}]},"
    "{\"role\":\"tool\",\"tool_call_id\":\"c\",\"content\":\"r\"}],\"tool_choice\":\"auto\",\"session_id\":\"agent-1\"}",
    "\x01{\"model\":\"m\",\"prompt\":\"Once\",\"max_tokens\":4,\"logprobs\":2,\"stream\":true,\"seed\":7}",
    "\x01{\"model\":\"m\",\"prompt\":[[1,2,3]],\"stop\":\"x\"}",
    "\x02{\"model\":\"m\",\"max_tokens\":9,\"system\":[{\"type\":\"text\",\"text\":\"S\"}],\"stop_sequences\":[\"END\"],"
    "\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"t\"},"
    "{\"type\":\"tool_use\",\"id\":\"u\",\"name\":\"f\",\"input\":{\"c\":1}}]},{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
    "\"tool_use_id\":\"u\",\"content\":[{\"type\":\"text\",\"text\":\"r\"}]}]}],\"tools\":[{\"name\":\"f\",\"input_schema\":{}}],"
    "\"stream\":true,\"semantic_test_completion\":\"{\\\"name\\\": \\\"f\\\", \\\"parameters\\\": {}}\"}",
    "\x03{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"count\"}],\"tool_choice\":{\"type\":\"none\"}}",
};

static const char *const hostile[] = {
    "null", "-1", "0", "1e999", "\"\"", "[]", "{}", "\"\\u0000\"", "\"\\ud800\"", "9223372036854775808",
    "[[[[[[[[]]]]]]]]", "\"<tool_call>\"", "true", "\"../x\"", "{\"type\":\"text\"}",
};

/* Mutates b: byte flips, inserts, deletes, splices of hostile JSON values. */
static size_t mutate(uint8_t *b, size_t n, size_t cap, uint64_t *st)
{
    int k = (int)rnd(st, 4);
    size_t at = n > 1 ? 1 + rnd(st, n - 1) : 1;
    if (k == 0 && n > 1) {
        b[at] ^= (uint8_t)(1u << rnd(st, 8));
    } else if (k == 1 && n > 1) {
        size_t len = 1 + rnd(st, 8);
        if (at + len > n) len = n - at;
        memmove(b + at, b + at + len, n - at - len);
        n -= len;
    } else {
        const char *h = hostile[rnd(st, sizeof hostile / sizeof hostile[0])];
        size_t hl = strlen(h);
        if (n + hl <= cap) {
            memmove(b + at + hl, b + at, n - at);
            memcpy(b + at, h, hl);
            n += hl;
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            char *d;
            size_t n;
            sem_err err;
            if (fs_read_file(argv[i], (size_t)1 << 26, &d, &n, &err) != SEM_OK) abort();
            LLVMFuzzerTestOneInput((const uint8_t *)d, n);
            free(d);
        }
        return 0;
    }
    const char *it = getenv("SEM_FUZZ_ITERS");
    long iters = it ? atol(it) : 3000;
    uint64_t st = 0x9E3779B97F4A7C15ull;
    enum { CAP = 8192 };
    uint8_t *b = malloc(CAP);
    size_t n_seeds = sizeof seeds / sizeof seeds[0];
    for (size_t s = 0; s < n_seeds; s++) {
        size_t n = 1 + strlen(seeds[s] + 1);
        memcpy(b, seeds[s], n);
        LLVMFuzzerTestOneInput(b, n);
    }
    for (long i = 0; i < iters; i++) {
        const char *seed = seeds[rnd(&st, n_seeds)];
        size_t n = 1 + strlen(seed + 1);
        memcpy(b, seed, n);
        for (size_t m = 1 + rnd(&st, 4); m > 0; m--) n = mutate(b, n, CAP, &st);
        LLVMFuzzerTestOneInput(b, n);
    }
    free(b);
    printf("fuzz_api_body: %ld mutated bodies\n", iters);
    return 0;
}

#endif
