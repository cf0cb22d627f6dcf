/* bench_cache.c - `semantic bench cache`: what agent caches buy. For
 * conversations of 1K, 2K, 4K and 8K tokens it prints the time to first
 * token of the next turn cold (no cache), hot (blocks in RAM) and warm
 * (after a restart: loaded from the file), then the cache file's save and
 * load throughput and its size at 16, 8 and 4 KV bits. Prints figures;
 * asserts nothing. */
#include "app/bench.h"
#include "app/runtime.h"
#include "cache/cache.h"
#include "engine/engine.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static eng_engine *start(app_runtime *rt, const bench_opts *o, const char *dir, int32_t max_ctx, sem_err *err)
{
    eng_params p = eng_default_params();
    p.m = rt->m;
    p.kc = rt->kc;
    p.prefill_chunk = (int32_t)o->chunk;
    p.kv_dtype = o->kv_dtype;
    p.max_ctx = max_ctx;
    p.max_batch = 2;
    model_kv_geometry g = model_spec_kv_geometry(model_get_spec(rt->m));
    size_t per_token = (size_t)g.n_layers * (size_t)g.n_kv_heads *
                       (kn_kv_row_bytes(o->kv_dtype, (size_t)g.head_dim) + kn_kv_row_bytes(o->kv_dtype, (size_t)g.v_head_dim));
    p.kv_budget_bytes = per_token * (size_t)(max_ctx + 512) * 2;
    p.cache_dir = dir;
    p.model_id = "bench";
    p.fingerprint = "0000000000000000";
    eng_engine *e = NULL;
    return eng_start(&p, &e, err) == SEM_OK ? e : NULL;
}

/* Seconds from submit to the first token. */
static double ttft(eng_engine *e, const char *agent, const int32_t *prompt, size_t n, int32_t *cached)
{
    eng_request_params p = eng_request_default_params();
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = 2;
    p.ignore_eos = true;
    p.agent_id = agent;
    eng_request *r;
    sem_err err;
    double t0 = clk_now_s(), first = 0;
    if (eng_submit(e, &p, &r, &err)) return -1;
    for (bool done = false; !done;) {
        eng_event *ev;
        if (eng_request_next(r, -1, &ev)) break;
        if (first == 0 && ev->kind == ENG_EV_TOKEN) first = clk_now_s();
        done = ev->kind == ENG_EV_DONE;
        if (done) *cached = ev->cached_tokens;
        eng_event_free(ev);
    }
    eng_request_release(r);
    return first - t0;
}

static int bench_length(app_runtime *rt, const bench_opts *o, const char *dir, size_t L)
{
    sem_err err;
    int32_t vocab = model_get_spec(rt->m)->vocab, cached = 0;
    int32_t *prompt = calloc(L + 64, sizeof *prompt);
    eng_rng rng;
    eng_rng_seed(&rng, L);
    for (size_t i = 0; i < L + 64; i++) prompt[i] = (int32_t)(eng_rng_next(&rng) % (uint64_t)vocab);
    char agent[32];
    snprintf(agent, sizeof agent, "bench-%zu", L);
    int32_t max_ctx = (int32_t)(L + 64);
    eng_engine *e = start(rt, o, dir, max_ctx, &err);
    if (!e) return fprintf(stderr, "semantic bench cache: %s\n", err.msg), 1;
    /* turn 1 fills the cache; turn 2 (16 more tokens) is the measured one */
    double cold = ttft(e, agent, prompt, L, &cached);
    double hot = ttft(e, agent, prompt, L + 16, &cached);
    int32_t hot_cached = cached;
    eng_stop(e); /* writes the cache file */
    e = start(rt, o, dir, max_ctx, &err);
    if (!e) return fprintf(stderr, "semantic bench cache: %s\n", err.msg), 1;
    double warm = ttft(e, agent, prompt, L + 32, &cached);
    eng_stop(e);
    printf("%6zu tokens: cold %8.1f ms | hot %7.1f ms (%d cached, %5.1fx) | warm %7.1f ms (%d cached, %5.1fx)\n", L,
           cold * 1e3, hot * 1e3, hot_cached, cold / hot, warm * 1e3, cached, cold / warm);
    fflush(stdout);
    free(prompt);
    return 0;
}

/* Save / open+verify / load throughput of one cache file of n tokens. */
static void bench_file(app_runtime *rt, const char *dir, kn_kv_dtype dt, size_t n)
{
    model_kv_geometry mg = model_spec_kv_geometry(model_get_spec(rt->m));
    kv_geometry g = {mg.n_layers, mg.n_kv_heads, mg.head_dim, mg.v_head_dim, 256, dt};
    size_t nb = (n + 255) / 256;
    kv_pool_params pp = {.budget_bytes = kv_block_bytes(&g) * nb * 2};
    kv_pool *pool;
    sem_err err;
    if (kv_geometry_check(&g, &err) || kv_pool_create(&g, &pp, &pool, &err)) {
        printf("  %-4s: %s\n", kn_kv_dtype_name(dt), err.msg);
        return;
    }
    int32_t *blocks = calloc(2 * nb, sizeof *blocks), *tokens = calloc(n, sizeof *tokens);
    for (size_t i = 0; i < 2 * nb; i++) kv_pool_alloc(pool, &blocks[i], &err);
    kn_kv_view v = kv_pool_view(pool, blocks), w = kv_pool_view(pool, blocks + nb);
    cache_file_meta meta = {.version = CACHE_FORMAT_VERSION, .geo = g, .n_tokens = (uint32_t)n};
    snprintf(meta.agent_id, sizeof meta.agent_id, "bench");
    snprintf(meta.model_id, sizeof meta.model_id, "bench");
    snprintf(meta.fingerprint, sizeof meta.fingerprint, "0");
    char path[4200];
    snprintf(path, sizeof path, "%s/bench-file.safetensors", dir);
    double t0 = clk_now_s();
    sem_status st = cache_file_write(path, &meta, tokens, &v, kv_pool_layer_stride(pool), &err);
    double t_save = clk_now_s() - t0;
    cache_file *f = NULL;
    t0 = clk_now_s();
    if (!st) st = cache_file_open(path, &g, NULL, &f, &err);
    double t_open = clk_now_s() - t0;
    t0 = clk_now_s();
    if (!st) cache_file_load(f, n, &w, kv_pool_layer_stride(pool));
    double t_load = clk_now_s() - t0;
    FILE *fp = fopen(path, "rb");
    long size = 0;
    if (fp && !fseek(fp, 0, SEEK_END)) size = ftell(fp);
    if (fp) fclose(fp);
    double mb = (double)size / 1e6;
    if (st) printf("  %-4s: %s\n", kn_kv_dtype_name(dt), err.msg);
    else
        printf("  %-4s: %zu tokens = %8.1f MB on disk | save %6.0f MB/s (fsync incl.) | open+verify %6.0f MB/s | load %6.0f MB/s\n",
               kn_kv_dtype_name(dt), n, mb, mb / t_save, mb / t_open, mb / t_load);
    cache_file_close(f);
    unlink(path);
    free(blocks);
    free(tokens);
    kv_pool_destroy(pool);
}

int bench_cache(const bench_opts *o)
{
    sem_err err;
    app_runtime rt;
    if (app_runtime_open(&rt, o->model_dir, (int)o->threads, (size_t)o->chunk + 4, &err)) {
        fprintf(stderr, "semantic bench cache: %s\n", err.msg);
        app_runtime_close(&rt);
        return 1;
    }
    char dir[] = "/tmp/semantic-bench-cache.XXXXXX";
    if (!mkdtemp(dir)) return 1;
    printf("model: %s (%s kernels, %d threads, kv %s, prefill chunk %ld)\n", o->model_dir, kn_ctx_isa(rt.kc),
           tp_n_threads(rt.pool), kn_kv_dtype_name(o->kv_dtype), o->chunk);
    printf("time to first token of the next turn (16 new tokens):\n");
    static const size_t lengths[] = {1024, 2048, 4096, 8192};
    int rc = 0;
    int32_t max_pos = model_get_spec(rt.m)->max_pos;
    for (size_t i = 0; i < 4 && !rc; i++) {
        size_t L = lengths[i];
        if (L + 64 > (size_t)max_pos) L = (size_t)max_pos - 64;
        if (L <= (size_t)o->long_prompt) rc = bench_length(&rt, o, dir, L);
    }
    printf("cache files (%ld tokens):\n", o->long_prompt < 4096 ? o->long_prompt : 4096);
    static const kn_kv_dtype dts[] = {KN_KV_F16, KN_KV_Q8, KN_KV_Q4};
    for (size_t i = 0; i < 3; i++) bench_file(&rt, dir, dts[i], (size_t)(o->long_prompt < 4096 ? o->long_prompt : 4096));
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
    app_runtime_close(&rt);
    return rc;
}
