/* srv_int.h - inside the server room: the pieces behind server.h, each in
 * its own file so that each can be tested without a socket or an engine.
 *
 *   errors.c      one table: sem_status -> HTTP status -> OpenAI / Anthropic
 *                 error types; the two error envelopes
 *   ids.c         request ids, agent ids, random ids (chatcmpl-, call_, msg_)
 *   jsonlim.c     JSON bodies with a nesting limit; UTF-8 repair for output
 *   auth.c        API keys and the admin key (constant-time compare)
 *   ratelimit.c   token buckets (global and per agent)
 *   metrics.c     counters and histograms, Prometheus text rendering
 *   sse.c         server-sent event framing
 *   toolcall.c    tool-call parsers for each model family (streaming)
 *   request.c     the API-neutral generation request (srv_gen_req) and the
 *                 shared field parsers; prompt building (template + encode)
 *   api_openai.c  OpenAI bodies -> srv_gen_req; OpenAI responses and chunks
 *   api_anthropic.c  the same for Anthropic
 *   api_admin.c   admin routes: the current and available models, the
 *                 swap (a job on its own thread), clearing caches
 *   api_agents.c  the agents API (agent caches: list, get, delete)
 *   endpoints.c   handlers of the generation, count_tokens and model routes
 *   health.c      health routes and /metrics
 *   gen.c         a generation: engine request + response state (pump)
 *   routes.c      the route table
 *   models.c      the current model for a request: acquire/release of the
 *                 swap manager's bundle, parking requests during a swap
 *   http.c        libmicrohttpd glue, suspend/resume, the disconnect
 *                 watchdog, jobs, drain and the server lifecycle
 *
 * Thread: everything here runs on HTTP threads unless it says otherwise.
 */
#ifndef SEM_SRV_INT_H
#define SEM_SRV_INT_H

#include "server/server.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

/* ===================================================================== */
/* Errors (errors.c)                                                      */
/* ===================================================================== */

typedef enum srv_api {
    SRV_API_OPENAI = 0, /* {"error":{"message","type","param","code"}} */
    SRV_API_ANTHROPIC,  /* {"type":"error","error":{"type","message"}} */
} srv_api;

/* An error on its way to the client. */
typedef struct srv_error {
    int http_status;            /* 0 = no error */
    const char *code;           /* OpenAI "code" (static string) or NULL */
    char param[64];             /* OpenAI "param" (JSON pointer-ish), "" = null */
    char message[SEM_ERR_MSG_BYTES];
    double retry_after_s;       /* > 0: a Retry-After header */
} srv_error;

/* Sets e and returns false, so a validation failure is one line:
 *   return srv_errorf(e, 400, NULL, "max_tokens", "must be >= 1"); */
bool srv_errorf(srv_error *e, int http_status, const char *code, const char *param,
                const char *fmt, ...) SEM_PRINTF(5, 6);
/* The HTTP status for a sem_status (the table). */
int srv_http_status_for(sem_status st);
/* Error from a sem_err: status from the table, the message as is. */
bool srv_error_from(srv_error *e, const sem_err *err, const char *param);
const char *srv_error_type(srv_api api, int http_status); /* "invalid_request_error" ... */
const char *srv_http_reason(int http_status);             /* "Bad Request" */
/* The envelope as a JSON object (new reference; NULL on OOM). */
json_t *srv_error_envelope(srv_api api, const srv_error *e);

/* ===================================================================== */
/* Ids (ids.c)                                                            */
/* ===================================================================== */

/* Request ids: [A-Za-z0-9._-]{1,128}. */
bool srv_request_id_valid(const char *s, size_t len);
/* Agent ids: [A-Za-z0-9_.-]{1,128}, not starting with '.'. Such a name is
 * safe as a file name component. */
bool srv_agent_id_valid(const char *s, size_t len);

/* Unique ids: a per-server random key and a counter through splitmix64.
 * Thread: any. */
typedef struct srv_idgen {
    uint64_t key;
    _Atomic uint64_t counter;
} srv_idgen;

void srv_idgen_init(srv_idgen *g, uint64_t key);
uint64_t srv_idgen_u64(srv_idgen *g);
/* prefix + 24 lowercase hex digits into out; cap >= strlen(prefix) + 25. */
void srv_idgen_str(srv_idgen *g, const char *prefix, char *out, size_t cap);
/* A random 64-bit value from getrandom(2) (clock mixed in if it fails). */
uint64_t srv_random_seed(void);

/* ===================================================================== */
/* JSON with limits (jsonlim.c)                                           */
/* ===================================================================== */

/* Parses a request body: an object, nesting at most max_depth, valid UTF-8,
 * no NUL in strings. 400 errors say where (line, column or byte). */
bool srv_json_parse_body(const char *data, size_t len, int32_t max_depth, json_t **out,
                         srv_error *e);
/* Appends s[0..len) to out as valid UTF-8: bad sequences become U+FFFD. */
bool srv_utf8_repair(const char *s, size_t len, buf *out);
/* json_stringn that never fails on bad UTF-8 (repairs it). NULL on OOM. */
json_t *srv_json_text(const char *s, size_t len);
/* Compact dump of v appended to out (no newline). */
bool srv_json_append(buf *out, const json_t *v);

/* ===================================================================== */
/* Auth (auth.c)                                                          */
/* ===================================================================== */

typedef struct srv_auth {
    char *keys[SRV_MAX_API_KEYS]; /* owned */
    size_t n_keys;
    char *admin_key;              /* owned; NULL = admin disabled */
} srv_auth;

typedef enum srv_admin_check {
    SRV_ADMIN_OK = 0,
    SRV_ADMIN_DISABLED, /* no admin key configured: 403 */
    SRV_ADMIN_MISSING,  /* 401 */
    SRV_ADMIN_WRONG,    /* 401 */
} srv_admin_check;

sem_status srv_auth_init(srv_auth *a, const char *api_keys_csv, const char *admin_key,
                         sem_err *err);
void srv_auth_fini(srv_auth *a);
bool srv_auth_required(const srv_auth *a);
/* authorization: the Authorization header ("Bearer k"), x_api_key the
 * x-api-key header; either may be NULL. True when auth is off or a key
 * matches. */
bool srv_auth_check_api(const srv_auth *a, const char *authorization, const char *x_api_key);
srv_admin_check srv_auth_check_admin(const srv_auth *a, const char *x_admin_key);
/* Compares a guess with a secret in time that depends only on the
 * secret's length. */
bool srv_ct_equal(const char *guess, size_t guess_len, const char *secret, size_t secret_len);

/* ===================================================================== */
/* Rate limits (ratelimit.c)                                              */
/* ===================================================================== */

#define SRV_RL_MAX_KEYS 65536 /* agents tracked at once; the stalest is evicted */

typedef struct srv_rl srv_rl; /* opaque; Thread: any (one mutex) */

/* rps <= 0 disables it (srv_rl_take always allows). burst < 1 means 1. */
sem_status srv_rl_create(double rps, double burst, size_t max_keys, srv_rl **out, sem_err *err);
void srv_rl_destroy(srv_rl *rl); /* NULL ok */
/* Takes one token from key's bucket (key "" for a global limit). False when
 * empty, with the seconds until a token is back in *retry_after_s. */
bool srv_rl_take(srv_rl *rl, const char *key, double now_s, double *retry_after_s);
size_t srv_rl_n_keys(srv_rl *rl);

/* ===================================================================== */
/* Metrics (metrics.c)                                                    */
/* ===================================================================== */

typedef struct srv_metrics srv_metrics; /* opaque; Thread: any (one mutex) */

typedef enum srv_counter {
    SRV_C_CLIENT_DISCONNECTS = 0,
    SRV_C_RATE_LIMITED,
    SRV_C_PROMPT_TOKENS,
    SRV_C_COMPLETION_TOKENS,
    SRV_C_CACHED_TOKENS,
    SRV_C_COUNT
} srv_counter;

typedef enum srv_swap_result {
    SRV_SWAP_OK = 0,
    SRV_SWAP_ROLLED_BACK,  /* failed; the old model serves again */
    SRV_SWAP_DEGRADED,     /* failed, and the rollback too */
    SRV_SWAP_ABANDONED,    /* the drain timed out; nothing changed */
    SRV_SWAP_RESULT_COUNT
} srv_swap_result;

typedef enum srv_cache_tier {
    SRV_TIER_HOT = 0, /* blocks still in the pool */
    SRV_TIER_WARM,    /* read back from an agent's cache file */
    SRV_TIER_COLD,    /* nothing reusable: full prefill */
    SRV_TIER_COUNT
} srv_cache_tier;

/* Gauges sampled at render time. */
typedef struct srv_gauges {
    eng_stats eng;
    bool have_eng;
    cache_stats cache;             /* the agent cache store of the current model */
    bool have_cache;
    int32_t inflight;
    const char *state;             /* srv_state_now: "serving", "swapping", ... */
    const char *model_id, *model_arch, *model_dtype; /* NULL = no model */
    int32_t max_ctx;
    uint64_t loaded_at_ms;         /* wall clock; 0 = no model */
    uint64_t rss_bytes;
} srv_gauges;

/* route_names: the route templates (borrowed, static) used as labels. */
sem_status srv_metrics_create(const char *const *route_names, size_t n_routes,
                              srv_metrics **out, sem_err *err);
void srv_metrics_destroy(srv_metrics *m); /* NULL ok */
/* route == n_routes means "unmatched" (label route="other"). */
void srv_metrics_request(srv_metrics *m, size_t route, int http_status, double duration_s);
void srv_metrics_ttft(srv_metrics *m, double s);
void srv_metrics_inter_token(srv_metrics *m, double s);
void srv_metrics_add(srv_metrics *m, srv_counter c, uint64_t n);
void srv_metrics_cache(srv_metrics *m, srv_cache_tier tier);
/* A finished swap (not the 404/409 refusals): its result, total time and
 * its steps' times (steps may be NULL). */
void srv_metrics_swap(srv_metrics *m, srv_swap_result r, double duration_s,
                      const swap_step *steps, int n_steps);
bool srv_metrics_render(srv_metrics *m, const srv_gauges *g, buf *out);
/* Resident set size from /proc/self/statm (0 if unknown). */
uint64_t srv_rss_bytes(void);

/* ===================================================================== */
/* Server-sent events (sse.c)                                             */
/* ===================================================================== */

/* "event: NAME\n" (when name) "data: JSON\n\n". */
bool srv_sse_json(buf *out, const char *event, const json_t *data);
bool srv_sse_raw(buf *out, const char *event, const char *data);

/* ===================================================================== */
/* Tool calls (toolcall.c)                                                */
/* ===================================================================== */

typedef enum srv_piece_kind {
    SRV_PIECE_TEXT = 0,   /* plain assistant text */
    SRV_PIECE_CALL_START, /* a tool call begins: name */
    SRV_PIECE_CALL_ARGS,  /* a fragment of the call's arguments JSON */
    SRV_PIECE_CALL_END,
} srv_piece_kind;

typedef struct srv_piece {
    srv_piece_kind kind;
    int32_t call_index;   /* 0, 1, ... for CALL_* */
    const char *text;     /* TEXT / CALL_ARGS fragment, or the CALL_START name */
    size_t len;
} srv_piece;

typedef void (*srv_piece_fn)(void *ctx, const srv_piece *p);

#define SRV_TC_MAX_CALL_BYTES ((size_t)1 << 20) /* one call's text */
#define SRV_TC_MAX_NAME_BYTES 256

typedef struct srv_tc srv_tc; /* opaque; Thread: one owner */

/* format NONE passes all text through. emit is called for every piece. */
srv_tc *srv_tc_create(srv_tool_format format, srv_piece_fn emit, void *ctx);
void srv_tc_destroy(srv_tc *tc); /* NULL ok */
/* Feeds the next piece of model output. False on OOM. */
bool srv_tc_feed(srv_tc *tc, const char *text, size_t len);
/* End of output: flushes held text; an unfinished call becomes text unless
 * it already streamed (then it is closed). */
bool srv_tc_finish(srv_tc *tc);
int32_t srv_tc_n_calls(const srv_tc *tc); /* calls started so far */

/* ===================================================================== */
/* The generation request (request.c)                                     */
/* ===================================================================== */

typedef enum srv_gen_kind {
    SRV_GEN_CHAT = 0,    /* OpenAI chat: messages -> template */
    SRV_GEN_COMPLETION,  /* OpenAI completions: prompt text or ids */
    SRV_GEN_MESSAGES,    /* Anthropic messages -> template */
} srv_gen_kind;

/* A validated generation request, API-neutral. Owns everything in it. */
typedef struct srv_gen_req {
    srv_gen_kind kind;
    char *model;                  /* as the client named it */
    json_t *messages;             /* chat/messages: template-ready array */
    json_t *tools;                /* template-ready tool list, or NULL */
    bool tools_parse;             /* parse tool calls from the output */
    char *prompt;                 /* completion: text (or NULL) */
    tok_ids prompt_ids;           /* completion: ids given by the client */
    int32_t max_tokens;           /* 0 = not given */
    eng_sampling sampling;
    bool seed_set;
    uint64_t seed;
    float frequency_penalty, presence_penalty, repetition_penalty;
    bool logprobs;
    int32_t top_logprobs;
    char *stop[SRV_MAX_STOP];     /* owned */
    size_t n_stop;
    bool stream;
    bool include_usage;           /* OpenAI stream_options.include_usage */
    char agent_id[SRV_MAX_ID_BYTES + 1]; /* "" = none; passes on to the engine (cache) */
    char *test_completion;        /* test hook: force this completion */
} srv_gen_req;

void srv_gen_req_init(srv_gen_req *r);
void srv_gen_req_fini(srv_gen_req *r);

/* Shared field readers: absent and null leave *out untouched and succeed.
 * Each failure is a 400 naming the field. */
bool srv_get_bool(const json_t *obj, const char *key, bool *out, srv_error *e);
bool srv_get_int(const json_t *obj, const char *key, int64_t lo, int64_t hi, int64_t *out,
                 srv_error *e);
bool srv_get_num(const json_t *obj, const char *key, double lo, double hi, double *out,
                 srv_error *e);
/* A string (borrowed from obj). */
bool srv_get_str(const json_t *obj, const char *key, size_t max_len, const char **out,
                 srv_error *e);
/* "stop": a string or a list of strings -> r->stop. */
bool srv_get_stops(const json_t *obj, const char *key, srv_gen_req *r, srv_error *e);
/* session_id / agent_id body fields (after the X-Session-ID header, which
 * wins when both are set and differ? no: they must agree). */
bool srv_get_agent(const json_t *obj, const char *header_agent, srv_gen_req *r, srv_error *e);
/* semantic_test_completion, allowed only with test hooks. */
bool srv_get_test_completion(const json_t *obj, bool test_hooks, srv_gen_req *r, srv_error *e);
/* Text of a content value: a string, or an array of {"type":"text","text"}
 * parts joined. what names the field in errors. New heap string. */
bool srv_content_text(const json_t *content, const char *what, char **out, srv_error *e);

/* What a request uses of the current model: a view of the swap bundle it
 * acquired (models.c), valid until the request releases it. Tests fill one
 * by hand (bundle NULL). */
typedef struct srv_backend {
    const swap_bundle *bundle;     /* NULL in tests */
    eng_engine *eng;
    const tok_tokenizer *tok;
    const tok_chat_template *chat; /* NULL: /v1/chat/completions and /v1/messages get 400 */
    srv_tool_format tool_format;
    const char *model_id;          /* the id it was loaded as: what /v1/models lists */
    const char *model_arch;        /* "LlamaForCausalLM" */
    char model_dtype[16];          /* "q4", "q8", "float" */
    int32_t max_ctx;               /* eng_max_ctx */
} srv_backend;

/* The view of a bundle. */
void srv_backend_from_bundle(const swap_bundle *b, srv_backend *out);

/* Renders (chat/messages) or takes (completion) the prompt and encodes it
 * exactly as generation does. 400 on template errors or bad input. */
bool srv_prompt_build(const srv_backend *b, const srv_gen_req *r, tok_ids *out, srv_error *e);

/* ===================================================================== */
/* API bodies (api_openai.c, api_anthropic.c)                              */
/* ===================================================================== */

typedef struct srv_parse_ctx {
    bool test_hooks;
    const char *header_agent;  /* validated X-Session-ID, or NULL */
} srv_parse_ctx;

bool srv_oai_parse_chat(const json_t *body, const srv_parse_ctx *pc, srv_gen_req *r,
                        srv_error *e);
bool srv_oai_parse_completion(const json_t *body, const srv_parse_ctx *pc, srv_gen_req *r,
                              srv_error *e);
/* Appends {"type":"function","function":{name, description, parameters}}
 * to tools (the form HF templates render) after checking the name. */
bool srv_tool_add(json_t *tools, const char *name, const json_t *description,
                  const json_t *parameters, size_t i, const char *what, srv_error *e);
bool srv_anth_parse_messages(const json_t *body, const srv_parse_ctx *pc, srv_gen_req *r,
                             srv_error *e);
/* count_tokens: the same fields but max_tokens is not required. */
bool srv_anth_parse_count(const json_t *body, const srv_parse_ctx *pc, srv_gen_req *r,
                          srv_error *e);

/* ===================================================================== */
/* A generation's response state (gen.c + the API formatters)             */
/* ===================================================================== */

typedef struct srv_gen srv_gen;

/* How a generation ended, in API-neutral terms. */
typedef struct srv_done {
    eng_finish finish;
    const char *stop_string;    /* borrowed; a matched user stop string or NULL */
    int32_t prompt_tokens, cached_tokens, completion_tokens;
    int32_t cache_write_tokens; /* prompt tokens newly stored in the agent cache */
    cache_tier cache_hit;       /* where the cached tokens came from */
    bool tool_calls;            /* at least one tool call was parsed */
} srv_done;

/* One API's response shapes. stream_* append SSE to out. */
typedef struct srv_fmt_ops {
    void (*stream_start)(srv_gen *g, buf *out);
    void (*stream_piece)(srv_gen *g, const srv_piece *p, buf *out);
    void (*stream_done)(srv_gen *g, const srv_done *d, buf *out);
    void (*stream_error)(srv_gen *g, const srv_error *e, buf *out);
    /* A token's logprobs (when requested): into g->pending_lp (streams,
     * sent with the next chunk) or g->logprobs (bodies). May be NULL. */
    void (*logprob)(srv_gen *g, const eng_event *tok);
    json_t *(*body)(srv_gen *g, const srv_done *d); /* the non-streaming response */
} srv_fmt_ops;

extern const srv_fmt_ops srv_oai_chat_fmt;
extern const srv_fmt_ops srv_oai_completion_fmt;
extern const srv_fmt_ops srv_anth_messages_fmt;

/* One tool call as parsed (non-streaming bodies use these). */
typedef struct srv_call_acc {
    char id[40];   /* call_... / toolu_... */
    char *name;    /* owned */
    buf args;      /* the arguments JSON text */
} srv_call_acc;

/* A generation. The HTTP layer owns it; the engine only calls on_event. */
struct srv_gen {
    const srv_fmt_ops *fmt;
    srv_gen_req req;               /* owned (moved in) */
    const srv_backend *backend;    /* borrowed */
    srv_idgen *ids;                /* borrowed */
    srv_metrics *metrics;          /* borrowed; may be NULL */
    char id[48];                   /* chatcmpl-..., cmpl-..., msg_... */
    int64_t created_s;             /* unix time */
    int32_t prompt_tokens;
    eng_request *er;               /* owned handle; NULL before submit */
    /* response state */
    srv_tc *tc;                    /* tool-call parser */
    buf text;                      /* bodies: the assistant text */
    srv_call_acc *calls;           /* tool calls (ids for streams too) */
    size_t n_calls, cap_calls;
    json_t *logprobs;              /* bodies: logprob entries */
    json_t *pending_lp;            /* streams: entries not yet sent */
    buf *stream_out;               /* while handling an event: where pieces go */
    bool finished;                 /* DONE seen, or failed */
    int32_t n_tokens;              /* TOKEN events seen */
    /* API-specific streaming state */
    int32_t anth_block;            /* index of the open Anthropic block, -1 none */
    bool anth_text_open;           /* the open block is text */
    int32_t anth_n_blocks;         /* blocks started */
    /* result */
    srv_done done;
    char *stop_string;             /* owned copy behind done.stop_string */
    srv_error error;               /* http_status != 0 when it failed */
    json_t *result;                /* bodies: the response */
    /* timing (clk_now_s) */
    double t_submit_s, t_first_s, t_last_s;
};

/* Builds a generation for req (moved in: req is left empty). NULL on OOM. */
srv_gen *srv_gen_create(const srv_fmt_ops *fmt, srv_gen_req *req, const srv_backend *b,
                        srv_idgen *ids, srv_metrics *metrics);
void srv_gen_destroy(srv_gen *g); /* NULL ok; releases the engine request */

/* The completion budget: the request's max_tokens (checked against the
 * context: 400 with the numbers), else default_max (0 = all the room). */
bool srv_gen_budget(int32_t n_prompt, int32_t req_max, int32_t default_max, int32_t max_ctx,
                    int32_t *out, srv_error *e);

typedef struct srv_submit_opts {
    int32_t default_max_tokens;
    int64_t queue_timeout_ms;
    void (*on_event)(void *ctx);   /* engine thread; must not block */
    void *on_event_ctx;
} srv_submit_opts;

/* Checks the budget and submits the prompt to the engine. */
bool srv_gen_submit(srv_gen *g, const tok_ids *prompt, const srv_submit_opts *o, srv_error *e);
/* Feeds one engine event (srv_gen_pump does; tests feed synthetic ones).
 * Streaming output goes to out (NULL when not streaming). */
void srv_gen_on_event(srv_gen *g, const eng_event *ev, buf *out);
/* Fails the generation: bodies keep g->error, streams get an error event. */
void srv_gen_fail(srv_gen *g, const srv_error *e, buf *out);
/* Drains the events that are ready (never blocks). True when finished. */
bool srv_gen_pump(srv_gen *g, buf *out);
/* The id of tool call i (made on first use). */
const char *srv_gen_call_id(srv_gen *g, int32_t i);
/* A token's text as a JSON string, and its bytes as a JSON array (bytes may
 * be NULL). */
json_t *srv_gen_token_text(srv_gen *g, tok_id id, json_t **bytes);
/* OpenAI usage object for d. */
json_t *srv_oai_usage(const srv_done *d);

/* Finish reasons, API by API. */
const char *srv_oai_finish_reason(const srv_done *d);
const char *srv_anth_stop_reason(const srv_done *d);

/* ===================================================================== */
/* The server and its connections (http.c, routes.c, handlers)            */
/* ===================================================================== */

struct MHD_Daemon;
struct MHD_Connection;

#define SRV_MAX_CORS 32

struct srv_server {
    srv_config cfg;                /* strings point at the owned copies below */
    char *host, *cors_csv;         /* owned */
    sem_logger *lg;                /* borrowed */
    struct MHD_Daemon *mhd;
    int listen_fd;                 /* ours until MHD_quiesce_daemon hands it back */
    uint16_t port;
    srv_auth auth;
    srv_rl *rl_global, *rl_agent;
    srv_metrics *metrics;
    srv_idgen ids;
    char *models_dir, *hf_cache, *kv_format; /* owned copies (cfg points at them) */
    _Atomic(swap_mgr *) models;    /* borrowed; NULL until srv_set_models */
    _Atomic uint64_t rss_baseline; /* RSS before the first model loaded */
    _Atomic int state;             /* srv_state */
    _Atomic int32_t inflight;      /* generations holding an engine request */
    _Atomic int32_t jobs;          /* job threads running (swaps) */
    _Atomic bool draining;         /* refuse new requests (503) */
    double t_start_s;
    char *cors[SRV_MAX_CORS];      /* owned; allowed origins */
    size_t n_cors;
    bool cors_any;                 /* "*" */
    /* live generations: for disconnect detection and drain */
    pthread_mutex_t live_mu;       /* guards the live list and each conn's live links */
    struct srv_conn *live;
    pthread_t watchdog;
    bool watchdog_started;
    _Atomic bool watchdog_stop;
    bool stopped_accepting;
};

typedef enum srv_auth_level { SRV_AUTH_PUBLIC = 0, SRV_AUTH_API, SRV_AUTH_ADMIN } srv_auth_level;

/* Work too long for an HTTP thread (a swap): run() on a thread of its
 * own while the connection is suspended, then reply() on the HTTP thread.
 * The job is freed with its connection. */
typedef struct srv_reply srv_reply;
typedef struct srv_job srv_job;
struct srv_job {
    void (*run)(srv_job *j);                 /* job thread */
    void (*reply)(srv_job *j, srv_reply *r); /* HTTP thread, after run */
    void (*destroy)(srv_job *j);             /* frees the job */
    pthread_t th;
    bool started, joined;
    _Atomic bool done;                       /* run() returned */
};

/* What a handler answers: a JSON body, a text body, an error, "a
 * generation was started" (c->gen is set; the HTTP layer streams it),
 * "wait for the swap" (the handler runs again once it is over) or a job. */
struct srv_reply {
    int status;                    /* 0 = 200 */
    json_t *json;                  /* owned */
    char *text;                    /* owned (e.g. /metrics) */
    size_t text_len;
    const char *content_type;      /* for text */
    srv_error err;                 /* used when err.http_status != 0 */
    bool gen_started;
    bool wait;                     /* park the request until the swap ends */
    srv_job *job;                  /* owned: start it (c->job takes it) */
};

typedef struct srv_conn srv_conn;
typedef void (*srv_handler_fn)(srv_conn *c, const json_t *body, srv_reply *r);

typedef struct srv_route {
    const char *method;            /* "GET" / "POST" */
    const char *path;              /* template; a trailing "{id}" matches one segment */
    srv_auth_level auth;
    srv_api api;                   /* the error envelope */
    srv_handler_fn handler;
    bool id_has_slashes;           /* "{id}" matches the rest of the path ("org/name") */
} srv_route;

/* One HTTP request (MHD's per-request context). Thread: the HTTP thread
 * MHD runs it on; `mu`/`suspended` are shared with the engine's on_event. */
struct srv_conn {
    srv_server *srv;
    struct MHD_Connection *mhd;
    const srv_route *route;        /* NULL: unmatched */
    size_t route_idx;              /* for metrics (n_routes = other) */
    char path_param[SWAP_MAX_MODEL_ID];
    srv_api api;
    bool is_get, is_post, is_delete, is_options;
    int64_t own_timeout_ms;        /* X-Queue-Timeout-Ms; -1 = not given */
    char reqid[SRV_MAX_ID_BYTES + 1];
    char agent[SRV_MAX_ID_BYTES + 1]; /* validated X-Session-ID or "" */
    srv_error early;               /* an error found before the body (404, 405, 413...) */
    double t_start_s;
    bool headers_seen;
    buf body;
    bool body_too_big;
    int status;                    /* the status sent */
    bool responded;
    /* the model (models.c) */
    srv_backend backend;           /* backend.bundle != NULL while acquired */
    bool waiting;                  /* parked until a swap ends (srv->live_mu) */
    srv_job *job;                  /* owned */
    /* generation */
    srv_gen *gen;                  /* owned */
    bool streaming;
    buf out;                       /* SSE bytes not yet handed to MHD */
    size_t out_off;
    pthread_mutex_t mu;            /* guards suspended (with the engine thread) */
    bool suspended;
    _Atomic bool wake;             /* an event arrived since the last pump */
    _Atomic bool client_gone;      /* the watchdog saw the peer hang up */
    _Atomic bool aborted;          /* srv_stop: fail it now, do not wait for the engine */
    bool counted_inflight;
    /* live list (srv->live_mu) */
    struct srv_conn *live_prev, *live_next;
    bool live;
    int fd;
};

extern const srv_route srv_routes[];
extern const size_t srv_n_routes;
extern const char *const srv_route_names[];

/* Finds the route for method and path. *path_ok is true when some route
 * has this path (so a method mismatch is a 405). */
const srv_route *srv_route_find(const char *method, const char *path, bool *path_ok,
                                char *param, size_t param_cap);
/* The methods a path allows, "GET, POST" (for the Allow header). */
void srv_route_allow(const char *path, char *out, size_t cap);

/* Handlers (api_openai.c / api_anthropic.c are pure; these touch the server). */
void srv_h_chat(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_completions(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_messages(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_count_tokens(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_models(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_model(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_health(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_live(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_startup(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_ready(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_metrics(srv_conn *c, const json_t *body, srv_reply *r);
void srv_admin_h_current(srv_conn *c, const json_t *body, srv_reply *r);
void srv_admin_h_available(srv_conn *c, const json_t *body, srv_reply *r);
void srv_admin_h_swap(srv_conn *c, const json_t *body, srv_reply *r);
void srv_admin_h_clear_caches(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_agents(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_agent(srv_conn *c, const json_t *body, srv_reply *r);
void srv_h_agent_delete(srv_conn *c, const json_t *body, srv_reply *r);

/* http.c services for handlers */
const char *srv_conn_header(srv_conn *c, const char *name);
const char *srv_conn_query(srv_conn *c, const char *name); /* a ?name=value argument */
/* Why /health/ready would say no ("" when ready). */
const char *srv_not_ready_reason(srv_server *s);

/* models.c: the current model for a request. */
/* Takes the current model into c->backend (a no-op if it has it). False
 * with r->err set (not loaded, degraded, shutting down, or the request's
 * own queue timeout passed during a swap: 503, Retry-After), or with
 * r->wait set: a swap is running, the handler must return and is called
 * again when the swap is over. */
bool srv_conn_acquire(srv_conn *c, srv_reply *r);
void srv_conn_release(srv_conn *c); /* NULL-safe: no-op when not held */
/* The current bundle if a model is serving now, never waiting (NULL
 * otherwise); give it back with srv_models_put. For probes and metrics. */
const swap_bundle *srv_models_peek(srv_server *s);
void srv_models_put(srv_server *s, const swap_bundle *b);
/* The state probes and /admin report: "loading", "shutting_down", or the
 * swap manager's ("serving", "draining", "swapping", "rolling_back",
 * "degraded"). */
const char *srv_state_now(srv_server *s);
/* The request's remaining queue budget in ms (0 = no limit). */
int64_t srv_conn_queue_budget_ms(srv_conn *c);
/* Rate limits, inflight, prompt, submit: the common start of a generation. */
void srv_generation_start(srv_conn *c, srv_gen_req *req, const srv_fmt_ops *fmt, srv_reply *r);

#endif /* SEM_SRV_INT_H */
