/* engine.h - the door of the engine room: sampling and running sequences
 * through a model.
 *
 * eng_runner runs one sequence at a time over its own small block pool:
 * the CLI's generate, the benchmarks and the reference tests use it. The
 * batching scheduler for the server builds on the same pieces.
 *
 * Thread: engine (a runner and a sampler belong to one thread).
 */
#ifndef SEM_ENGINE_H
#define SEM_ENGINE_H

#include "base/base.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "cache/cache.h"
#include "tokenizer/tokenizer.h"

/* ===================================================================== */
/* Sampling                                                               */
/* ===================================================================== */

/* Per-request random state: splitmix64-seeded xoshiro256**, so a request's
 * samples depend only on its seed, whatever else runs. */
typedef struct eng_rng {
    uint64_t s[4];
} eng_rng;

void eng_rng_seed(eng_rng *r, uint64_t seed);
uint64_t eng_rng_next(eng_rng *r);
double eng_rng_uniform(eng_rng *r); /* [0, 1) */

typedef struct eng_sampling {
    float temperature; /* 0 = greedy */
    int32_t top_k;     /* 0 = off */
    float top_p;       /* 1 = off */
    float min_p;       /* 0 = off */
} eng_sampling;

eng_sampling eng_sampling_greedy(void);

typedef struct eng_sampler eng_sampler; /* opaque: scratch for one vocab */

sem_status eng_sampler_create(size_t vocab, eng_sampler **out, sem_err *err);
void eng_sampler_destroy(eng_sampler *s); /* NULL ok */
/* Picks a token from logits[vocab] (not modified). Greedy ties go to the
 * lowest id. */
int32_t eng_sample(eng_sampler *s, const float *logits, const eng_sampling *p, eng_rng *rng);
/* The argmax of logits[n], lowest id on ties. */
int32_t eng_argmax(const float *logits, size_t n);

/* ===================================================================== */
/* Single-sequence runner                                                 */
/* ===================================================================== */

typedef struct eng_runner_params {
    size_t max_ctx;       /* 0 = the model's max_position_embeddings (capped at 32768) */
    size_t chunk_tokens;  /* prefill chunk; 0 = 512 */
    int32_t block_tokens; /* 0 = 256 */
    kn_kv_dtype kv_dtype; /* default KN_KV_F16 */
} eng_runner_params;

typedef struct eng_runner eng_runner; /* opaque; Thread: engine */

eng_runner_params eng_runner_default_params(void);
/* Borrows m and kc (must outlive the runner). kc must have been created
 * with max_tokens >= chunk_tokens and max_cols >= model_max_matmul_cols. */
sem_status eng_runner_create(const model *m, kn_ctx *kc, const eng_runner_params *p,
                             eng_runner **out, sem_err *err);
void eng_runner_destroy(eng_runner *r); /* NULL ok */
/* Appends tokens to the sequence (prefill in chunks, or one decode step)
 * and writes logits: for every token ([n][vocab]) when all_logits, else
 * for the last one ([vocab]). Fails with SEM_ELIMIT past max_ctx and
 * SEM_EINVAL for a token id outside the vocabulary. */
sem_status eng_runner_feed(eng_runner *r, const int32_t *tokens, size_t n, bool all_logits,
                           float *logits, sem_err *err);
void eng_runner_reset(eng_runner *r); /* forget the sequence, keep the memory */
size_t eng_runner_n_past(const eng_runner *r);
/* Bytes of pool memory the sequence's KV holds now (with a ring, the
 * sliding layers' share stops growing past their window). */
size_t eng_runner_kv_bytes(const eng_runner *r);
size_t eng_runner_chunk_tokens(const eng_runner *r);

/* ===================================================================== */
/* The serving engine: one engine thread, continuous batching             */
/* ===================================================================== */

/* The engine thread owns the model, the block pool and the running batch.
 * Every step it admits waiting requests (up to max_batch and the block
 * budget), runs one forward pass over the whole batch (decode tokens of
 * running requests plus at most prefill_chunk prompt tokens), samples, and
 * pushes events to each request's queue. Other threads only submit,
 * cancel and read events.
 */

typedef struct eng_engine eng_engine; /* opaque */

typedef struct eng_params {
    const model *m;              /* borrowed; must outlive the engine */
    const tok_tokenizer *tok;    /* borrowed; may be NULL (no text, no stop strings) */
    kn_ctx *kc;                  /* borrowed; created for max_tokens >= prefill_chunk + max_batch */
    sem_logger *lg;              /* borrowed; may be NULL */
    int32_t max_batch;           /* running requests per step; 0 = 8 */
    int32_t prefill_chunk;       /* prompt tokens per step; 0 = 512 */
    int32_t block_tokens;        /* 0 = 256 */
    size_t kv_budget_bytes;      /* block pool size; 0 = 256 MiB */
    kn_kv_dtype kv_dtype;        /* 0 = KN_KV_F16 */
    int32_t max_ctx;             /* per-sequence context; 0 = the model's (capped at 32768) */
    const tok_id *stop_ids;      /* extra end-of-turn ids added to every request's stop set */
    size_t n_stop_ids;
    /* Agent caches (cache/cache.h): per-agent KV kept in RAM and, with a
     * cache_dir, in files that survive restarts. */
    const char *cache_dir;       /* NULL = RAM only */
    const char *model_id;        /* names the cache namespace */
    const char *fingerprint;     /* model + tokenizer hash (hex) */
    uint64_t cache_disk_bytes;   /* disk quota; 0 = unlimited */
    cache_compat cache_compat;
} eng_params;

eng_params eng_default_params(void);

/* Builds the engine (pool, scratch) and starts its thread. */
sem_status eng_start(const eng_params *p, eng_engine **out, sem_err *err);
/* Cancels everything still queued or running (their DONE events say
 * cancelled), joins the thread and frees the engine. NULL ok. */
void eng_stop(eng_engine *e);
/* The per-sequence context limit (prompt + generated tokens). */
int32_t eng_max_ctx(const eng_engine *e);

typedef struct eng_request_params {
    const tok_id *prompt;        /* copied */
    size_t n_prompt;
    int32_t max_tokens;          /* > 0; also capped by the context */
    eng_sampling sampling;
    uint64_t seed;
    float repetition_penalty;    /* 1 = off (HF-style: divide positive logits) */
    float frequency_penalty;     /* 0 = off (OpenAI-style, per occurrence) */
    float presence_penalty;      /* 0 = off */
    int32_t top_logprobs;        /* alternatives per token, 0..20 */
    bool logprobs;               /* report the chosen token's logprob */
    const char *const *stop;     /* stop strings, copied; matched across tokens */
    size_t n_stop;
    bool ignore_eos;             /* don't stop on EOS/end-of-turn ids */
    int64_t queue_timeout_ms;    /* give up if not admitted in time; 0 = never */
    const char *agent_id;        /* copied; NULL = anonymous (matched by prefix) */
    /* Test hook: generate exactly these tokens instead of sampling (they
     * still run through the model, stop handling and streaming). */
    const tok_id *forced;        /* copied */
    size_t n_forced;
    /* Called on the engine thread after each event is queued (e.g. to
     * resume a suspended HTTP connection). Must not block. */
    void (*on_event)(void *ctx);
    void *on_event_ctx;
} eng_request_params;

eng_request_params eng_request_default_params(void);

typedef enum eng_finish {
    ENG_FINISH_NONE = 0,
    ENG_FINISH_STOP,       /* EOS, end-of-turn id, or a stop string */
    ENG_FINISH_LENGTH,     /* max_tokens or the context limit */
    ENG_FINISH_CANCELLED,  /* eng_request_cancel, engine stop */
    ENG_FINISH_ERROR,      /* e.g. the prompt can never fit; see status */
    ENG_FINISH_TIMEOUT,    /* not admitted within queue_timeout_ms */
} eng_finish;

const char *eng_finish_name(eng_finish f); /* "stop", "length", ... */

typedef struct eng_logprob {
    tok_id id;
    float logprob;
} eng_logprob;

#define ENG_MAX_TOP_LOGPROBS 20

typedef enum eng_event_kind { ENG_EV_TOKEN = 0, ENG_EV_DONE } eng_event_kind;

typedef struct eng_event {
    eng_event_kind kind;
    /* ENG_EV_TOKEN: one generated token. text is the newly completed text
     * it releases (may be empty while a stop string might be starting or a
     * UTF-8 character is incomplete; released text never contains a
     * matched stop string). A token that ends the request (stop id) has no
     * TOKEN event. */
    tok_id token;
    char *text;                  /* owned, NUL-terminated */
    size_t text_len;
    float logprob;               /* when requested */
    int32_t n_top;
    eng_logprob top[ENG_MAX_TOP_LOGPROBS];
    /* ENG_EV_DONE: the last event of a request. Its text (may be empty)
     * is what was still held back when generation ended without a stop
     * string (e.g. a partial stop-string match, then EOS). */
    eng_finish finish;
    char *stop_string;           /* owned; the matched stop string, or NULL */
    int32_t prompt_tokens;
    int32_t cached_tokens;       /* prompt tokens reused from a cache */
    cache_tier cache_hit;        /* where they came from: CACHE_HOT (RAM, or blocks
                                    shared with a running sequence), CACHE_WARM
                                    (a file), CACHE_COLD (nothing reused) */
    int32_t cache_write_tokens;  /* prompt tokens newly stored in the agent cache */
    int32_t completion_tokens;
    sem_status status;           /* SEM_OK unless finish == ERROR/TIMEOUT */
    char message[SEM_ERR_MSG_BYTES];
} eng_event;

void eng_event_free(eng_event *ev); /* NULL ok */

typedef struct eng_request eng_request; /* handle shared by submitter and engine */

/* Queues a request. Fails at once (SEM_EINVAL) for invalid params (empty
 * prompt, max_tokens <= 0, token ids outside the vocabulary) and
 * (SEM_ELIMIT) when prompt + 1 exceeds the context. Thread: any. */
sem_status eng_submit(eng_engine *e, const eng_request_params *p, eng_request **out, sem_err *err);
/* Next event, waiting up to timeout_ms (<0 forever, 0 = poll). SEM_OK with
 * *ev (free with eng_event_free), or SEM_ETIMEDOUT. After the DONE event
 * there are no more. Thread: the submitter. */
sem_status eng_request_next(eng_request *r, int64_t timeout_ms, eng_event **ev);
/* Asks the engine to stop the request; its blocks are freed at the next
 * step and a DONE(cancelled) event follows. Thread: any. */
void eng_request_cancel(eng_request *r);
/* The submitter is done with the handle (cancels the request if it is
 * still running). Thread: the submitter. */
void eng_request_release(eng_request *r);

typedef struct eng_stats {
    int32_t running;             /* requests in the batch */
    int32_t waiting;             /* queued, not admitted */
    int32_t blocks_total, blocks_used, blocks_shared;
    uint64_t steps;              /* forward passes so far */
    uint64_t tokens_prefilled, tokens_generated;
    int32_t last_batch_size;     /* sequences in the last step */
    uint64_t preemptions;        /* sequences sent back to the queue (pool full) */
    uint64_t kv_bytes_used;      /* pool memory holding KV (running and cached) */
    uint64_t kv_bytes_total;     /* the pool's arena */
} eng_stats;

/* A snapshot (atomics; approximate while running). Thread: any. */
eng_stats eng_get_stats(const eng_engine *e);

/* ---- agent caches, from any thread (run on the engine thread) -------- */

/* Every agent's cache entry (malloc'd array; caller frees). */
sem_status eng_agents_list(eng_engine *e, cache_entry_info **out, size_t *n, sem_err *err);
/* Drops an agent's cache (RAM and file, or only RAM with evict_only).
 * SEM_ENOTFOUND for an unknown agent, SEM_EBUSY while it has a request. */
sem_status eng_agent_delete(eng_engine *e, const char *agent_id, bool evict_only, sem_err *err);
/* Drops every idle agent cache; *n_dropped (may be NULL) gets the count. */
sem_status eng_caches_clear(eng_engine *e, size_t *n_dropped, sem_err *err);
/* Writes every dirty cache entry and waits until the files are durable. */
sem_status eng_caches_flush(eng_engine *e, sem_err *err);
/* Counters of the agent cache store. */
cache_stats eng_cache_stats(eng_engine *e);

#endif /* SEM_ENGINE_H */
