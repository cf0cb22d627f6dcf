/* cmd_generate.c - `semantic generate`: run a model on token ids (or, once
 * the tokenizer is wired in, on a text prompt), greedy or seeded sampling,
 * and print the generated ids with prefill and decode speed. */
#include "app/commands.h"
#include "app/runtime.h"
#include "engine/engine.h"
#include "tokenizer/tokenizer.h"

#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct gen_opts {
    const char *model_dir;
    const char *tokens;
    const char *prompt;
    long n_predict;
    eng_sampling sampling;
    uint64_t seed;
    long threads;
    long ctx;
    kn_kv_dtype kv_dtype;
    long block_tokens, chunk;
    const char *logits_out;
} gen_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: semantic generate --model DIR (--prompt TEXT | --tokens 1,2,3) [options]\n\n"
            "Runs the prompt through the model and generates tokens.\n\n"
            "  --model DIR          Hugging Face model directory (required)\n"
            "  --prompt TEXT        prompt text (encoded with the model's tokenizer.json;\n"
            "                       the reply is printed as text and stops at EOS)\n"
            "  --tokens IDS         prompt as comma-separated token ids (prints ids)\n"
            "  -n, --n-predict N    tokens to generate (default 32)\n"
            "  --temperature T      0 = greedy (default 0)\n"
            "  --top-k K            keep the K most likely tokens (default 0 = off)\n"
            "  --top-p P            nucleus sampling (default 1 = off)\n"
            "  --min-p P            drop tokens below P x the best (default 0 = off)\n"
            "  --seed S             sampling seed (default 42)\n"
            "  --kv-bits B          KV cache format: 16 (f16, default), 8, 4, or 32 (f32)\n"
            "  --ctx N              context length (default: the model's, max 32768)\n"
            "  --threads N          compute threads (default: one per core)\n"
            "  --block-tokens N     tokens per KV block (default 256)\n"
            "  --chunk N            prefill chunk, 1..512 tokens (default 512)\n"
            "  --logits-out FILE    write the prompt's logits, f32 [n_prompt][vocab]\n\n"
            "Prints the generated ids, then prefill and decode tokens per second and\n"
            "the KV cache's bytes.\n");
}

static kn_kv_dtype kv_dtype_from_bits(long bits)
{
    switch (bits) {
    case 8: return KN_KV_Q8;
    case 4: return KN_KV_Q4;
    case 32: return KN_KV_F32;
    default: return KN_KV_F16;
    }
}

static int parse_opts(int argc, char **argv, gen_opts *o)
{
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},       {"tokens", required_argument, 0, 't'},
        {"prompt", required_argument, 0, 'x'},
        {"n-predict", required_argument, 0, 'n'},   {"temperature", required_argument, 0, 'T'},
        {"top-k", required_argument, 0, 'k'},       {"top-p", required_argument, 0, 'p'},
        {"min-p", required_argument, 0, 'P'},       {"seed", required_argument, 0, 's'},
        {"kv-bits", required_argument, 0, 'b'},     {"ctx", required_argument, 0, 'c'},
        {"threads", required_argument, 0, 'j'},     {"logits-out", required_argument, 0, 'L'},
        {"block-tokens", required_argument, 0, 'B'}, {"chunk", required_argument, 0, 'C'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0},
    };
    *o = (gen_opts){.n_predict = 32, .sampling = eng_sampling_greedy(), .seed = 42, .kv_dtype = KN_KV_F16};
    int c;
    long v;
    double d;
    optind = 1;
    while ((c = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': o->model_dir = optarg; break;
        case 't': o->tokens = optarg; break;
        case 'x': o->prompt = optarg; break;
        case 'n': ok = app_parse_long(optarg, 0, 1 << 24, &o->n_predict); break;
        case 'T': ok = app_parse_float(optarg, 0, 100, &d); o->sampling.temperature = (float)d; break;
        case 'k': ok = app_parse_long(optarg, 0, 1 << 24, &v); o->sampling.top_k = (int32_t)v; break;
        case 'p': ok = app_parse_float(optarg, 0, 1, &d); o->sampling.top_p = (float)d; break;
        case 'P': ok = app_parse_float(optarg, 0, 1, &d); o->sampling.min_p = (float)d; break;
        case 's': ok = app_parse_long(optarg, 0, LONG_MAX, &v); o->seed = (uint64_t)v; break;
        case 'b':
            ok = app_parse_long(optarg, 4, 32, &v) && (v == 4 || v == 8 || v == 16 || v == 32);
            o->kv_dtype = kv_dtype_from_bits(v);
            break;
        case 'c': ok = app_parse_long(optarg, 1, 1 << 24, &o->ctx); break;
        case 'j': ok = app_parse_long(optarg, 1, 256, &o->threads); break;
        case 'L': o->logits_out = optarg; break;
        case 'B': ok = app_parse_long(optarg, 1, 1 << 16, &o->block_tokens); break;
        case 'C': ok = app_parse_long(optarg, 1, 512, &o->chunk); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "semantic generate: bad value '%s' for --%s\n", optarg, longopts[0].name);
            return 2;
        }
    }
    if (!o->model_dir || !o->tokens == !o->prompt) {
        fprintf(stderr, "semantic generate: --model and one of --prompt or --tokens are required (see --help)\n");
        return 2;
    }
    return -1;
}

static sem_status write_logits(const char *path, const float *logits, size_t n, sem_err *err)
{
    return fs_write_atomic(path, logits, n * sizeof(float), err);
}

/* Prints a generated token: its id, or its text when a tokenizer streams.
 * Returns false at an end-of-sequence id in text mode. */
static bool emit(tok_stream *ts, const tok_tokenizer *tok, int32_t id, long i)
{
    if (!ts) {
        printf("%s%d", i ? "," : " ", id);
    } else {
        if (tok_is_eos(tok, id)) return false;
        buf b;
        buf_init(&b);
        sem_err err;
        tok_stream_push(ts, id, &b, &err);
        if (b.len) fwrite(b.data, 1, b.len, stdout);
        buf_fini(&b);
    }
    fflush(stdout);
    return true;
}

static int run_generate(const gen_opts *o, app_runtime *rt, const tok_tokenizer *tok, const int32_t *prompt,
                        size_t n_prompt)
{
    sem_err err;
    const model_spec *s = model_get_spec(rt->m);
    eng_runner_params rp = eng_runner_default_params();
    rp.max_ctx = (size_t)o->ctx;
    rp.kv_dtype = o->kv_dtype;
    if (o->block_tokens) rp.block_tokens = (int32_t)o->block_tokens;
    if (o->chunk) rp.chunk_tokens = (size_t)o->chunk;
    eng_runner *r = NULL;
    eng_sampler *smp = NULL;
    size_t vocab = (size_t)s->vocab;
    float *logits = sem_calloc(o->logits_out ? n_prompt * vocab : vocab, sizeof(float));
    sem_status st = logits ? SEM_OK : sem_errf(&err, SEM_ENOMEM, "out of memory for logits");
    if (!st) st = eng_runner_create(rt->m, rt->kc, &rp, &r, &err);
    if (!st) st = eng_sampler_create(vocab, &smp, &err);
    double t0 = clk_now_s();
    if (!st) st = eng_runner_feed(r, prompt, n_prompt, o->logits_out != NULL, logits, &err);
    double t_prefill = clk_now_s() - t0;
    if (!st && o->logits_out) st = write_logits(o->logits_out, logits, n_prompt * vocab, &err);
    const float *last = logits + (o->logits_out ? (n_prompt - 1) * vocab : 0);
    eng_rng rng;
    eng_rng_seed(&rng, o->seed);
    long n_gen = 0;
    double t1 = clk_now_s();
    tok_stream *ts = NULL;
    if (!st && tok) st = tok_stream_create(tok, prompt, n_prompt, true, &ts, &err);
    if (!st) printf("%s", ts ? o->prompt : "tokens:");
    for (; !st && n_gen < o->n_predict; n_gen++) {
        int32_t id = eng_sample(smp, last, &o->sampling, &rng);
        if (!emit(ts, tok, id, n_gen) || n_gen + 1 == o->n_predict) {
            n_gen++;
            break;
        }
        st = eng_runner_feed(r, &id, 1, false, logits, &err);
        last = logits;
    }
    double t_decode = clk_now_s() - t1;
    if (ts) {
        buf tail;
        buf_init(&tail);
        tok_stream_finish(ts, &tail, &err);
        if (tail.len) fwrite(tail.data, 1, tail.len, stdout);
        buf_fini(&tail);
        tok_stream_destroy(ts);
    }
    printf("\n");
    if (!st) {
        printf("prefill: %zu tokens in %.1f ms, %.1f tok/s\n", n_prompt, t_prefill * 1e3, (double)n_prompt / t_prefill);
        if (n_gen > 1)
            printf("decode: %ld tokens in %.1f ms, %.1f tok/s\n", n_gen - 1, t_decode * 1e3, (double)(n_gen - 1) / t_decode);
        size_t kv = eng_runner_kv_bytes(r), n_kv = eng_runner_n_past(r);
        printf("kv cache: %zu tokens in %zu bytes (%.0f per token)\n", n_kv, kv, n_kv ? (double)kv / (double)n_kv : 0.0);
    }
    eng_sampler_destroy(smp);
    eng_runner_destroy(r);
    free(logits);
    if (st) fprintf(stderr, "semantic generate: %s\n", err.msg);
    return st ? 1 : 0;
}

int app_cmd_generate(int argc, char **argv)
{
    gen_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc >= 0) return rc;
    sem_err err;
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    tok_tokenizer *tok = NULL;
    if (o.prompt) {
        tok_ids ids;
        tok_ids_init(&ids);
        if (tok_load_dir(o.model_dir, &tok, &err) || tok_encode(tok, NULL, o.prompt, strlen(o.prompt), true, &ids, &err)) {
            fprintf(stderr, "semantic generate: %s\n", err.msg);
            tok_destroy(tok);
            tok_ids_fini(&ids);
            return 1;
        }
        prompt = ids.data;
        n_prompt = ids.len;
        if (n_prompt == 0) {
            fprintf(stderr, "semantic generate: the prompt encodes to no tokens\n");
            tok_destroy(tok);
            free(prompt);
            return 2;
        }
    } else if (app_parse_ids(o.tokens, &prompt, &n_prompt, &err)) {
        fprintf(stderr, "semantic generate: %s\n", err.msg);
        return 2;
    }
    app_runtime rt;
    if (app_runtime_open(&rt, o.model_dir, (int)o.threads, 512, &err)) {
        fprintf(stderr, "semantic generate: %s\n", err.msg);
        app_runtime_close(&rt);
        tok_destroy(tok);
        free(prompt);
        return 1;
    }
    rc = run_generate(&o, &rt, tok, prompt, n_prompt);
    app_runtime_close(&rt);
    tok_destroy(tok);
    free(prompt);
    return rc;
}
