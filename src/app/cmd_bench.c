/* cmd_bench.c - `semantic bench`: benchmarks that print figures (never
 * tests). `bench model` measures prefill and decode speed and, in the same
 * run, the machine's memory read bandwidth, and reports decode as a
 * fraction of the roofline bandwidth / bytes-read-per-token. */
#include "app/bench.h"
#include "app/commands.h"
#include "app/runtime.h"
#include "engine/engine.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>



static void usage(FILE *f)
{
    fprintf(f,
            "usage: semantic bench model|batch|cache --model DIR [options]\n\n"
            "bench model: prefill tok/s for a prompt, decode tok/s, the memory read\n"
            "  bandwidth measured in the same run (all threads, a buffer far larger than\n"
            "  the caches), and decode as a fraction of the roofline bandwidth / bytes\n"
            "  read per token (the weights, and the KV cache at the run's mean context).\n"
            "  Each of --runs runs measures all three; the best of\n"
            "  each is reported, with the range of decode.\n"
            "bench batch: the batching engine's aggregate decode tok/s at batch 1, 2, 4,\n"
            "  8 and 16 (the best of --runs each), then TTFT and time per output token\n"
            "  of a short request that arrives while a long prompt is prefilling.\n"
            "bench cache: time to first token of a conversation's next turn cold, hot\n"
            "  (RAM) and warm (after a restart, from the file) at 1K-8K tokens (up to\n"
            "  --long-prompt), and cache file save/load MB/s and sizes at 16/8/4 bits.\n\n"
            "  --model DIR       model directory (required)\n"
            "  --prompt N        prompt tokens (default 512)\n"
            "  --decode N        decoded tokens (default 128)\n"
            "  --threads N       compute threads (default: one per core)\n"
            "  --mem-mb N        bandwidth buffer size in MiB (default 1024)\n"
            "  --kv-bits B       16 (default), 8 or 4\n"
            "  --long-prompt N   batch: tokens of the long prompt; cache: the longest\n"
            "                    conversation (default 4096; 8192 for cache)\n"
            "  --chunk N         batch: prefill chunk (default 512)\n"
            "  --runs N          model, batch: repetitions (default 3)\n\n"
            "For bench batch, --prompt defaults to 32 and --decode to 64 per request.\n");
}

typedef struct read_job {
    const uint64_t *buf;
    size_t n_words;
    uint64_t sums[256];
} read_job;

static void read_shard(void *p, int ith, int nth)
{
    read_job *j = p;
    size_t lo, hi;
    tp_split(j->n_words, 64, ith, nth, &lo, &hi);
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = lo; i + 4 <= hi; i += 4) {
        a += j->buf[i];
        b ^= j->buf[i + 1];
        c += j->buf[i + 2];
        d ^= j->buf[i + 3];
    }
    j->sums[ith & 255] = a + b + c + d;
}

/* STREAM-like read bandwidth in GB/s: the best of several passes over a
 * buffer much larger than the last-level cache, split across the pool. */
static double measure_read_gbs(tp_pool *pool, size_t mb)
{
    size_t bytes = mb << 20;
    uint64_t *words = sem_alloc_aligned(bytes);
    if (!words) return 0;
    read_job j = {.buf = words, .n_words = bytes / 8};
    for (size_t i = 0; i < j.n_words; i += 512) words[i] = i; /* fault pages in */
    double best = 0;
    for (int pass = 0; pass < 6; pass++) {
        double t0 = clk_now_s();
        tp_run(pool, read_shard, &j);
        double gbs = (double)bytes / (clk_now_s() - t0) / 1e9;
        if (gbs > best) best = gbs;
    }
    sem_free_aligned(words);
    return best;
}

static int parse_opts(int argc, char **argv, bench_opts *o)
{
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"prompt", required_argument, 0, 'p'},
        {"decode", required_argument, 0, 'd'}, {"threads", required_argument, 0, 'j'},
        {"mem-mb", required_argument, 0, 'M'}, {"kv-bits", required_argument, 0, 'b'},
        {"long-prompt", required_argument, 0, 'l'}, {"chunk", required_argument, 0, 'c'},
        {"runs", required_argument, 0, 'r'},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    bool batch = !strcmp(argv[0], "batch");
    bool cache = !strcmp(argv[0], "cache");
    *o = (bench_opts){.prompt = batch ? 32 : 512, .decode = batch ? 64 : 128, .mem_mb = 1024,
                      .long_prompt = cache ? 8192 : 4096, .chunk = 512, .kv_dtype = KN_KV_F16,
                      .runs = 3};
    int c;
    long v = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        bool ok = true;
        switch (c) {
        case 'm': o->model_dir = optarg; break;
        case 'p': ok = app_parse_long(optarg, 1, 1 << 20, &o->prompt); break;
        case 'd': ok = app_parse_long(optarg, 1, 1 << 20, &o->decode); break;
        case 'j': ok = app_parse_long(optarg, 1, 256, &o->threads); break;
        case 'M': ok = app_parse_long(optarg, 64, 1 << 16, &o->mem_mb); break;
        case 'l': ok = app_parse_long(optarg, 16, 1 << 20, &o->long_prompt); break;
        case 'c': ok = app_parse_long(optarg, 1, 1 << 16, &o->chunk); break;
        case 'r': ok = app_parse_long(optarg, 1, 100, &o->runs); break;
        case 'b':
            ok = app_parse_long(optarg, 4, 16, &v) && (v == 4 || v == 8 || v == 16);
            o->kv_dtype = v == 8 ? KN_KV_Q8 : v == 4 ? KN_KV_Q4 : KN_KV_F16;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (!ok) {
            fprintf(stderr, "semantic bench: bad value '%s'\n", optarg);
            return 2;
        }
    }
    if (!o->model_dir) {
        fprintf(stderr, "semantic bench model: --model is required (see --help)\n");
        return 2;
    }
    return -1;
}

/* KV cache bytes a decode step at context ctx reads: every layer's K and
 * V rows of the positions it attends to (a sliding layer at most its
 * window). */
static double kv_bytes_per_token(const model_spec *s, kn_kv_dtype dt, double ctx)
{
    model_kv_geometry g = model_spec_kv_geometry(s);
    double b = 0;
    size_t row = kn_kv_row_bytes(dt, (size_t)g.head_dim) + kn_kv_row_bytes(dt, (size_t)g.v_head_dim);
    for (int32_t l = 0; l < g.n_layers; l++) {
        double n = g.window > 0 && g.layer_sliding[l] && ctx > g.window ? g.window : ctx;
        b += n * (double)g.n_kv_heads * (double)row;
    }
    return b;
}

static int bench_model(const bench_opts *o)
{
    sem_err err;
    app_runtime rt;
    if (app_runtime_open(&rt, o->model_dir, (int)o->threads, 512, &err)) {
        fprintf(stderr, "semantic bench: %s\n", err.msg);
        app_runtime_close(&rt);
        return 1;
    }
    const model_spec *s = model_get_spec(rt.m);
    eng_runner_params rp = eng_runner_default_params();
    rp.max_ctx = (size_t)(o->prompt + o->decode + 1);
    rp.kv_dtype = o->kv_dtype;
    eng_runner *r = NULL;
    float *logits = sem_calloc((size_t)s->vocab, sizeof(float));
    int32_t *prompt = sem_calloc((size_t)o->prompt, sizeof(int32_t));
    sem_status st = logits && prompt ? eng_runner_create(rt.m, rt.kc, &rp, &r, &err)
                                     : sem_errf(&err, SEM_ENOMEM, "out of memory");
    eng_rng rng;
    eng_rng_seed(&rng, 1);
    for (long i = 0; prompt && i < o->prompt; i++) prompt[i] = (int32_t)(eng_rng_next(&rng) % (uint64_t)s->vocab);
    /* best (shortest) times and highest bandwidth over the runs; the
     * bandwidth is measured between the runs, on the same loaded machine */
    double gbs = 0, t_prefill = 1e300, t_decode = 1e300, t_decode_max = 0;
    for (long run = 0; !st && run < o->runs; run++) {
        double g = measure_read_gbs(rt.pool, (size_t)o->mem_mb);
        gbs = g > gbs ? g : gbs;
        eng_runner_reset(r);
        double t0 = clk_now_s();
        st = eng_runner_feed(r, prompt, (size_t)o->prompt, false, logits, &err);
        double t1 = clk_now_s();
        for (long i = 0; !st && i < o->decode; i++) {
            int32_t tok = eng_argmax(logits, (size_t)s->vocab);
            st = eng_runner_feed(r, &tok, 1, false, logits, &err);
        }
        double t2 = clk_now_s();
        t_prefill = t1 - t0 < t_prefill ? t1 - t0 : t_prefill;
        t_decode = t2 - t1 < t_decode ? t2 - t1 : t_decode;
        t_decode_max = t2 - t1 > t_decode_max ? t2 - t1 : t_decode_max;
    }
    if (!st) {
        double wbt = (double)model_decode_bytes_per_token(rt.m);
        /* the decoded tokens attend to prompt + 1 .. prompt + decode positions */
        double ctx = (double)o->prompt + (double)(o->decode + 1) / 2.0;
        double kvbt = kv_bytes_per_token(s, o->kv_dtype, ctx), bpt = wbt + kvbt;
        double roof = gbs * 1e9 / bpt, dec = (double)o->decode / t_decode;
        printf("model:        %s (%.1fM params, %s kernels, %d threads)\n", o->model_dir,
               (double)model_n_params(rt.m) / 1e6, kn_ctx_isa(rt.kc), tp_n_threads(rt.pool));
        printf("prefill:      %ld tokens in %.0f ms = %.1f tok/s (best of %ld)\n", o->prompt,
               t_prefill * 1e3, (double)o->prompt / t_prefill, o->runs);
        printf("decode:       %ld tokens in %.0f ms = %.1f tok/s (best of %ld; slowest %.1f)\n",
               o->decode, t_decode * 1e3, dec, o->runs, (double)o->decode / t_decode_max);
        printf("memory read:  %.2f GB/s (STREAM-like, %ld MiB buffer, best of %ld)\n", gbs, o->mem_mb, o->runs);
        bool kv_mib = kvbt >= 1048576.0;
        printf("bytes/token:  %.1f MiB read per decoded token: %.1f MiB of weights + %.1f %s of %s KV cache\n"
               "              (%.1f positions on average)\n",
               bpt / 1048576.0, wbt / 1048576.0, kvbt / (kv_mib ? 1048576.0 : 1024.0), kv_mib ? "MiB" : "KiB",
               kn_kv_dtype_name(o->kv_dtype), ctx);
        printf("roofline:     %.1f tok/s; decode reaches %.1f%% of it\n", roof, 100.0 * dec / roof);
    }
    eng_runner_destroy(r);
    free(logits);
    free(prompt);
    app_runtime_close(&rt);
    if (st) fprintf(stderr, "semantic bench: %s\n", err.msg);
    return st ? 1 : 0;
}

int app_cmd_bench(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "model") != 0 && strcmp(argv[1], "batch") != 0 && strcmp(argv[1], "cache") != 0) {
        fprintf(stderr, "semantic bench: unknown benchmark '%s' (see --help)\n", argv[1]);
        return 2;
    }
    bench_opts o;
    int rc = parse_opts(argc - 1, argv + 1, &o);
    if (rc >= 0) return rc;
    if (!strcmp(argv[1], "cache")) return bench_cache(&o);
    return !strcmp(argv[1], "batch") ? bench_batch(&o) : bench_model(&o);
}
