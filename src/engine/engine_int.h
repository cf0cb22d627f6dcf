/* engine_int.h - inside the engine room: the request handle shared by the
 * submitter and the engine thread, the engine-thread state of a running
 * sequence, the prefix index, and the stop matcher.
 *
 * Ownership: an eng_request is reference counted (submitter + engine).
 * Fields marked "engine" are touched only by the engine thread; fields
 * marked "any" are atomics or guarded by `mu`.
 */
#ifndef SEM_ENGINE_INT_H
#define SEM_ENGINE_INT_H

#include "engine/engine.h"
#include "kv/kv.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- the KV layout of a model (runner.c) ------------------------------ */

/* The pool geometry of model m with these blocks and KV format, and its
 * ring: the sliding-window layers of the model (window 0 if none) keep
 * only their window in the pool. */
void eng_kv_layout(const model *m, int32_t block_tokens, kn_kv_dtype dtype, kv_geometry *g, kv_ring *ring);

/* ---- stop matching (stop.c) ------------------------------------------- */

/* Turns generated tokens into released text: detokenizes (complete UTF-8
 * only), finds stop strings across token boundaries, and holds back any
 * tail that could still become a stop string. Thread: engine. */
typedef struct eng_stopper {
    tok_stream *detok;   /* owned; NULL without a tokenizer */
    char **stops;        /* borrowed from the request */
    size_t n_stops;
    buf pending;         /* decoded, not yet released */
} eng_stopper;

sem_status eng_stopper_init(eng_stopper *st, const tok_tokenizer *tok, const tok_id *prefix,
                            size_t n_prefix, char **stops, size_t n_stops, sem_err *err);
void eng_stopper_fini(eng_stopper *st);
/* Feeds one token. Appends the text now safe to release to `out`. Returns
 * the index of a matched stop string, or -1. On a match, `out` gets the
 * text before it and nothing after. */
int eng_stopper_push(eng_stopper *st, tok_id id, buf *out, sem_err *err);
/* Releases everything still held (end of generation without a stop). */
void eng_stopper_flush(eng_stopper *st, buf *out);

/* ---- the request handle (engine.c) ------------------------------------ */

struct eng_request {
    atomic_int refs;             /* any: submitter + engine */
    atomic_bool cancel;          /* any: set by cancel/release */
    chan *events;                /* any: eng_event* to the submitter */
    pthread_mutex_t mu;          /* guards on_event/on_event_ctx */
    void (*on_event)(void *ctx);
    void *on_event_ctx;
    /* Copied parameters (immutable after submit). */
    eng_request_params p;        /* pointers below replace p's borrowed ones */
    tok_id *prompt;              /* owned [n_prompt] */
    char **stops;                /* owned [n_stop] */
    tok_id *forced;              /* owned [n_forced] */
    char *agent_id;              /* owned; NULL = anonymous */
    uint64_t submit_ns;
    uint64_t id;
};

/* A new handle with copied parameters and two references, or NULL. */
eng_request *eng_request_new(const eng_request_params *p, uint64_t id);
/* Pushes an event to the request and calls its on_event hook. */
void eng_request_emit(eng_request *r, eng_event *ev);
void eng_request_unref(eng_request *r);
/* A DONE event with just a finish reason and status. */
eng_event *eng_event_done(eng_finish f, sem_status st, const char *msg);

/* ---- prefix index (prefix.c): full blocks shared by token content ----- */

typedef struct eng_prefix_index eng_prefix_index; /* Thread: engine */

sem_status eng_prefix_index_create(int32_t n_blocks, int32_t block_tokens, eng_prefix_index **out,
                                   sem_err *err);
void eng_prefix_index_destroy(eng_prefix_index *ix);
/* A live block holding exactly these tokens after this parent, or -1. */
int32_t eng_prefix_lookup(const eng_prefix_index *ix, uint64_t hash, uint64_t parent,
                          const tok_id *tokens);
/* Registers a just-completed block (ignored if an equal block is known). */
void eng_prefix_insert(eng_prefix_index *ix, uint64_t hash, uint64_t parent, const tok_id *tokens,
                       int32_t block);
/* Forgets a block (called when it returns to the free list). */
void eng_prefix_remove(eng_prefix_index *ix, int32_t block);

#endif /* SEM_ENGINE_INT_H */
