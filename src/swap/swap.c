/* swap.c - the swap manager: one loaded model at a time, handed to
 * request handlers as a reference-counted bundle, and replaced at runtime
 * in the eight steps of DESIGN.md:
 *
 *   1 drain        admission pauses (swap_acquire waits); wait until every
 *                  bundle is released, or abandon at timeout_s;
 *   2 evict        every agent cache is written to disk and flushed;
 *   3 shutdown     the engine stops (its thread joins);
 *   4 unload       munmap and free (malloc_trim returns the heap);
 *   5 load         the new model, tokenizer and chat template load and
 *                  are validated;
 *   6 reconfigure  kernel scratch and the block pool for the new geometry;
 *   7 update_tag   the cache store opens the new model's namespace;
 *   8 reinit       the engine thread starts and admission resumes.
 *
 * A failure from step 4 on rolls back: reload the old model and restart
 * (rolled_back); if that fails too, the state is degraded: acquire
 * returns SEM_EDEGRADED until a later swap succeeds. A second swap while
 * one runs gets SEM_EBUSY at once.
 *
 * Thread: any. `mu` guards state, current and n_acquired.
 */
#include "swap/swap.h"

#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct loaded {
    swap_bundle b;               /* handed out; points into the fields below */
    char *model_id, *dir;        /* owned */
    model *m;                    /* owned */
    tok_tokenizer *tok;          /* owned */
    tok_chat_template *chat;     /* owned; may be NULL */
    kn_ctx *kc;                  /* owned */
    eng_engine *eng;             /* owned */
    tok_id *stop_ids;            /* owned: end-of-turn ids of the template */
    size_t n_stop_ids;
} loaded;

struct swap_mgr {
    swap_params p;
    pthread_mutex_t mu;
    pthread_cond_t cv;           /* state changes and releases */
    swap_state state;
    loaded *cur;                 /* NULL when degraded */
    int32_t n_acquired;          /* bundles handed out and not released */
    bool swapping;               /* a swap_run is in progress */
};

static const char *const state_names[] = {"loading", "serving", "draining", "swapping", "rolling_back", "degraded"};

const char *swap_state_name(swap_state s) { return (unsigned)s < 6 ? state_names[s] : "?"; }

uint64_t swap_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
        fclose(f);
    }
    return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* ===================================================================== */
/* Loading and unloading one model                                        */
/* ===================================================================== */

static void unload(loaded *l)
{
    if (!l) return;
    eng_stop(l->eng);
    kn_ctx_destroy(l->kc);
    tok_chat_template_destroy(l->chat);
    tok_destroy(l->tok);
    model_destroy(l->m);
    free(l->stop_ids);
    free(l->model_id);
    free(l->dir);
    free(l);
    malloc_trim(0); /* give freed heap back, so RSS returns to the baseline */
}

static uint64_t file_hash(const char *dir, const char *name)
{
    char path[4200], *data;
    size_t len;
    sem_err err;
    uint64_t h = 0xcbf29ce484222325ull;
    if (!fs_join(path, sizeof path, dir, name) || fs_read_file(path, (size_t)1 << 30, &data, &len, &err)) return h;
    h ^= crc32c_update(0, data, len);
    free(data);
    return h;
}

/* Step 5: model, tokenizer, chat template, and the template's stop ids. */
static sem_status load_files(swap_mgr *sm, const char *id, loaded **out, sem_err *err)
{
    char dir[4096];
    sem_status st = swap_resolve_model(sm->p.models_dir, sm->p.hf_cache, id, dir, sizeof dir, err);
    if (st) return st;
    if (sm->p.fail_load_id && !strcmp(sm->p.fail_load_id, id))
        return sem_errf(err, SEM_ECORRUPT, "%s: load failed (test hook)", dir);
    loaded *l = calloc(1, sizeof *l);
    if (!l || !(l->model_id = sem_strdup(id)) || !(l->dir = sem_strdup(dir))) {
        unload(l);
        return sem_errf(err, SEM_ENOMEM, "out of memory");
    }
    if ((st = model_load(dir, &l->m, err)) || (st = tok_load_dir(dir, &l->tok, err))) goto fail;
    st = tok_chat_template_load(dir, &l->chat, err);
    if (st == SEM_ENOTFOUND) l->chat = NULL;
    else if (st) goto fail;
    size_t n = l->chat ? tok_chat_n_stop_strings(l->chat) : 0;
    l->stop_ids = sem_calloc(n ? n : 1, sizeof *l->stop_ids);
    if (!l->stop_ids) {
        st = sem_errf(err, SEM_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        const char *s = tok_chat_stop_string(l->chat, i);
        if (tok_piece_to_id(l->tok, s, strlen(s), &l->stop_ids[l->n_stop_ids])) l->n_stop_ids++;
    }
    model_fingerprint(l->m, file_hash(dir, "tokenizer.json"), l->b.fingerprint);
    *out = l;
    return SEM_OK;
fail:
    unload(l);
    return st;
}

/* Step 6: kernel scratch sized for this model (the pool is built with the
 * engine in steps 7-8). */
static sem_status reconfigure(swap_mgr *sm, loaded *l, sem_err *err)
{
    kn_ctx_params kp = kn_ctx_default_params();
    kp.pool = sm->p.pool;
    kp.force_ref = sm->p.force_ref_kernels;
    kp.q_exact = sm->p.q_exact;
    kp.q_int8_act = sm->p.q_int8_act;
    kp.max_tokens = (size_t)(sm->p.engine.prefill_chunk > 0 ? sm->p.engine.prefill_chunk : 512) +
                    (size_t)(sm->p.engine.max_batch > 0 ? sm->p.engine.max_batch : 8) + 1;
    kp.max_cols = model_max_matmul_cols(l->m);
    sem_status st = kn_ctx_create(&kp, &l->kc, err);
    if (!st) st = model_pack_for(l->m, l->kc, err);
    if (!st)
        sem_log(sm->p.lg, SEM_LOG_INFO, "kernels isa=%s threads=%d packed=%.1fMiB", kn_ctx_isa(l->kc),
                tp_n_threads(kp.pool), (double)model_packed_bytes(l->m) / 1048576.0);
    return st;
}

/* Steps 7 and 8: the engine, whose cache store opens the model's
 * namespace (tag) and whose thread starts serving. */
static sem_status reinit(swap_mgr *sm, loaded *l, sem_err *err)
{
    eng_params ep = sm->p.engine;
    ep.m = l->m;
    ep.tok = l->tok;
    ep.kc = l->kc;
    ep.lg = sm->p.lg;
    ep.stop_ids = l->stop_ids;
    ep.n_stop_ids = l->n_stop_ids;
    ep.model_id = l->model_id;
    ep.fingerprint = l->b.fingerprint;
    sem_status st = eng_start(&ep, &l->eng, err);
    if (st) return st;
    char fp[sizeof l->b.fingerprint]; /* ep.fingerprint points into l->b, which the next line resets */
    memcpy(fp, l->b.fingerprint, sizeof fp);
    l->b = (swap_bundle){.model_id = l->model_id, .dir = l->dir, .m = l->m, .tok = l->tok, .chat = l->chat,
                         .eng = l->eng, .max_ctx = eng_max_ctx(l->eng), .loaded_at_ms = clk_wall_ms()};
    memcpy(l->b.fingerprint, fp, sizeof l->b.fingerprint);
    return SEM_OK;
}

static sem_status load_all(swap_mgr *sm, const char *id, loaded **out, sem_err *err)
{
    loaded *l = NULL;
    sem_status st = load_files(sm, id, &l, err);
    if (!st) st = reconfigure(sm, l, err);
    if (!st) st = reinit(sm, l, err);
    if (st) {
        unload(l);
        return st;
    }
    *out = l;
    return SEM_OK;
}

/* ===================================================================== */
/* Acquire / release                                                      */
/* ===================================================================== */

static void set_state(swap_mgr *sm, swap_state s)
{
    sm->state = s;
    pthread_cond_broadcast(&sm->cv);
}

sem_status swap_acquire(swap_mgr *sm, int64_t timeout_ms, const swap_bundle **out, sem_err *err)
{
    uint64_t deadline = clk_now_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000ull;
    pthread_mutex_lock(&sm->mu);
    while (sm->state != SWAP_SERVING && sm->state != SWAP_DEGRADED) {
        if (timeout_ms >= 0 && clk_now_ns() >= deadline) break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&sm->cv, &sm->mu, &ts);
    }
    sem_status st = SEM_OK;
    if (sm->state == SWAP_DEGRADED || (sm->state == SWAP_SERVING && !sm->cur))
        st = sem_errf(err, SEM_EDEGRADED, "no model is loaded: the last swap and its rollback failed; swap to a working model");
    else if (sm->state != SWAP_SERVING)
        st = sem_errf(err, SEM_ETIMEDOUT, "the model is being swapped (%s); retry shortly", swap_state_name(sm->state));
    if (!st) {
        sm->n_acquired++;
        *out = &sm->cur->b;
    }
    pthread_mutex_unlock(&sm->mu);
    return st;
}

void swap_release(swap_mgr *sm, const swap_bundle *b)
{
    if (!b) return;
    pthread_mutex_lock(&sm->mu);
    SEM_ASSERT(sm->n_acquired > 0);
    sm->n_acquired--;
    pthread_cond_broadcast(&sm->cv);
    pthread_mutex_unlock(&sm->mu);
}

swap_state swap_get_state(const swap_mgr *sm)
{
    swap_mgr *m = (swap_mgr *)sm; /* locking is not a logical change */
    pthread_mutex_lock(&m->mu);
    swap_state s = m->state;
    pthread_mutex_unlock(&m->mu);
    return s;
}

void swap_current_model(const swap_mgr *sm, char *out, size_t cap)
{
    swap_mgr *m = (swap_mgr *)sm;
    pthread_mutex_lock(&m->mu);
    snprintf(out, cap, "%s", m->cur ? m->cur->model_id : "");
    pthread_mutex_unlock(&m->mu);
}

/* ===================================================================== */
/* The swap                                                               */
/* ===================================================================== */

static const char *const step_names[SWAP_N_STEPS] = {"drain", "evict", "shutdown", "unload", "load",
                                                     "reconfigure", "update_tag", "reinit"};

static void step_done(swap_mgr *sm, swap_result *res, int i, double t0)
{
    res->steps[i] = (swap_step){step_names[i], (clk_now_s() - t0) * 1e3, true};
    res->n_steps = i + 1;
    sem_log(sm->p.lg, SEM_LOG_INFO, "swap step=%s ms=%.1f from=%s to=%s", step_names[i], res->steps[i].ms,
            res->old_model_id, res->new_model_id);
}

/* Step 1: wait until no bundle is out. False: timed out, swap abandoned. */
static bool drain(swap_mgr *sm, int32_t timeout_s)
{
    uint64_t deadline = clk_now_ns() + (uint64_t)timeout_s * 1000000000ull;
    pthread_mutex_lock(&sm->mu);
    set_state(sm, SWAP_DRAINING);
    while (sm->n_acquired > 0 && clk_now_ns() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 50 * 1000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&sm->cv, &sm->mu, &ts);
    }
    bool ok = sm->n_acquired == 0;
    set_state(sm, ok ? SWAP_SWAPPING : SWAP_SERVING);
    pthread_mutex_unlock(&sm->mu);
    return ok;
}

/* Steps 5-8 for the new model, timing each; *out on success. */
static sem_status bring_up(swap_mgr *sm, const char *id, swap_result *res, loaded **out, sem_err *err)
{
    loaded *l = NULL;
    double t = clk_now_s();
    sem_status st = load_files(sm, id, &l, err);
    if (st) return st;
    step_done(sm, res, 4, t);
    t = clk_now_s();
    if ((st = reconfigure(sm, l, err))) goto fail;
    step_done(sm, res, 5, t);
    t = clk_now_s();
    if ((st = reinit(sm, l, err))) goto fail;
    /* The engine start opens the cache namespace (7) and starts the thread
     * (8); they are one call, so the time is split between the two rows. */
    double ms = (clk_now_s() - t) * 1e3;
    res->steps[6] = (swap_step){step_names[6], ms / 2, true};
    res->steps[7] = (swap_step){step_names[7], ms / 2, true};
    res->n_steps = 8;
    *out = l;
    return SEM_OK;
fail:
    unload(l);
    return st;
}

static void finish_swap(swap_mgr *sm, loaded *l, swap_state s)
{
    pthread_mutex_lock(&sm->mu);
    sm->cur = l;
    sm->swapping = false;
    set_state(sm, s);
    pthread_mutex_unlock(&sm->mu);
}

static void roll_back(swap_mgr *sm, swap_result *res)
{
    pthread_mutex_lock(&sm->mu);
    set_state(sm, SWAP_ROLLING_BACK);
    pthread_mutex_unlock(&sm->mu);
    loaded *l = NULL;
    sem_err err;
    if (res->old_model_id[0] && load_all(sm, res->old_model_id, &l, &err) == SEM_OK) {
        res->rolled_back = true;
        sem_log(sm->p.lg, SEM_LOG_WARN, "swap rolled back to=%s reason=\"%s\"", res->old_model_id, res->message);
        finish_swap(sm, l, SWAP_SERVING);
        return;
    }
    res->degraded = true;
    sem_log(sm->p.lg, SEM_LOG_ERROR, "swap rollback failed model=%s reason=\"%s\" state=degraded action=\"swap to a working model\"",
            res->old_model_id, err.msg);
    finish_swap(sm, NULL, SWAP_DEGRADED);
}

static sem_status begin(swap_mgr *sm, const char *id, swap_result *res, sem_err *err)
{
    char dir[4096];
    sem_status st = swap_resolve_model(sm->p.models_dir, sm->p.hf_cache, id, dir, sizeof dir, err);
    if (st) return st;
    pthread_mutex_lock(&sm->mu);
    if (sm->swapping) st = sem_errf(err, SEM_EBUSY, "another swap is running");
    sm->swapping = true;
    if (!st && sm->cur) snprintf(res->old_model_id, sizeof res->old_model_id, "%s", sm->cur->model_id);
    pthread_mutex_unlock(&sm->mu);
    return st;
}

sem_status swap_run(swap_mgr *sm, const char *model_id, int32_t timeout_s, swap_result *res)
{
    memset(res, 0, sizeof *res);
    snprintf(res->new_model_id, sizeof res->new_model_id, "%s", model_id ? model_id : "");
    double t_all = clk_now_s(), t = t_all;
    sem_err err;
    sem_err_clear(&err);
    sem_status st = begin(sm, model_id, res, &err);
    if (st == SEM_EBUSY) {
        snprintf(res->message, sizeof res->message, "%s", err.msg);
        return res->status = st;
    }
    if (st) {
        pthread_mutex_lock(&sm->mu);
        sm->swapping = false;
        pthread_mutex_unlock(&sm->mu);
        snprintf(res->message, sizeof res->message, "%s", err.msg);
        return res->status = st;
    }
    if (!drain(sm, timeout_s)) {
        res->abandoned = true;
        snprintf(res->message, sizeof res->message, "requests still running after %d s; swap abandoned, %.160s keeps serving",
                 timeout_s, res->old_model_id);
        finish_swap(sm, sm->cur, SWAP_SERVING);
        res->duration_ms = (clk_now_s() - t_all) * 1e3;
        return res->status = SEM_ETIMEDOUT;
    }
    step_done(sm, res, 0, t);
    loaded *old = sm->cur;
    t = clk_now_s();
    if (old) eng_caches_flush(old->eng, &err);
    step_done(sm, res, 1, t);
    t = clk_now_s();
    if (old) {
        eng_stop(old->eng);
        old->eng = NULL;
    }
    step_done(sm, res, 2, t);
    t = clk_now_s();
    pthread_mutex_lock(&sm->mu);
    sm->cur = NULL;
    pthread_mutex_unlock(&sm->mu);
    unload(old);
    res->rss_after_unload = swap_rss_bytes();
    step_done(sm, res, 3, t);
    loaded *l = NULL;
    st = bring_up(sm, model_id, res, &l, &err);
    res->duration_ms = (clk_now_s() - t_all) * 1e3;
    if (st) {
        snprintf(res->message, sizeof res->message, "%s", err.msg);
        roll_back(sm, res);
        res->duration_ms = (clk_now_s() - t_all) * 1e3;
        return res->status = st;
    }
    snprintf(res->message, sizeof res->message, "swapped %.110s -> %.110s", res->old_model_id[0] ? res->old_model_id : "(none)",
             model_id);
    finish_swap(sm, l, SWAP_SERVING);
    return res->status = SEM_OK;
}

/* ===================================================================== */
/* Lifecycle                                                              */
/* ===================================================================== */

sem_status swap_create(const swap_params *p, const char *model_id, swap_mgr **out, sem_err *err)
{
    swap_mgr *sm = calloc(1, sizeof *sm);
    if (!sm) return sem_errf(err, SEM_ENOMEM, "out of memory");
    sm->p = *p;
    pthread_mutex_init(&sm->mu, NULL);
    pthread_cond_init(&sm->cv, NULL);
    sm->state = SWAP_LOADING;
    loaded *l = NULL;
    sem_status st = load_all(sm, model_id, &l, err);
    if (st) {
        swap_destroy(sm);
        return st;
    }
    sm->cur = l;
    sm->state = SWAP_SERVING;
    *out = sm;
    return SEM_OK;
}

void swap_destroy(swap_mgr *sm)
{
    if (!sm) return;
    unload(sm->cur);
    pthread_cond_destroy(&sm->cv);
    pthread_mutex_destroy(&sm->mu);
    free(sm);
}
