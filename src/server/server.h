/* server.h - the door of the server room: the HTTP front end of Semantic.
 *
 * `semantic serve` builds an srv_server on libmicrohttpd (an epoll thread
 * pool; connections of streams are suspended between tokens, so no thread is
 * pinned per stream) and serves:
 *   OpenAI     POST /v1/chat/completions, POST /v1/completions,
 *              GET /v1/models, GET /v1/models/{id}
 *   Anthropic  POST /v1/messages, POST /v1/messages/count_tokens
 *              (GET /v1/models answers in Anthropic's shape when the request
 *              carries an `anthropic-version` header)
 *   agents     GET /v1/agents, GET/DELETE /v1/agents/{id} (agent caches)
 *   admin      /admin/models/{current,available,swap}, DELETE /admin/caches
 *              (X-Admin-Key)
 *   health     /health, /health/live, /health/startup, /health/ready
 *   metrics    /metrics (Prometheus text format)
 *
 * HTTP threads parse, render and tokenize the prompt, then hand the request
 * to the engine (eng_submit) and stream its events; they never compute.
 * The model comes from the swap manager (swap/swap.h): every request that
 * needs it takes the current bundle with swap_acquire and gives it back
 * when it is completely over (a stream included), so a swap drains by
 * waiting for those requests. A request arriving during a swap is parked
 * (its connection suspended, no thread held) until the swap ends or its own
 * queue timeout passes (503 with Retry-After). A swap runs on a thread of
 * its own while its admin connection is suspended.
 *
 * The server starts before the first model is loaded (state LOADING:
 * model requests get 503) and serves once srv_set_models hands it the
 * swap manager.
 *
 * Thread: srv_start/srv_drain/srv_stop on the owner (app/) thread;
 * srv_set_models and srv_get_state from any thread.
 */
#ifndef SEM_SERVER_H
#define SEM_SERVER_H

#include "base/base.h"
#include "engine/engine.h"
#include "swap/swap.h"
#include "tokenizer/tokenizer.h"

/* ---- named limits ---------------------------------------------------- */
#define SRV_DEFAULT_MAX_BODY_BYTES ((size_t)4 << 20) /* 413 above this */
#define SRV_MAX_BODY_BYTES ((size_t)256 << 20)       /* the largest allowed setting */
#define SRV_DEFAULT_MAX_JSON_DEPTH 64                /* nesting of [] and {} */
#define SRV_MAX_JSON_DEPTH 1024
#define SRV_MAX_ID_BYTES 128      /* request ids and agent ids */
#define SRV_MAX_STOP 16           /* stop strings per request */
#define SRV_MAX_STOP_BYTES 256    /* one stop string */
#define SRV_MAX_MESSAGES 10000    /* messages per request */
#define SRV_MAX_TOOLS 256         /* tools per request */
#define SRV_MAX_API_KEYS 64

/* The server's own lifecycle. While SERVING, the state probes report is
 * the swap manager's (serving, draining, swapping, rolling_back,
 * degraded); see srv_state_now. */
typedef enum srv_state {
    SRV_STATE_LOADING = 0, /* no model yet: model requests get 503 */
    SRV_STATE_SERVING,     /* the swap manager is set */
    SRV_STATE_SHUTTING_DOWN, /* srv_drain ran: new requests get 503 */
} srv_state;

const char *srv_state_name(srv_state s); /* "loading", "serving", "shutting_down" */

/* How a model writes tool calls in its output. */
typedef enum srv_tool_format {
    SRV_TOOLS_NONE = 0, /* the template does not render tools */
    SRV_TOOLS_HERMES,   /* Qwen2.5/Qwen3/Hermes: <tool_call>{"name":..,"arguments":..}</tool_call> */
    SRV_TOOLS_LLAMA3,   /* Llama 3.1+: [<|python_tag|>]{"name":..,"parameters":..}[; ...] */
} srv_tool_format;

const char *srv_tool_format_name(srv_tool_format f);
/* Guesses the format from a chat template's source text (NULL ok). */
srv_tool_format srv_tool_format_detect(const char *template_src);

typedef struct srv_config {
    const char *host;              /* "127.0.0.1"; "0.0.0.0" or "::" for all */
    uint16_t port;                 /* 0 = any free port (see srv_port) */
    int32_t http_threads;          /* MHD thread pool size */
    size_t max_body_bytes;         /* 413 above */
    int32_t max_json_depth;
    uint32_t idle_timeout_s;       /* idle / stalled-upload connection timeout */
    int32_t max_inflight;          /* generations at once; 503 above */
    int64_t queue_timeout_ms;      /* engine admission timeout; 0 = never */
    int32_t default_max_tokens;    /* when the request gives none; 0 = rest of the context */
    double rate_limit_rps;         /* global token bucket; 0 = off */
    double rate_limit_burst;
    double agent_rate_limit_rps;   /* per agent id; 0 = off */
    double agent_rate_limit_burst;
    double ready_pool_fraction;    /* /health/ready is 503 above this pool use */
    const char *api_keys;          /* comma-separated; NULL/"" = no auth */
    const char *admin_key;         /* NULL/"" = admin routes refused */
    const char *cors_origins;      /* comma-separated origins or "*"; NULL = no CORS */
    bool test_hooks;               /* accept "semantic_test_completion" */
    /* where models come from (GET /admin/models/available) */
    const char *models_dir;        /* may be NULL */
    const char *hf_cache;          /* may be NULL: the default hub cache */
    /* settings of every model's engine, reported by /admin/models/current */
    int32_t block_tokens;
    const char *kv_format;         /* "f16", "q8", "q4", "f32" */
    sem_logger *lg;                /* borrowed */
} srv_config;

srv_config srv_default_config(void);

typedef struct srv_server srv_server; /* opaque */

/* Validates cfg, binds and starts the HTTP threads (state LOADING). Copies
 * every string in cfg. */
sem_status srv_start(const srv_config *cfg, srv_server **out, sem_err *err);
uint16_t srv_port(const srv_server *s); /* the bound port */
/* Hands the server the swap manager (borrowed: it must outlive srv_stop)
 * and moves it to SERVING. rss_baseline_bytes is the process RSS measured
 * before the first model was loaded (reported by /admin/models/current). */
void srv_set_models(srv_server *s, swap_mgr *sm, uint64_t rss_baseline_bytes);
srv_state srv_get_state(const srv_server *s);
/* Number of generations (requests holding an engine request) now. */
int32_t srv_n_inflight(const srv_server *s);
/* Graceful shutdown, step one: stop accepting connections, answer new
 * requests on open connections with 503, and wait up to timeout_ms for
 * the running generations to finish; then cancel what is left and wait
 * for it to end. Returns the number of generations that were cancelled. */
int32_t srv_drain(srv_server *s, int64_t timeout_ms);
/* Stops the HTTP threads and frees the server. NULL ok. Call srv_drain
 * first (srv_stop also cancels and waits, briefly, for safety; a swap in
 * progress is waited for). */
void srv_stop(srv_server *s);

#endif /* SEM_SERVER_H */
