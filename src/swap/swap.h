/* swap.h - the door of the swap room: the model registry (what can be
 * loaded) and the swap manager, which owns the one loaded model and its
 * engine, hands them to request handlers, and replaces them at runtime in
 * the eight steps of DESIGN.md with rollback and a visible degraded state.
 *
 * States: serving -> draining -> swapping -> serving; a failure after the
 * old model was unloaded -> rolling_back -> serving (rolled back) or
 * degraded (nothing loaded; requests get 503 until a swap succeeds).
 *
 * Request handlers call swap_acquire before using the engine and
 * swap_release when their request is over (stream included); a swap
 * drains by waiting for every acquired bundle to be released. While a swap
 * runs, swap_acquire waits (up to the caller's timeout) instead of failing.
 *
 * Thread: any, unless a function says otherwise.
 */
#ifndef SEM_SWAP_H
#define SEM_SWAP_H

#include "base/base.h"
#include "engine/engine.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

/* ===================================================================== */
/* Registry                                                               */
/* ===================================================================== */

#define SWAP_MAX_MODEL_ID 256

/* Resolves a model id to a directory holding config.json:
 *   - an existing directory path (absolute or relative) is used as is;
 *   - "org/name" or "name" under models_dir;
 *   - the Hugging Face hub cache: hf_cache/models--org--name/snapshots/<rev>
 *     (the most recently modified snapshot), so `huggingface-cli download`
 *     works as a pre-download step.
 * The id must not contain "..", NUL or a leading '/' unless it is an
 * existing path. SEM_ENOTFOUND when nothing matches. */
sem_status swap_resolve_model(const char *models_dir, const char *hf_cache, const char *id,
                              char *dir_out, size_t cap, sem_err *err);

typedef struct swap_model_info {
    char id[SWAP_MAX_MODEL_ID];
    char dir[4096];
    char arch[64];
    int32_t quant_bits;          /* 0 = float */
    int32_t quant_group_size;
    uint64_t bytes_on_disk;
    model_kv_geometry geo;
    bool loaded;
    bool valid;                  /* config.json parsed */
} swap_model_info;

/* Every model under models_dir (org/name or name with a config.json) and
 * in the hub cache. Caller frees *out. */
sem_status swap_list_models(const char *models_dir, const char *hf_cache, swap_model_info **out,
                            size_t *n, sem_err *err);

/* ===================================================================== */
/* The swap manager                                                       */
/* ===================================================================== */

typedef enum swap_state {
    SWAP_LOADING = 0,  /* first load at startup */
    SWAP_SERVING,
    SWAP_DRAINING,
    SWAP_SWAPPING,
    SWAP_ROLLING_BACK,
    SWAP_DEGRADED,
} swap_state;

const char *swap_state_name(swap_state s); /* "serving", ... */

/* Everything a request handler needs from the loaded model. Valid between
 * swap_acquire and swap_release. */
typedef struct swap_bundle {
    const char *model_id;        /* the id it was loaded as */
    const char *dir;
    const model *m;
    const tok_tokenizer *tok;
    const tok_chat_template *chat; /* NULL: the model has no chat template */
    eng_engine *eng;
    int32_t max_ctx;
    uint64_t loaded_at_ms;       /* wall clock */
    char fingerprint[17];
} swap_bundle;

typedef struct swap_params {
    const char *models_dir;      /* may be NULL */
    const char *hf_cache;        /* may be NULL: $HF_HOME/hub or ~/.cache/huggingface/hub */
    tp_pool *pool;               /* borrowed: compute threads */
    bool force_ref_kernels;      /* kn_ctx_params' kernel mode (SEMANTIC_KERNELS) */
    bool q_exact;
    bool q_int8_act;
    sem_logger *lg;              /* borrowed */
    eng_params engine;           /* template: m, tok, kc, stop ids, model_id and
                                    fingerprint are filled in per model */
    /* Test hook: a model id whose load fails as if its files were bad. */
    const char *fail_load_id;
} swap_params;

typedef struct swap_mgr swap_mgr; /* opaque */

/* Loads the first model and starts its engine. */
sem_status swap_create(const swap_params *p, const char *model_id, swap_mgr **out, sem_err *err);
/* Stops the engine (persisting agent caches) and unloads. NULL ok. */
void swap_destroy(swap_mgr *sm);

/* Waits up to timeout_ms (< 0: forever) for the serving state and takes a
 * reference on the current bundle. SEM_ETIMEDOUT while a swap is still
 * running (answer 503 with Retry-After), SEM_EDEGRADED when no model is
 * loaded. */
sem_status swap_acquire(swap_mgr *sm, int64_t timeout_ms, const swap_bundle **out, sem_err *err);
void swap_release(swap_mgr *sm, const swap_bundle *b);

swap_state swap_get_state(const swap_mgr *sm);
/* A copy of the current model id ("" when degraded). */
void swap_current_model(const swap_mgr *sm, char *out, size_t cap);

#define SWAP_N_STEPS 8

typedef struct swap_step {
    const char *name;            /* "drain", "evict", "shutdown", "unload", "load",
                                    "reconfigure", "update_tag", "reinit" */
    double ms;
    bool done;
} swap_step;

typedef struct swap_result {
    sem_status status;           /* SEM_OK, or why it failed */
    char message[SEM_ERR_MSG_BYTES];
    char old_model_id[SWAP_MAX_MODEL_ID];
    char new_model_id[SWAP_MAX_MODEL_ID];
    double duration_ms;
    swap_step steps[SWAP_N_STEPS];
    int n_steps;
    bool rolled_back;            /* failed after unload, old model serving again */
    bool degraded;               /* failed, and the rollback failed too */
    bool abandoned;              /* drain timed out: nothing changed */
    uint64_t rss_after_unload;   /* process RSS right after step 4, bytes */
} swap_result;

/* Runs the eight steps. Returns at once with SEM_EBUSY (409) if a swap is
 * already running and SEM_ENOTFOUND (404) if model_id does not resolve
 * (decided before anything is touched). A drain that takes longer than
 * timeout_s abandons the swap (SEM_ETIMEDOUT, 504): the old model keeps
 * serving. Thread: any (blocks for the swap's duration). */
sem_status swap_run(swap_mgr *sm, const char *model_id, int32_t timeout_s, swap_result *res);

/* Resident set size of this process, in bytes (from /proc/self/statm). */
uint64_t swap_rss_bytes(void);

#endif /* SEM_SWAP_H */
