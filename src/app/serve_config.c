/* serve_config.c - the settings table of `semantic serve` and its
 * resolution: flag, then SEMANTIC_* variable, then default.
 *
 * Every value is checked against its range whichever source it came from,
 * and an error names that source ("--port", "SEMANTIC_PORT"), so a bad
 * environment is as easy to fix as a bad flag.
 *
 * Thread: the main thread.
 */
#include "app/serve_config.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum set_type { SET_STR = 0, SET_LONG, SET_NUM, SET_BOOL } set_type;

typedef struct setting {
    const char *flag;  /* without "--"; NULL = environment only */
    const char *env;
    set_type type;
    const char *dflt;  /* NULL = unset */
    double lo, hi;     /* SET_LONG / SET_NUM */
    size_t offset;     /* into app_serve_config */
    const char *help;
} setting;

#define OFF(f) offsetof(app_serve_config, f)
#define BIG 1e15

static const setting settings[] = {
    {"model", "SEMANTIC_MODEL", SET_STR, NULL, 0, 0, OFF(model), "initial model: an id (org/name under --models-dir or in the HF hub cache) or a directory (required)"},
    {"models-dir", "SEMANTIC_MODELS_DIR", SET_STR, NULL, 0, 0, OFF(models_dir), "directory of models (org/name/config.json or name/config.json) for ids and swaps"},
    {"hf-cache", "SEMANTIC_HF_CACHE", SET_STR, NULL, 0, 0, OFF(hf_cache), "Hugging Face hub cache to resolve ids in (default $HF_HOME/hub or ~/.cache/huggingface/hub)"},
    {"cache-dir", "SEMANTIC_CACHE_DIR", SET_STR, NULL, 0, 0, OFF(cache_dir), "agent cache files (default $XDG_CACHE_HOME/semantic or ~/.cache/semantic; none = RAM only)"},
    {"cache-disk-mb", "SEMANTIC_CACHE_DISK_MB", SET_LONG, "0", 0, 1e12, OFF(cache_disk_mb), "disk quota of agent cache files per model, MiB (0 = unlimited)"},
    {"cache-compat", "SEMANTIC_CACHE_COMPAT", SET_STR, "model", 0, 0, OFF(cache_compat), "reuse a cache file when the model fingerprint matches (model) or only its geometry (dims)"},
    {"host", "SEMANTIC_HOST", SET_STR, "127.0.0.1", 0, 0, OFF(host), "address to listen on (0.0.0.0 or :: for all)"},
    {"port", "SEMANTIC_PORT", SET_LONG, "8000", 0, 65535, OFF(port), "TCP port (0 = any free port)"},
    {"port-file", "SEMANTIC_PORT_FILE", SET_STR, NULL, 0, 0, OFF(port_file), "write the bound port to this file once listening"},
    {"http-threads", "SEMANTIC_HTTP_THREADS", SET_LONG, "4", 1, 256, OFF(http_threads), "HTTP threads (epoll thread pool; streams do not pin threads)"},
    {"max-body-bytes", "SEMANTIC_MAX_BODY_BYTES", SET_LONG, "4194304", 1024, 268435456, OFF(max_body_bytes), "largest request body; larger gets 413"},
    {"max-json-depth", "SEMANTIC_MAX_JSON_DEPTH", SET_LONG, "64", 2, 1024, OFF(max_json_depth), "deepest JSON nesting accepted in a body"},
    {"idle-timeout-s", "SEMANTIC_IDLE_TIMEOUT_S", SET_LONG, "60", 1, 86400, OFF(idle_timeout_s), "close connections idle (or stuck mid-upload) this long"},
    {"max-inflight", "SEMANTIC_MAX_INFLIGHT", SET_LONG, "256", 1, 1000000, OFF(max_inflight), "generations at once; more get 503 with Retry-After"},
    {"cors-origins", "SEMANTIC_CORS_ORIGINS", SET_STR, NULL, 0, 0, OFF(cors_origins), "comma-separated allowed browser origins, or *"},
    {NULL, "SEMANTIC_API_KEYS", SET_STR, NULL, 0, 0, OFF(api_keys), "comma-separated API keys; when set, /v1/* needs one (Bearer or x-api-key)"},
    {NULL, "SEMANTIC_ADMIN_KEY", SET_STR, NULL, 0, 0, OFF(admin_key), "X-Admin-Key for /admin/*; unset = admin routes refused"},
    {"rate-limit-rps", "SEMANTIC_RATE_LIMIT_RPS", SET_NUM, "0", 0, 1e9, OFF(rate_limit_rps), "global generation requests per second (0 = off)"},
    {"rate-limit-burst", "SEMANTIC_RATE_LIMIT_BURST", SET_NUM, "1", 0, 1e9, OFF(rate_limit_burst), "global bucket size"},
    {"agent-rate-limit-rps", "SEMANTIC_AGENT_RATE_LIMIT_RPS", SET_NUM, "0", 0, 1e9, OFF(agent_rate_limit_rps), "requests per second per agent id (0 = off)"},
    {"agent-rate-limit-burst", "SEMANTIC_AGENT_RATE_LIMIT_BURST", SET_NUM, "1", 0, 1e9, OFF(agent_rate_limit_burst), "per-agent bucket size"},
    {"ready-pool-fraction", "SEMANTIC_READY_POOL_FRACTION", SET_NUM, "0.95", 0.01, 1, OFF(ready_pool_fraction), "/health/ready says pool_full above this KV pool use"},
    {"drain-timeout-s", "SEMANTIC_DRAIN_TIMEOUT_S", SET_LONG, "30", 0, 86400, OFF(drain_timeout_s), "on SIGTERM/SIGINT, wait this long for running requests"},
    {"threads", "SEMANTIC_THREADS", SET_LONG, "0", 0, 256, OFF(threads), "compute threads (0 = one per core)"},
    {"max-batch", "SEMANTIC_MAX_BATCH", SET_LONG, "8", 1, 256, OFF(max_batch), "sequences decoded together per step"},
    {"prefill-chunk", "SEMANTIC_PREFILL_CHUNK", SET_LONG, "512", 16, 8192, OFF(prefill_chunk), "prompt tokens prefilled per step"},
    {"max-ctx", "SEMANTIC_MAX_CTX", SET_LONG, "0", 0, 1048576, OFF(max_ctx), "context per sequence (0 = the model's, at most 32768)"},
    {"kv-budget-mb", "SEMANTIC_KV_BUDGET_MB", SET_LONG, "256", 1, 1048576, OFF(kv_budget_mb), "KV block pool size in MiB"},
    {"kv-bits", "SEMANTIC_KV_BITS", SET_LONG, "16", 4, 32, OFF(kv_bits), "KV cache format: 16 (f16), 8, 4 or 32 (f32)"},
    {"block-tokens", "SEMANTIC_BLOCK_TOKENS", SET_LONG, "256", 16, 4096, OFF(block_tokens), "tokens per KV block (the unit of prefix sharing and cache geometry)"},
    {"queue-timeout-ms", "SEMANTIC_QUEUE_TIMEOUT_MS", SET_LONG, "0", 0, 86400000, OFF(queue_timeout_ms), "give up (503) on requests not admitted this fast (0 = never)"},
    {"default-max-tokens", "SEMANTIC_DEFAULT_MAX_TOKENS", SET_LONG, "0", 0, 1048576, OFF(default_max_tokens), "completion budget when a request names none (0 = rest of the context)"},
    {"log-level", "SEMANTIC_LOG_LEVEL", SET_STR, "info", 0, 0, OFF(log_level), "debug, info, warn or error"},
    {"test-hooks", "SEMANTIC_TEST_HOOKS", SET_BOOL, "0", 0, 0, OFF(test_hooks), "accept \"semantic_test_completion\" (tests only)"},
    {"test-fail-load-id", "SEMANTIC_TEST_FAIL_LOAD_ID", SET_STR, NULL, 0, 0, OFF(test_fail_load_id), "loading this model id fails as if its files were bad (tests only; needs --test-hooks)"},
};
#define N_SETTINGS (sizeof settings / sizeof settings[0])

const char *app_serve_config_env_name(size_t i) { return i < N_SETTINGS ? settings[i].env : NULL; }

void app_serve_config_usage(FILE *f)
{
    fprintf(f, "usage: semantic serve --model ID|DIR [options]\n\n"
               "Serves the OpenAI and Anthropic APIs. Each setting resolves from its flag,\n"
               "then its environment variable, then the default.\n\n");
    for (size_t i = 0; i < N_SETTINGS; i++) {
        const setting *s = &settings[i];
        char flag[40];
        snprintf(flag, sizeof flag, "%s%s%s", s->flag ? "--" : "", s->flag ? s->flag : "(env only)",
                 s->type == SET_BOOL || !s->flag ? "" : " V");
        fprintf(f, "  %-28s %-32s %s%s%s%s\n", flag, s->env, s->help, s->dflt ? " [" : "",
                s->dflt ? s->dflt : "", s->dflt ? "]" : "");
    }
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off", ""};
    for (size_t i = 0; i < 4; i++)
        if (!strcasecmp(v, yes[i])) return *out = true, true;
    for (size_t i = 0; i < 5; i++)
        if (!strcasecmp(v, no[i])) return *out = false, true;
    return false;
}

/* Stores value v (from `source`) into the setting's field. */
static sem_status store(const setting *s, const char *v, const char *source, app_serve_config *c,
                        sem_err *err)
{
    char *field = (char *)c + s->offset;
    char *end;
    errno = 0;
    switch (s->type) {
    case SET_STR: *(const char **)(void *)field = v; return SEM_OK;
    case SET_BOOL:
        if (!parse_bool(v, (bool *)(void *)field))
            return sem_errf(err, SEM_EINVAL, "%s: expected true or false, got '%.40s'", source, v);
        return SEM_OK;
    case SET_LONG: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || (double)x < s->lo || (double)x > s->hi)
            return sem_errf(err, SEM_EINVAL, "%s: expected an integer in %.0f..%.0f, got '%.40s'",
                            source, s->lo, s->hi, v);
        *(long *)(void *)field = x;
        return SEM_OK;
    }
    case SET_NUM: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || x < s->lo || x > s->hi)
            return sem_errf(err, SEM_EINVAL, "%s: expected a number in %g..%g, got '%.40s'", source,
                            s->lo, s->hi, v);
        *(double *)(void *)field = x;
        return SEM_OK;
    }
    }
    return SEM_OK;
}

/* Finds the setting for "--name" or "--name=value"; *val gets the inline
 * value or NULL. */
static const setting *find_flag(const char *arg, const char **val)
{
    if (strncmp(arg, "--", 2)) return NULL;
    arg += 2;
    const char *eq = strchr(arg, '=');
    size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
    *val = eq ? eq + 1 : NULL;
    for (size_t i = 0; i < N_SETTINGS; i++)
        if (settings[i].flag && strlen(settings[i].flag) == n && !strncmp(settings[i].flag, arg, n))
            return &settings[i];
    return NULL;
}

static sem_status apply_flags(int argc, char **argv, app_serve_config *c, bool *seen, bool *help,
                              sem_err *err)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            *help = true;
            return SEM_OK;
        }
        const char *val;
        const setting *s = find_flag(argv[i], &val);
        if (!s) return sem_errf(err, SEM_EINVAL, "unknown option '%.60s' (see semantic serve --help)", argv[i]);
        if (!val && s->type == SET_BOOL) val = "1";
        else if (!val) {
            if (i + 1 >= argc) return sem_errf(err, SEM_EINVAL, "--%s needs a value", s->flag);
            val = argv[++i];
        }
        char source[64];
        snprintf(source, sizeof source, "--%s", s->flag);
        sem_status st = store(s, val, source, c, err);
        if (st) return st;
        seen[s - settings] = true;
    }
    return SEM_OK;
}

static const char *sys_getenv(const char *name) { return getenv(name); }

sem_status app_serve_config_resolve(int argc, char **argv, app_getenv_fn env,
                                    app_serve_config *out, bool *help, sem_err *err)
{
    app_serve_config c;
    memset(&c, 0, sizeof c);
    bool seen[N_SETTINGS] = {0};
    *help = false;
    if (!env) env = sys_getenv;
    sem_status st;
    for (size_t i = 0; i < N_SETTINGS; i++) /* defaults */
        if (settings[i].dflt && (st = store(&settings[i], settings[i].dflt, "default", &c, err)))
            return st;
    if ((st = apply_flags(argc, argv, &c, seen, help, err)) || *help) {
        if (*help) *out = c;
        return st;
    }
    for (size_t i = 0; i < N_SETTINGS; i++) { /* the environment fills what flags did not */
        const char *v = seen[i] ? NULL : env(settings[i].env);
        if (v && (st = store(&settings[i], v, settings[i].env, &c, err))) return st;
    }
    if (!c.model || !*c.model)
        return sem_errf(err, SEM_EINVAL, "--model ID|DIR is required (or SEMANTIC_MODEL)");
    if (strcmp(c.cache_compat, "model") && strcmp(c.cache_compat, "dims"))
        return sem_errf(err, SEM_EINVAL, "--cache-compat must be model or dims (got '%.40s')", c.cache_compat);
    if (c.test_fail_load_id && *c.test_fail_load_id && !c.test_hooks)
        return sem_errf(err, SEM_EINVAL, "--test-fail-load-id needs --test-hooks (it is a test hook)");
    if (c.kv_bits != 4 && c.kv_bits != 8 && c.kv_bits != 16 && c.kv_bits != 32)
        return sem_errf(err, SEM_EINVAL, "--kv-bits must be 4, 8, 16 or 32 (got %ld)", c.kv_bits);
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    bool lvl_ok = false;
    for (size_t i = 0; i < 4; i++) lvl_ok |= !strcmp(c.log_level, levels[i]);
    if (!lvl_ok) return sem_errf(err, SEM_EINVAL, "--log-level must be debug, info, warn or error");
    *out = c;
    return SEM_OK;
}
