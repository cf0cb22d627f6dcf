/* cmd_serve.c - `semantic serve`: wires the HTTP server to the engine and
 * runs until SIGTERM or SIGINT.
 *
 * Order: block the signals (every thread started later inherits the mask,
 * so they reach only the main thread's sigtimedwait: no handler, no global
 * flag) -> resolve the config -> start HTTP (state "loading": probes
 * answer, generation gets 503) -> load the model, tokenizer, chat template
 * -> start the engine -> set the backend, state "serving" -> wait for a
 * signal -> drain (stop accepting, wait up to the drain timeout, cancel the
 * rest) -> [persist caches: the cache issue adds it here] -> stop HTTP ->
 * stop the engine -> exit 0.
 *
 * Thread: main.
 */
#include "app/commands.h"
#include "app/runtime.h"
#include "app/serve_config.h"
#include "engine/engine.h"
#include "server/server.h"
#include "tokenizer/tokenizer.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct serve_state {
    app_serve_config cfg;
    sem_logger *lg;               /* owned */
    srv_server *srv;              /* owned */
    app_runtime rt;               /* owned */
    tok_tokenizer *tok;           /* owned */
    tok_chat_template *chat;      /* owned; NULL when the model has none */
    eng_engine *eng;              /* owned */
    tok_id *stop_ids;             /* owned: end-of-turn ids of the template */
    size_t n_stop_ids;
    char model_id[256];
    char dtype[16];
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

/* The template's end-of-turn strings as token ids, for the engine's stop set. */
static sem_status collect_stop_ids(serve_state *ss, sem_err *err)
{
    size_t n = ss->chat ? tok_chat_n_stop_strings(ss->chat) : 0;
    ss->stop_ids = sem_calloc(n ? n : 1, sizeof *ss->stop_ids);
    if (!ss->stop_ids) return sem_errf(err, SEM_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *s = tok_chat_stop_string(ss->chat, i);
        tok_id id;
        if (tok_piece_to_id(ss->tok, s, strlen(s), &id)) ss->stop_ids[ss->n_stop_ids++] = id;
    }
    return SEM_OK;
}

static srv_tool_format detect_tools(const tok_tokenizer *tok)
{
    for (size_t i = 0; i < tok_config_template_count(tok); i++) {
        srv_tool_format f = srv_tool_format_detect(tok_config_template(tok, i, NULL));
        if (f != SRV_TOOLS_NONE) return f;
    }
    return SRV_TOOLS_NONE;
}

static sem_status load_model(serve_state *ss, sem_err *err)
{
    const app_serve_config *c = &ss->cfg;
    size_t max_tokens = (size_t)c->prefill_chunk + (size_t)c->max_batch;
    sem_status st = app_runtime_open(&ss->rt, c->model, (int)c->threads, max_tokens, err);
    if (st) return st;
    sem_logger_set_level(ss->rt.lg, level_of(c->log_level));
    if ((st = tok_load_dir(c->model, &ss->tok, err))) return st;
    st = tok_chat_template_load(c->model, &ss->chat, err);
    if (st == SEM_ENOTFOUND) {
        sem_log(ss->lg, SEM_LOG_WARN, "model has no chat template: only /v1/completions works");
        ss->chat = NULL;
    } else if (st) {
        return st;
    }
    if ((st = collect_stop_ids(ss, err))) return st;
    eng_params ep = eng_default_params();
    ep.m = ss->rt.m;
    ep.tok = ss->tok;
    ep.kc = ss->rt.kc;
    ep.lg = ss->lg;
    ep.max_batch = (int32_t)c->max_batch;
    ep.prefill_chunk = (int32_t)c->prefill_chunk;
    ep.kv_budget_bytes = (size_t)c->kv_budget_mb << 20;
    ep.kv_dtype = kv_dtype_of(c->kv_bits);
    ep.max_ctx = (int32_t)c->max_ctx;
    ep.stop_ids = ss->stop_ids;
    ep.n_stop_ids = ss->n_stop_ids;
    return eng_start(&ep, &ss->eng, err);
}

static void set_backend(serve_state *ss)
{
    const model_spec *spec = model_get_spec(ss->rt.m);
    if (ss->cfg.model_id) {
        snprintf(ss->model_id, sizeof ss->model_id, "%s", ss->cfg.model_id);
    } else {
        const char *m = ss->cfg.model;
        size_t n = strlen(m);
        while (n > 1 && m[n - 1] == '/') n--;
        size_t b = n;
        while (b > 0 && m[b - 1] != '/') b--;
        snprintf(ss->model_id, sizeof ss->model_id, "%.*s", (int)(n - b), m + b);
    }
    if (spec->quant_bits) snprintf(ss->dtype, sizeof ss->dtype, "q%d", spec->quant_bits);
    else snprintf(ss->dtype, sizeof ss->dtype, "float");
    srv_backend b = {0};
    b.eng = ss->eng;
    b.tok = ss->tok;
    b.chat = ss->chat;
    b.tool_format = ss->chat ? detect_tools(ss->tok) : SRV_TOOLS_NONE;
    b.model_id = ss->model_id;
    b.model_arch = spec->arch_name;
    b.model_dtype = ss->dtype;
    b.max_ctx = eng_max_ctx(ss->eng);
    srv_set_backend(ss->srv, &b);
    sem_log(ss->lg, SEM_LOG_INFO, "serving model=%s arch=%s dtype=%s max_ctx=%d tools=%s stop_ids=%zu",
            b.model_id, b.model_arch, b.model_dtype, (int)b.max_ctx,
            srv_tool_format_name(b.tool_format), ss->n_stop_ids);
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

static void teardown(serve_state *ss)
{
    srv_stop(ss->srv);
    eng_stop(ss->eng);
    tok_chat_template_destroy(ss->chat);
    tok_destroy(ss->tok);
    free(ss->stop_ids);
    app_runtime_close(&ss->rt);
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
    ss.lg = sem_logger_create(stderr, level_of(ss.cfg.log_level));
    sem_status st = start_http(&ss, &err);
    if (!st) st = load_model(&ss, &err);
    if (st) {
        sem_log(ss.lg, SEM_LOG_ERROR, "serve: %s", err.msg);
        teardown(&ss);
        return 1;
    }
    set_backend(&ss);
    srv_set_state(ss.srv, SRV_STATE_SERVING);
    int sig = wait_for_signal(&set);
    sem_log(ss.lg, SEM_LOG_INFO, "serve: %s received: draining (up to %ld s)",
            sig == SIGTERM ? "SIGTERM" : "SIGINT", ss.cfg.drain_timeout_s);
    int32_t cancelled = srv_drain(ss.srv, (int64_t)ss.cfg.drain_timeout_s * 1000);
    /* The cache issue persists agent caches here, before the engine stops. */
    teardown(&ss);
    fprintf(stderr, "semantic serve: stopped (%d requests cancelled at the drain timeout)\n",
            (int)cancelled);
    return 0;
}
