/* cmd_serve.c - `semantic serve`: wires the HTTP server to the swap manager
 * (which owns the model and its engine) and runs until SIGTERM or SIGINT.
 *
 * Order: block the signals (every thread started later inherits the mask,
 * so they reach only the main thread's sigtimedwait: no handler, no global
 * flag) -> resolve the config -> start HTTP (state "loading": probes
 * answer, model requests get 503) -> build the compute pool -> measure the
 * RSS baseline -> swap_create loads the first model (tokenizer, template,
 * engine, agent cache store) -> srv_set_models, state "serving" -> wait
 * for a signal -> drain HTTP (stop accepting, wait up to the drain
 * timeout, cancel the rest) -> flush the agent caches -> stop HTTP ->
 * swap_destroy (the engine stops; its cache store writes what is still
 * dirty) -> exit 0.
 *
 * The agent cache directory defaults to $XDG_CACHE_HOME/semantic, else
 * $HOME/.cache/semantic, else ./.semantic-cache; "none" keeps caches in
 * RAM only.
 *
 * Thread: main.
 */
#include "app/commands.h"
#include "app/runtime.h"
#include "app/serve_config.h"
#include "engine/engine.h"
#include "server/server.h"
#include "swap/swap.h"

#include <malloc.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct serve_state {
    app_serve_config cfg;
    sem_logger *lg;               /* owned */
    srv_server *srv;              /* owned */
    tp_pool *pool;                /* owned: compute threads */
    swap_mgr *models;             /* owned: the model, its engine and caches */
    char cache_dir[4096];         /* "" = RAM only */
} serve_state;

static sem_log_level level_of(const char *s)
{
    if (!strcmp(s, "debug")) return SEM_LOG_DEBUG;
    if (!strcmp(s, "warn")) return SEM_LOG_WARN;
    if (!strcmp(s, "error")) return SEM_LOG_ERROR;
    return SEM_LOG_INFO;
}

static kn_kv_dtype kv_dtype_of(long bits)
{
    return bits == 8 ? KN_KV_Q8 : bits == 4 ? KN_KV_Q4 : bits == 32 ? KN_KV_F32 : KN_KV_F16;
}

static const char *kv_format_of(long bits)
{
    return bits == 8 ? "q8" : bits == 4 ? "q4" : bits == 32 ? "f32" : "f16";
}

static sem_status start_http(serve_state *ss, sem_err *err)
{
    const app_serve_config *c = &ss->cfg;
    srv_config sc = srv_default_config();
    sc.host = c->host;
    sc.port = (uint16_t)c->port;
    sc.http_threads = (int32_t)c->http_threads;
    sc.max_body_bytes = (size_t)c->max_body_bytes;
    sc.max_json_depth = (int32_t)c->max_json_depth;
    sc.idle_timeout_s = (uint32_t)c->idle_timeout_s;
    sc.max_inflight = (int32_t)c->max_inflight;
    sc.queue_timeout_ms = c->queue_timeout_ms;
    sc.default_max_tokens = (int32_t)c->default_max_tokens;
    sc.rate_limit_rps = c->rate_limit_rps;
    sc.rate_limit_burst = c->rate_limit_burst;
    sc.agent_rate_limit_rps = c->agent_rate_limit_rps;
    sc.agent_rate_limit_burst = c->agent_rate_limit_burst;
    sc.ready_pool_fraction = c->ready_pool_fraction;
    sc.api_keys = c->api_keys;
    sc.admin_key = c->admin_key;
    sc.cors_origins = c->cors_origins;
    sc.test_hooks = c->test_hooks;
    sc.models_dir = c->models_dir;
    sc.hf_cache = c->hf_cache;
    sc.block_tokens = (int32_t)c->block_tokens;
    sc.kv_format = kv_format_of(c->kv_bits);
    sc.lg = ss->lg;
    sem_status st = srv_start(&sc, &ss->srv, err);
    if (st) return st;
    if (c->port_file) {
        char p[16];
        int n = snprintf(p, sizeof p, "%u\n", (unsigned)srv_port(ss->srv));
        if ((st = fs_write_atomic(c->port_file, p, (size_t)n, err))) return st;
    }
    return SEM_OK;
}

/* The agent cache directory: the setting, else the XDG cache home. */
static sem_status resolve_cache_dir(serve_state *ss, sem_err *err)
{
    const char *dir = ss->cfg.cache_dir;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (dir && !strcmp(dir, "none")) n = snprintf(ss->cache_dir, sizeof ss->cache_dir, "%s", "");
    else if (dir && *dir) n = snprintf(ss->cache_dir, sizeof ss->cache_dir, "%s", dir);
    else if (xdg && *xdg == '/') n = snprintf(ss->cache_dir, sizeof ss->cache_dir, "%s/semantic", xdg);
    else if (home && *home) n = snprintf(ss->cache_dir, sizeof ss->cache_dir, "%s/.cache/semantic", home);
    else n = snprintf(ss->cache_dir, sizeof ss->cache_dir, "%s", ".semantic-cache");
    if (n < 0 || (size_t)n >= sizeof ss->cache_dir)
        return sem_errf(err, SEM_EINVAL, "--cache-dir: path too long");
    if (ss->cache_dir[0]) return fs_mkdirs(ss->cache_dir, err);
    return SEM_OK;
}

static sem_status load_first_model(serve_state *ss, sem_err *err)
{
    const app_serve_config *c = &ss->cfg;
    sem_status st = resolve_cache_dir(ss, err);
    swap_params sp = {0};
    if (st || (st = app_kernel_mode(&sp.force_ref_kernels, &sp.q_exact, &sp.q_int8_act, err)) ||
        (st = tp_create((int)c->threads, &ss->pool, err)))
        return st;
    sp.models_dir = c->models_dir;
    sp.hf_cache = c->hf_cache;
    sp.pool = ss->pool;
    sp.lg = ss->lg;
    sp.fail_load_id = c->test_hooks && c->test_fail_load_id && *c->test_fail_load_id ? c->test_fail_load_id : NULL;
    eng_params ep = eng_default_params();
    ep.lg = ss->lg;
    ep.max_batch = (int32_t)c->max_batch;
    ep.prefill_chunk = (int32_t)c->prefill_chunk;
    ep.block_tokens = (int32_t)c->block_tokens;
    ep.kv_budget_bytes = (size_t)c->kv_budget_mb << 20;
    ep.kv_dtype = kv_dtype_of(c->kv_bits);
    ep.max_ctx = (int32_t)c->max_ctx;
    ep.cache_dir = ss->cache_dir[0] ? ss->cache_dir : NULL;
    ep.cache_disk_bytes = (uint64_t)c->cache_disk_mb << 20;
    ep.cache_compat = !strcmp(c->cache_compat, "dims") ? CACHE_COMPAT_DIMS : CACHE_COMPAT_MODEL;
    sp.engine = ep;
    uint64_t baseline = swap_rss_bytes();
    double t0 = clk_now_s();
    if ((st = swap_create(&sp, c->model, &ss->models, err))) return st;
    srv_set_models(ss->srv, ss->models, baseline);
    sem_log(ss->lg, SEM_LOG_INFO,
            "serving model=%s ms=%.0f cache_dir=%s kv=%s block_tokens=%ld rss_baseline_mib=%.1f rss_mib=%.1f",
            c->model, (clk_now_s() - t0) * 1e3, ss->cache_dir[0] ? ss->cache_dir : "(RAM only)",
            kv_format_of(c->kv_bits), c->block_tokens, (double)baseline / 1048576.0,
            (double)swap_rss_bytes() / 1048576.0);
    return SEM_OK;
}

/* A swap unloads a model and must give its memory back (RSS returns to
 * the baseline). glibc raises its mmap and trim thresholds as large blocks
 * come and go (up to 32 and 64 MiB), and malloc_trim trims the top of the
 * main heap only: the heaps of other threads' arenas (the swap and engine
 * threads load and free the tokenizer and the model's tables) kept tens of
 * MiB after an unload. Fixed thresholds stop the adjustment: large blocks
 * are mmapped and unmapped on free, and free tops are trimmed. */
static void malloc_returns_memory(void)
{
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
}

/* Blocks until SIGTERM or SIGINT; returns the signal. */
static int wait_for_signal(const sigset_t *set)
{
    for (;;) {
        struct timespec ts = {1, 0};
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) return sig;
    }
}

/* Writes every dirty agent cache and waits for the files (the engine's
 * stop would too; doing it here first puts it in the log). */
static void persist_caches(serve_state *ss)
{
    if (!ss->models || !ss->cache_dir[0]) return;
    const swap_bundle *b;
    sem_err err;
    if (swap_acquire(ss->models, 0, &b, &err) != SEM_OK) return; /* degraded: nothing to write */
    double t0 = clk_now_s();
    sem_status st = eng_caches_flush(b->eng, &err);
    cache_stats cs = eng_cache_stats(b->eng);
    swap_release(ss->models, b);
    if (st) sem_log(ss->lg, SEM_LOG_ERROR, "serve: persisting agent caches: %s", err.msg);
    else
        sem_log(ss->lg, SEM_LOG_INFO, "serve: agent caches persisted ms=%.0f files_written=%llu bytes_written=%llu",
                (clk_now_s() - t0) * 1e3, (unsigned long long)cs.files_written,
                (unsigned long long)cs.bytes_written);
}

static void teardown(serve_state *ss)
{
    srv_stop(ss->srv);        /* no request holds the model after this */
    swap_destroy(ss->models); /* stops the engine: its cache store flushes */
    tp_destroy(ss->pool);
    sem_logger_destroy(ss->lg);
}

int app_cmd_serve(int argc, char **argv)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    serve_state ss;
    memset(&ss, 0, sizeof ss);
    sem_err err;
    sem_err_clear(&err);
    bool help = false;
    if (app_serve_config_resolve(argc, argv, NULL, &ss.cfg, &help, &err)) {
        fprintf(stderr, "semantic serve: %s\n", err.msg);
        return 2;
    }
    if (help) {
        app_serve_config_usage(stdout);
        return 0;
    }
    malloc_returns_memory();
    ss.lg = sem_logger_create(stderr, level_of(ss.cfg.log_level));
    sem_status st = start_http(&ss, &err);
    if (!st) st = load_first_model(&ss, &err);
    if (st) {
        sem_log(ss.lg, SEM_LOG_ERROR, "serve: %s", err.msg);
        teardown(&ss);
        return 1;
    }
    int sig = wait_for_signal(&set);
    sem_log(ss.lg, SEM_LOG_INFO, "serve: %s received: draining (up to %ld s)",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", ss.cfg.drain_timeout_s);
    int32_t cancelled = srv_drain(ss.srv, (int64_t)ss.cfg.drain_timeout_s * 1000);
    persist_caches(&ss);
    teardown(&ss);
    fprintf(stderr, "semantic serve: stopped (%d requests cancelled at the drain timeout)\n",
            (int)cancelled);
    return 0;
}
