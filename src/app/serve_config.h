/* serve_config.h - the settings of `semantic serve` and how they resolve:
 * a command-line flag first, then its SEMANTIC_* environment variable,
 * then the default. One table (serve_config.c) lists every setting with
 * its flag, variable, default, range and help; --help and the README's
 * "Configuration" section come from the same facts (a test checks that the
 * README names every variable).
 *
 * Secrets (API keys, the admin key) have no flag, so they never show in
 * `ps`; they come from the environment only.
 *
 * Thread: the main thread, before anything starts.
 */
#ifndef SEM_APP_SERVE_CONFIG_H
#define SEM_APP_SERVE_CONFIG_H

#include "base/base.h"

typedef struct app_serve_config {
    /* models */
    const char *model;             /* --model ID|DIR: the first model (required) */
    const char *models_dir;        /* where ids resolve (org/name); NULL = none */
    const char *hf_cache;          /* NULL = $HF_HOME/hub or ~/.cache/huggingface/hub */
    /* agent caches */
    const char *cache_dir;         /* NULL = the default (see cmd_serve.c); "none" = RAM only */
    long cache_disk_mb;            /* 0 = unlimited */
    const char *cache_compat;      /* "model" or "dims" */
    /* HTTP */
    const char *host;
    long port;
    const char *port_file;         /* write the bound port here (tests use --port 0) */
    long http_threads;
    long max_body_bytes;
    long max_json_depth;
    long idle_timeout_s;
    long max_inflight;
    const char *cors_origins;
    const char *api_keys;          /* env only */
    const char *admin_key;         /* env only */
    double rate_limit_rps, rate_limit_burst;
    double agent_rate_limit_rps, agent_rate_limit_burst;
    double ready_pool_fraction;
    long drain_timeout_s;
    /* engine */
    long threads;                  /* compute threads; 0 = one per core */
    long max_batch;
    long prefill_chunk;
    long max_ctx;                  /* 0 = the model's (capped at 32768) */
    long kv_budget_mb;
    long kv_bits;                  /* 16, 8, 4 or 32 */
    long block_tokens;
    long queue_timeout_ms;
    long default_max_tokens;
    /* misc */
    const char *log_level;         /* debug, info, warn, error */
    bool test_hooks;
    const char *test_fail_load_id; /* test hook: loading this id fails */
} app_serve_config;

typedef const char *(*app_getenv_fn)(const char *name);

/* Resolves argv (argv[0] is the command name) and the environment (getenv
 * when env is NULL) into *out. *help is set for --help. SEM_EINVAL names
 * the flag or variable that is wrong and what it expects. Strings in *out
 * point into argv or the environment. */
sem_status app_serve_config_resolve(int argc, char **argv, app_getenv_fn env,
                                    app_serve_config *out, bool *help, sem_err *err);
/* Prints the settings table (flag, variable, default, help). */
void app_serve_config_usage(FILE *f);
/* The i-th setting's environment variable, NULL past the end (tests). */
const char *app_serve_config_env_name(size_t i);

#endif /* SEM_APP_SERVE_CONFIG_H */
