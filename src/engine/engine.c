/* engine.c - the serving engine: one thread that owns the model, the block
 * pool and the running batch, and runs continuous batching.
 *
 * Each step:
 *   1. pull new submissions; finish cancelled and timed-out requests;
 *   2. admit waiting sequences while the batch has room and the pool has
 *      blocks for their prompt (reusing full blocks of a common prefix);
 *   3. build one batch: one decode token per running sequence plus at most
 *      prefill_chunk prompt tokens, so long prompts prefill in chunks
 *      between decode steps and never stall the running streams;
 *   4. one forward pass over the batch (each weight read once);
 *   5. sample, match stops, and push events to each request's queue.
 * A sequence that needs a block when the pool is full preempts the most
 * recently admitted other sequence, which goes back to the front of the
 * queue and recomputes its KV when readmitted.
 *
 * Models with sliding-window layers get a ring pool (kv/kv.h): after each
 * step a sequence trims the blocks its window has left behind, so those
 * layers hold only the last ceil(window / block_tokens) + 1 blocks. A
 * prefix (shared blocks, an agent cache) is reused only up to a point
 * whose window is still held; the common case, an agent continuing its
 * own conversation, always is.
 *
 * Thread: the engine thread owns everything here except what engine.h
 * marks "Thread: any" (submit, cancel, stats, request events).
 */
#include "engine/engine_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* State                                                                  */
/* ===================================================================== */

typedef struct eng_seq {
    eng_request *req;          /* the engine's reference */
    tok_id *tokens;            /* owned: prompt + generated [cap] */
    size_t n_tokens, cap;
    size_t n_computed;         /* tokens whose KV is in the blocks */
    size_t n_generated;
    size_t n_cached_prompt;    /* prompt tokens taken from shared blocks */
    cache_tier hit;            /* where they came from */
    int32_t *blocks;           /* owned block table */
    uint64_t *block_hash;      /* owned: prefix hash of each full block */
    size_t n_blocks, n_hashed, cap_blocks;
    size_t n_trimmed;          /* blocks[0..n_trimmed) hold no sliding-layer KV (ring pools) */
    int32_t *counts;           /* owned [vocab] generated-token counts, for penalties; lazy */
    eng_rng rng;
    eng_stopper stop;
    bool admitted_once;
    uint64_t admit_seq;        /* admission order, for preemption */
    cache_entry *entry;        /* the agent's entry, pinned while running; or NULL */
    char save_as[CACHE_MAX_AGENT_ID + 1]; /* anonymous: the matched anonymous entry to extend */
} eng_seq;

struct eng_engine {
    eng_params p;
    const model_spec *spec;
    size_t vocab;
    int32_t max_ctx;
    kv_pool *pool;             /* owned */
    eng_prefix_index *pix;     /* owned */
    model_run *run;            /* owned */
    eng_sampler *sampler;      /* owned */
    cache_store *cache;        /* owned: agents' KV caches */
    chan *submit;              /* owned: eng_request* from submitters */
    chan *control;             /* owned: eng_control* from any thread */
    pthread_t thread;
    atomic_bool stopping;
    eng_seq **waiting;         /* owned FIFO [n_waiting] */
    size_t n_waiting, cap_waiting;
    eng_seq **running;         /* owned [max_batch] */
    size_t n_running;
    model_seq *batch;          /* [max_batch + 1] */
    size_t *batch_of;          /* [max_batch + 1] running index of batch entry */
    float *logits;             /* [max_batch + 1][vocab] */
    float *work;               /* [vocab] penalized logits */
    uint8_t *seen;             /* [vocab] marks for the repetition penalty */
    tok_id *stop_ids;          /* owned: EOS and end-of-turn ids */
    size_t n_stop_ids;
    uint64_t admit_counter;
    atomic_uint_fast64_t next_id;
    /* statistics (written by the engine thread, read by any) */
    atomic_int st_running, st_waiting, st_blocks_used, st_blocks_shared, st_last_batch;
    atomic_uint_fast64_t st_steps, st_prefilled, st_generated, st_preemptions, st_kv_bytes;
    uint64_t kv_bytes_total;   /* the pool's arena */
};

/* ===================================================================== */
/* Sequences                                                              */
/* ===================================================================== */

static void seq_free(eng_seq *s)
{
    if (!s) return;
    eng_stopper_fini(&s->stop);
    free(s->tokens);
    free(s->blocks);
    free(s->block_hash);
    free(s->counts);
    free(s);
}

static eng_seq *seq_new(eng_engine *e, eng_request *r)
{
    eng_seq *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->req = r;
    s->cap = r->p.n_prompt + (size_t)r->p.max_tokens + 1;
    if (s->cap > (size_t)e->max_ctx + 1) s->cap = (size_t)e->max_ctx + 1;
    s->cap_blocks = (s->cap + (size_t)e->p.block_tokens - 1) / (size_t)e->p.block_tokens + 1;
    s->tokens = malloc(s->cap * sizeof *s->tokens);
    s->blocks = malloc(s->cap_blocks * sizeof *s->blocks);
    s->block_hash = malloc(s->cap_blocks * sizeof *s->block_hash);
    bool pen = r->p.frequency_penalty != 0.0f || r->p.presence_penalty != 0.0f;
    if (pen) s->counts = calloc(e->vocab, sizeof *s->counts);
    sem_err err;
    if (!s->tokens || !s->blocks || !s->block_hash || (pen && !s->counts) ||
        eng_stopper_init(&s->stop, e->p.tok, r->prompt, r->p.n_prompt, r->stops, r->p.n_stop, &err)) {
        seq_free(s);
        return NULL;
    }
    memcpy(s->tokens, r->prompt, r->p.n_prompt * sizeof *s->tokens);
    s->n_tokens = r->p.n_prompt;
    eng_rng_seed(&s->rng, r->p.seed);
    return s;
}

/* Returns every block of s to the pool (a block shared with another
 * sequence stays alive there), and forgets freed blocks in the index. */
static void seq_drop_blocks(eng_engine *e, eng_seq *s)
{
    for (size_t i = 0; i < s->n_blocks; i++) kv_pool_unref(e->pool, s->blocks[i]);
    s->n_blocks = 0;
    s->n_hashed = 0;
    s->n_trimmed = 0;
    s->n_computed = 0;
}

static void emit_done(eng_engine *e, eng_seq *s, eng_finish f, sem_status st, const char *msg,
                      const char *stop_string)
{
    buf tail;
    buf_init(&tail);
    if (f != ENG_FINISH_STOP || !stop_string) eng_stopper_flush(&s->stop, &tail);
    eng_event *ev = eng_event_done(f, st, msg);
    if (ev) {
        ev->prompt_tokens = (int32_t)s->req->p.n_prompt;
        ev->cached_tokens = (int32_t)s->n_cached_prompt;
        ev->cache_hit = s->n_cached_prompt ? s->hit : CACHE_COLD;
        bool saved = e->cache && s->n_computed > 0 && f != ENG_FINISH_ERROR && f != ENG_FINISH_TIMEOUT;
        size_t prompt_kv = s->n_computed < s->req->p.n_prompt ? s->n_computed : s->req->p.n_prompt;
        ev->cache_write_tokens = saved && prompt_kv > s->n_cached_prompt ? (int32_t)(prompt_kv - s->n_cached_prompt) : 0;
        ev->completion_tokens = (int32_t)s->n_generated;
        ev->text_len = tail.len;
        ev->text = buf_take(&tail);
        ev->stop_string = stop_string ? sem_strdup(stop_string) : NULL;
    }
    buf_fini(&tail);
    eng_request_emit(s->req, ev);
    (void)e;
}

/* Ends a sequence: DONE event, blocks back, handle released. */
static void seq_finish(eng_engine *e, eng_seq *s, eng_finish f, sem_status st, const char *msg,
                       const char *stop_string)
{
    emit_done(e, s, f, st, msg, stop_string);
    /* The agent's cache now covers every token whose KV was computed:
     * prompt and generated tokens alike. */
    if (e->cache && s->n_computed > 0 && f != ENG_FINISH_ERROR && f != ENG_FINISH_TIMEOUT) {
        sem_err err;
        const char *id = s->req->agent_id ? s->req->agent_id : s->save_as[0] ? s->save_as : NULL;
        if (cache_store_update(e->cache, id, s->tokens, s->n_computed, s->blocks, &err))
            sem_log(e->p.lg, SEM_LOG_WARN, "cache update failed request=%" PRIu64 " reason=\"%s\"", s->req->id, err.msg);
    }
    if (s->entry) cache_entry_unpin(s->entry);
    s->entry = NULL;
    seq_drop_blocks(e, s);
    eng_request_unref(s->req);
    seq_free(s);
}

/* ===================================================================== */
/* Queue and admission                                                    */
/* ===================================================================== */

static bool waiting_push(eng_engine *e, eng_seq *s, bool front)
{
    if (e->n_waiting == e->cap_waiting) {
        size_t cap = e->cap_waiting ? 2 * e->cap_waiting : 16;
        eng_seq **w = realloc(e->waiting, cap * sizeof *w);
        if (!w) return false;
        e->waiting = w;
        e->cap_waiting = cap;
    }
    if (front) {
        memmove(e->waiting + 1, e->waiting, e->n_waiting * sizeof *e->waiting);
        e->waiting[0] = s;
    } else {
        e->waiting[e->n_waiting] = s;
    }
    e->n_waiting++;
    return true;
}

static void waiting_remove(eng_engine *e, size_t i)
{
    memmove(e->waiting + i, e->waiting + i + 1, (e->n_waiting - i - 1) * sizeof *e->waiting);
    e->n_waiting--;
}

static void running_remove(eng_engine *e, size_t i)
{
    memmove(e->running + i, e->running + i + 1, (e->n_running - i - 1) * sizeof *e->running);
    e->n_running--;
}

/* Moves submissions into the waiting queue. Blocks (briefly) when idle. */
static void pull_submissions(eng_engine *e)
{
    int64_t wait_ms = (e->n_running == 0 && e->n_waiting == 0) ? 50 : 0;
    void *item;
    while (chan_pop(e->submit, wait_ms, &item) == SEM_OK) {
        wait_ms = 0;
        if (!item) continue; /* a wake-up from control() */
        eng_request *r = item;
        eng_seq *s = seq_new(e, r);
        if (!s || !waiting_push(e, s, false)) {
            eng_request_emit(r, eng_event_done(ENG_FINISH_ERROR, SEM_ENOMEM, "engine: out of memory"));
            eng_request_unref(r);
            seq_free(s);
        }
        wait_ms = 0;
    }
}

static void reap_cancelled(eng_engine *e)
{
    uint64_t now = clk_now_ns();
    for (size_t i = e->n_running; i-- > 0;) {
        if (!atomic_load(&e->running[i]->req->cancel)) continue;
        eng_seq *s = e->running[i];
        running_remove(e, i);
        seq_finish(e, s, ENG_FINISH_CANCELLED, SEM_ECANCELED, "cancelled", NULL);
    }
    for (size_t i = e->n_waiting; i-- > 0;) {
        eng_seq *s = e->waiting[i];
        int64_t to = s->req->p.queue_timeout_ms;
        bool late = !s->admitted_once && to > 0 && now - s->req->submit_ns > (uint64_t)to * 1000000ull;
        if (!atomic_load(&s->req->cancel) && !late) continue;
        waiting_remove(e, i);
        if (late) seq_finish(e, s, ENG_FINISH_TIMEOUT, SEM_ETIMEDOUT, "not admitted within the queue timeout", NULL);
        else seq_finish(e, s, ENG_FINISH_CANCELLED, SEM_ECANCELED, "cancelled", NULL);
    }
}

static size_t blocks_for(const eng_engine *e, size_t n_tokens)
{
    size_t bt = (size_t)e->p.block_tokens;
    return (n_tokens + bt - 1) / bt;
}

/* Ring pools: whether blocks[0..n) hold the sliding layers' window before
 * position n * block_tokens (shared blocks may have been trimmed by a
 * sequence that went further). */
static bool window_held(const eng_engine *e, const int32_t *blocks, size_t n)
{
    size_t from = kv_pool_table_local_from(e->pool, blocks, n);
    return kv_ring_covers(kv_pool_ring(e->pool), from, n * (size_t)e->p.block_tokens);
}

/* Takes shared full blocks for the longest known prefix of s's tokens,
 * always leaving at least one token to compute (for its logits). Ring
 * pools: only as far as the sliding layers' window is held. */
static void attach_prefix(eng_engine *e, eng_seq *s)
{
    size_t bt = (size_t)e->p.block_tokens;
    uint64_t parent = 0;
    while ((s->n_blocks + 1) * bt < s->n_tokens) {
        const tok_id *t = s->tokens + s->n_blocks * bt;
        uint64_t h = kv_block_hash(parent, t, (int32_t)bt);
        int32_t b = eng_prefix_lookup(e->pix, h, parent, t);
        if (b < 0) break;
        kv_pool_ref(e->pool, b);
        s->blocks[s->n_blocks] = b;
        s->block_hash[s->n_blocks] = h;
        s->n_blocks++;
        parent = h;
    }
    while (s->n_blocks > 0 && !window_held(e, s->blocks, s->n_blocks)) kv_pool_unref(e->pool, s->blocks[--s->n_blocks]);
    s->n_hashed = s->n_blocks;
    s->n_trimmed = 0;
    s->n_computed = s->n_blocks * bt;
    if (!s->admitted_once) s->n_cached_prompt = s->n_computed;
}

/* Allocates blocks so that s can hold n_tokens; false if the pool is full
 * (s keeps what it had). */
static bool grow_blocks(eng_engine *e, eng_seq *s, size_t n_tokens)
{
    sem_err err;
    SEM_ASSERT(blocks_for(e, n_tokens) <= s->cap_blocks);
    return kv_pool_grow(e->pool, s->blocks, &s->n_blocks, n_tokens, &err) == SEM_OK;
}

typedef enum admit_result { ADMIT_OK, ADMIT_WAIT_BLOCKS, ADMIT_WAIT_AGENT } admit_result;

/* Reuses what the agent cache holds for s: the agent's own entry, or for
 * an anonymous request the entry with the longest common prefix. Returns
 * false when the pool lacks blocks for it (after trying to evict). */
static bool attach_cache(eng_engine *e, eng_seq *s, cache_entry *ce)
{
    size_t common = ce ? cache_entry_common_prefix(e->cache, ce, s->tokens, s->n_tokens) : 0;
    cache_tier tier = ce && common > 0 ? cache_entry_tier(ce) : CACHE_COLD;
    if (common > 0) {
        sem_err err;
        sem_status st = cache_entry_acquire(e->cache, ce, common, s->blocks, &err);
        if (st == SEM_ELIMIT) {
            cache_store_evict(e->cache, (int32_t)blocks_for(e, common));
            return false;
        }
        if (st) {
            tier = CACHE_COLD; /* quarantined: a miss */
            common = 0;
        } else {
            s->n_blocks = blocks_for(e, common);
            s->n_computed = common;
            s->n_hashed = 0;
            s->n_trimmed = 0;
        }
    }
    if (common == 0) attach_prefix(e, s);
    if (!s->admitted_once) {
        s->n_cached_prompt = s->n_computed;
        s->hit = s->n_computed ? (tier == CACHE_COLD ? CACHE_HOT : tier) : CACHE_COLD;
        cache_store_count(e->cache, s->hit);
    }
    return true;
}

/* Tokens s gets blocks for at admission: the whole prompt and one more,
 * so a prefill is never preempted for lack of blocks; with a ring, only
 * its first chunk (its blocks drop their sliding layers as it goes, so
 * the whole prompt's worth of blocks at once is what the ring avoids). */
static size_t admit_tokens(const eng_engine *e, const eng_seq *s)
{
    size_t all = s->n_tokens + 1, first = s->n_computed + (size_t)e->p.prefill_chunk;
    return kv_pool_ring(e->pool)->window > 0 && first < all ? first : all;
}

static admit_result try_admit(eng_engine *e, eng_seq *s)
{
    const char *agent = s->req->agent_id;
    cache_entry *ce = NULL;
    if (agent) {
        /* One request per agent at a time: a second one waits, so two
         * turns never race on the same cache. */
        for (size_t i = 0; i < e->n_running; i++) {
            const char *other = e->running[i]->req->agent_id;
            if (other && !strcmp(other, agent)) return ADMIT_WAIT_AGENT;
        }
        ce = s->entry ? s->entry : cache_store_find(e->cache, agent);
    } else {
        ce = cache_store_match_prefix(e->cache, s->tokens, s->n_tokens);
        if (ce && !strncmp(cache_entry_agent(ce), "anon-", 5))
            snprintf(s->save_as, sizeof s->save_as, "%s", cache_entry_agent(ce));
    }
    if (!attach_cache(e, s, ce)) return ADMIT_WAIT_BLOCKS;
    size_t want = admit_tokens(e, s);
    if (!grow_blocks(e, s, want)) {
        cache_store_evict(e->cache, (int32_t)(blocks_for(e, want) - s->n_blocks));
        if (!grow_blocks(e, s, want)) {
            seq_drop_blocks(e, s); /* wait for blocks to free up */
            return ADMIT_WAIT_BLOCKS;
        }
    }
    if (agent && !s->entry && (s->entry = cache_store_find(e->cache, agent))) cache_entry_pin(s->entry);
    return ADMIT_OK;
}

/* Blocks of every layer (a ring pool's capacity unit) a sequence of
 * n_tokens needs at most. */
static size_t seq_pool_blocks(const eng_engine *e, size_t n_tokens)
{
    const kv_geometry *g = kv_pool_geometry(e->pool);
    size_t bb = kv_block_bytes(g);
    return (kv_seq_bytes(g, kv_pool_ring(e->pool), n_tokens, (size_t)e->p.prefill_chunk) + bb - 1) / bb;
}

static void admit(eng_engine *e)
{
    for (size_t i = 0; i < e->n_waiting && e->n_running < (size_t)e->p.max_batch;) {
        eng_seq *s = e->waiting[i];
        size_t need = seq_pool_blocks(e, s->n_tokens + 1);
        if (need > (size_t)kv_pool_n_blocks(e->pool)) {
            waiting_remove(e, i);
            char msg[160];
            snprintf(msg, sizeof msg, "the prompt needs %zu KV blocks but the pool has %d; raise --kv-budget-mb",
                     need, kv_pool_n_blocks(e->pool));
            seq_finish(e, s, ENG_FINISH_ERROR, SEM_ELIMIT, msg, NULL);
            continue;
        }
        admit_result r = try_admit(e, s);
        if (r == ADMIT_WAIT_BLOCKS) return; /* first come, first served for blocks */
        if (r == ADMIT_WAIT_AGENT) {
            i++; /* this agent is busy; others may go ahead */
            continue;
        }
        waiting_remove(e, i);
        s->admitted_once = true;
        s->admit_seq = ++e->admit_counter;
        e->running[e->n_running++] = s;
    }
}

/* Frees blocks for `needy` by sending the most recently admitted other
 * sequence back to the queue. False if there is none. */
static bool preempt_one(eng_engine *e, const eng_seq *needy)
{
    size_t victim = SIZE_MAX;
    for (size_t i = 0; i < e->n_running; i++)
        if (e->running[i] != needy && (victim == SIZE_MAX || e->running[i]->admit_seq > e->running[victim]->admit_seq))
            victim = i;
    if (victim == SIZE_MAX) return false;
    eng_seq *s = e->running[victim];
    running_remove(e, victim);
    seq_drop_blocks(e, s);
    if (!waiting_push(e, s, true)) seq_finish(e, s, ENG_FINISH_ERROR, SEM_ENOMEM, "engine: out of memory", NULL);
    atomic_fetch_add(&e->st_preemptions, 1);
    if (e->p.lg) sem_log(e->p.lg, SEM_LOG_INFO, "engine preempt request=%" PRIu64 " reason=\"kv pool full\"", s->req->id);
    return true;
}

/* ===================================================================== */
/* Sampling and stops                                                     */
/* ===================================================================== */

static bool is_stop_id(const eng_engine *e, tok_id t)
{
    for (size_t i = 0; i < e->n_stop_ids; i++)
        if (e->stop_ids[i] == t) return true;
    return false;
}

/* Repetition (HF: every earlier token once), frequency and presence
 * (OpenAI: generated tokens, by count) penalties on a copy of the logits. */
static const float *penalized(eng_engine *e, const eng_seq *s, const float *logits)
{
    const eng_request_params *p = &s->req->p;
    bool rep = p->repetition_penalty != 1.0f && p->repetition_penalty > 0.0f;
    if (!rep && !s->counts) return logits;
    memcpy(e->work, logits, e->vocab * sizeof *e->work);
    if (rep) {
        for (size_t i = 0; i < s->n_tokens; i++) {
            tok_id t = s->tokens[i];
            if (e->seen[t]) continue;
            e->seen[t] = 1;
            e->work[t] = e->work[t] > 0 ? e->work[t] / p->repetition_penalty : e->work[t] * p->repetition_penalty;
        }
        for (size_t i = 0; i < s->n_tokens; i++) e->seen[s->tokens[i]] = 0;
    }
    if (s->counts) {
        for (size_t i = s->req->p.n_prompt; i < s->n_tokens; i++) {
            tok_id t = s->tokens[i];
            if (e->seen[t]) continue;
            e->seen[t] = 1;
            e->work[t] -= p->frequency_penalty * (float)s->counts[t] + p->presence_penalty;
        }
        for (size_t i = s->req->p.n_prompt; i < s->n_tokens; i++) e->seen[s->tokens[i]] = 0;
    }
    return e->work;
}

/* log-softmax of the chosen token and the top-n alternatives. */
static void fill_logprobs(const eng_engine *e, const float *l, tok_id chosen, int32_t n_top, eng_event *ev)
{
    float mx = -INFINITY;
    for (size_t i = 0; i < e->vocab; i++) mx = fmaxf(mx, l[i]);
    double sum = 0;
    for (size_t i = 0; i < e->vocab; i++) sum += exp((double)(l[i] - mx));
    float lse = mx + (float)log(sum);
    ev->logprob = l[chosen] - lse;
    if (n_top > ENG_MAX_TOP_LOGPROBS) n_top = ENG_MAX_TOP_LOGPROBS;
    for (int32_t k = 0; k < n_top; k++) {
        int32_t best = -1;
        for (size_t i = 0; i < e->vocab; i++) {
            bool taken = false;
            for (int32_t j = 0; j < k && !taken; j++) taken = ev->top[j].id == (tok_id)i;
            if (!taken && (best < 0 || l[i] > l[best])) best = (int32_t)i;
        }
        ev->top[k] = (eng_logprob){best, l[best] - lse};
    }
    ev->n_top = n_top;
}

/* Handles one new token of s. Returns true if s finished (and was freed). */
static bool on_token(eng_engine *e, eng_seq *s, const float *logits)
{
    eng_request *r = s->req;
    const float *l = penalized(e, s, logits);
    tok_id tok = r->p.n_forced ? r->forced[s->n_generated] : eng_sample(e->sampler, l, &r->p.sampling, &s->rng);
    s->n_generated++;
    atomic_fetch_add(&e->st_generated, 1);
    if (!r->p.ignore_eos && is_stop_id(e, tok)) {
        seq_finish(e, s, ENG_FINISH_STOP, SEM_OK, NULL, NULL);
        return true;
    }
    s->tokens[s->n_tokens++] = tok;
    if (s->counts) s->counts[tok]++;
    eng_event *ev = calloc(1, sizeof *ev);
    buf text;
    buf_init(&text);
    sem_err err;
    int hit = eng_stopper_push(&s->stop, tok, &text, &err);
    if (ev) {
        ev->kind = ENG_EV_TOKEN;
        ev->token = tok;
        if (r->p.logprobs || r->p.top_logprobs > 0) fill_logprobs(e, l, tok, r->p.top_logprobs, ev);
        ev->text_len = text.len;
        ev->text = buf_take(&text);
    }
    buf_fini(&text);
    eng_request_emit(r, ev);
    if (hit >= 0) {
        seq_finish(e, s, ENG_FINISH_STOP, SEM_OK, NULL, r->stops[hit]);
        return true;
    }
    bool forced_done = r->p.n_forced && s->n_generated == r->p.n_forced;
    bool length = s->n_generated >= (size_t)r->p.max_tokens || s->n_tokens >= (size_t)e->max_ctx;
    if (forced_done || length) {
        seq_finish(e, s, forced_done ? ENG_FINISH_STOP : ENG_FINISH_LENGTH, SEM_OK, NULL, NULL);
        return true;
    }
    return false;
}

/* ===================================================================== */
/* One step                                                               */
/* ===================================================================== */

/* Registers blocks that just became full in the prefix index. */
static void index_full_blocks(eng_engine *e, eng_seq *s)
{
    size_t bt = (size_t)e->p.block_tokens;
    while ((s->n_hashed + 1) * bt <= s->n_computed) {
        size_t b = s->n_hashed;
        uint64_t parent = b ? s->block_hash[b - 1] : 0;
        const tok_id *t = s->tokens + b * bt;
        s->block_hash[b] = kv_block_hash(parent, t, (int32_t)bt);
        eng_prefix_insert(e->pix, s->block_hash[b], parent, t, s->blocks[b]);
        s->n_hashed++;
    }
}

static void plan_add(eng_engine *e, size_t *n, size_t i, size_t take)
{
    eng_seq *s = e->running[i];
    bool last = s->n_computed + take == s->n_tokens;
    e->batch[*n] = (model_seq){.tokens = s->tokens + s->n_computed, .n_tokens = take,
                               .pos0 = (int32_t)s->n_computed, .all_logits = false,
                               .logits = last ? e->logits + *n * e->vocab : NULL};
    e->batch_of[(*n)++] = i;
}

/* Plans how many tokens each running sequence computes this step: one
 * decode token each, then prompt chunks within the prefill budget,
 * shortest remaining prompt first, so a short request that arrives during
 * a long prefill gets its first token after one step, not after the whole
 * long prompt. */
static size_t plan_batch(eng_engine *e)
{
    size_t n = 0;
    for (size_t i = 0; i < e->n_running; i++) {
        eng_seq *s = e->running[i];
        if (s->n_tokens - s->n_computed == 1 && s->n_generated > 0) plan_add(e, &n, i, 1);
    }
    size_t budget = (size_t)e->p.prefill_chunk;
    while (budget > 0) {
        size_t best = SIZE_MAX, best_todo = 0;
        for (size_t i = 0; i < e->n_running; i++) {
            eng_seq *s = e->running[i];
            size_t todo = s->n_tokens - s->n_computed;
            bool planned = false;
            for (size_t j = 0; j < n && !planned; j++) planned = e->batch_of[j] == i;
            if (planned || todo == 0 || (todo == 1 && s->n_generated > 0)) continue;
            if (best == SIZE_MAX || todo < best_todo) {
                best = i;
                best_todo = todo;
            }
        }
        if (best == SIZE_MAX) break;
        size_t take = best_todo < budget ? best_todo : budget;
        plan_add(e, &n, best, take);
        budget -= take;
    }
    return n;
}

/* Makes sure every planned sequence has blocks for its new tokens,
 * preempting others when the pool is full. Returns false if the batch
 * changed (re-plan). */
static bool reserve_blocks(eng_engine *e, size_t n)
{
    size_t bt = (size_t)e->p.block_tokens;
    for (size_t j = 0; j < n; j++) {
        eng_seq *s = e->running[e->batch_of[j]];
        size_t want = s->n_computed + e->batch[j].n_tokens;
        sem_err err;
        /* copy-on-write: never append into a block someone else holds */
        bool ok = grow_blocks(e, s, want) &&
                  (s->n_computed % bt == 0 || kv_pool_make_private(e->pool, &s->blocks[s->n_computed / bt], &err) == SEM_OK);
        if (ok) continue;
        if (cache_store_evict(e->cache, 1) > 0) return false;
        if (!preempt_one(e, s)) {
            running_remove(e, e->batch_of[j]);
            seq_finish(e, s, ENG_FINISH_ERROR, SEM_ELIMIT, "the KV pool is too small for this sequence; raise --kv-budget-mb", NULL);
        }
        return false;
    }
    return true;
}

static void step(eng_engine *e)
{
    size_t n;
    do {
        n = plan_batch(e);
        if (n == 0) return;
    } while (!reserve_blocks(e, n));
    for (size_t j = 0; j < n; j++) {
        eng_seq *s = e->running[e->batch_of[j]];
        e->batch[j].kv = kv_pool_view(e->pool, s->blocks);
        e->batch[j].kv_layer_stride = kv_pool_layer_stride(e->pool);
    }
    model_forward(e->p.m, e->p.kc, e->run, e->batch, n);
    atomic_fetch_add(&e->st_steps, 1);
    atomic_store(&e->st_last_batch, (int)n);
    for (size_t j = 0; j < n; j++) {
        eng_seq *s = e->running[e->batch_of[j]];
        bool decode = e->batch[j].n_tokens == 1 && e->batch[j].logits && s->n_generated > 0;
        if (!decode) atomic_fetch_add(&e->st_prefilled, e->batch[j].n_tokens);
        s->n_computed += e->batch[j].n_tokens;
        index_full_blocks(e, s);
        kv_pool_trim_table(e->pool, s->blocks, &s->n_trimmed, s->n_computed);
        if (e->batch[j].logits && on_token(e, s, e->batch[j].logits)) e->running[e->batch_of[j]] = NULL;
    }
    size_t w = 0; /* drop the sequences that finished */
    for (size_t i = 0; i < e->n_running; i++)
        if (e->running[i]) e->running[w++] = e->running[i];
    e->n_running = w;
}

/* ===================================================================== */
/* Thread, lifecycle, submission                                          */
/* ===================================================================== */

static void publish_stats(eng_engine *e)
{
    int32_t shared = 0, used = kv_pool_n_blocks(e->pool) - kv_pool_n_free(e->pool);
    for (int32_t b = 0; b < kv_pool_n_ids(e->pool); b++) shared += kv_pool_refcount(e->pool, b) > 1;
    atomic_store(&e->st_running, (int)e->n_running);
    atomic_store(&e->st_waiting, (int)e->n_waiting);
    atomic_store(&e->st_blocks_used, used);
    atomic_store(&e->st_blocks_shared, shared);
    atomic_store(&e->st_kv_bytes, kv_pool_bytes_used(e->pool));
}

/* ---- control commands from other threads ---------------------------- */

typedef enum ctl_kind { CTL_LIST, CTL_DELETE, CTL_CLEAR, CTL_FLUSH, CTL_STATS } ctl_kind;

typedef struct eng_control {
    ctl_kind kind;
    const char *agent_id;
    bool evict_only;
    sem_status status;
    sem_err err;
    cache_entry_info *list;
    size_t n;
    cache_stats stats;
    chan *reply;          /* the engine pushes the command back when done */
} eng_control;

static void run_control(eng_engine *e, eng_control *c)
{
    c->status = SEM_OK;
    switch (c->kind) {
    case CTL_LIST: c->status = cache_store_list(e->cache, &c->list, &c->n, &c->err); break;
    case CTL_DELETE: c->status = cache_store_delete(e->cache, c->agent_id, c->evict_only, &c->err); break;
    case CTL_CLEAR: c->n = cache_store_clear(e->cache); break;
    case CTL_FLUSH: c->status = cache_store_flush(e->cache, &c->err); break;
    case CTL_STATS: c->stats = cache_store_stats(e->cache); break;
    }
    chan_push(c->reply, c);
}

static sem_status control(eng_engine *e, eng_control *c, sem_err *err)
{
    c->reply = chan_create();
    if (!c->reply) return sem_errf(err, SEM_ENOMEM, "engine: out of memory");
    void *item;
    bool queued = chan_push(e->control, c);
    if (queued) chan_push(e->submit, NULL); /* wake an idle engine */
    sem_status st = queued ? chan_pop(c->reply, -1, &item) : SEM_ECANCELED;
    chan_destroy(c->reply);
    if (st) return sem_errf(err, SEM_EBUSY, "engine is stopping");
    if (c->status) *err = c->err;
    return c->status;
}

sem_status eng_agents_list(eng_engine *e, cache_entry_info **out, size_t *n, sem_err *err)
{
    eng_control c = {.kind = CTL_LIST};
    sem_status st = control(e, &c, err);
    if (!st) {
        *out = c.list;
        *n = c.n;
    }
    return st;
}

sem_status eng_agent_delete(eng_engine *e, const char *agent_id, bool evict_only, sem_err *err)
{
    eng_control c = {.kind = CTL_DELETE, .agent_id = agent_id, .evict_only = evict_only};
    return control(e, &c, err);
}

sem_status eng_caches_clear(eng_engine *e, size_t *n_dropped, sem_err *err)
{
    eng_control c = {.kind = CTL_CLEAR};
    sem_status st = control(e, &c, err);
    if (!st && n_dropped) *n_dropped = c.n;
    return st;
}

sem_status eng_caches_flush(eng_engine *e, sem_err *err)
{
    eng_control c = {.kind = CTL_FLUSH};
    return control(e, &c, err);
}

cache_stats eng_cache_stats(eng_engine *e)
{
    eng_control c = {.kind = CTL_STATS};
    sem_err err;
    control(e, &c, &err);
    return c.stats;
}

/* ---- the thread ------------------------------------------------------ */

static void *engine_main(void *arg)
{
    eng_engine *e = arg;
    void *item;
    while (!atomic_load(&e->stopping)) {
        pull_submissions(e);
        while (chan_try_pop(e->control, &item)) run_control(e, item);
        cache_store_poll(e->cache);
        reap_cancelled(e);
        admit(e);
        step(e);
        publish_stats(e);
    }
    while (chan_try_pop(e->submit, &item)) {
        eng_request *r = item;
        if (!r) continue;
        eng_request_emit(r, eng_event_done(ENG_FINISH_CANCELLED, SEM_ECANCELED, "engine stopped"));
        eng_request_unref(r);
    }
    while (e->n_running) {
        eng_seq *s = e->running[--e->n_running];
        seq_finish(e, s, ENG_FINISH_CANCELLED, SEM_ECANCELED, "engine stopped", NULL);
    }
    while (e->n_waiting) seq_finish(e, e->waiting[--e->n_waiting], ENG_FINISH_CANCELLED, SEM_ECANCELED, "engine stopped", NULL);
    chan_close(e->control);
    while (chan_try_pop(e->control, &item)) run_control(e, item);
    publish_stats(e);
    return NULL;
}

eng_params eng_default_params(void)
{
    return (eng_params){.max_batch = 8, .prefill_chunk = 512, .block_tokens = 256,
                        .kv_budget_bytes = (size_t)256 << 20, .kv_dtype = KN_KV_F16};
}

static sem_status collect_stop_ids(eng_engine *e, sem_err *err)
{
    size_t n_tok = 0;
    const tok_id *tok_eos = NULL;
    if (e->p.tok) n_tok = tok_eos_ids(e->p.tok, &tok_eos);
    size_t cap = n_tok + (size_t)e->spec->n_eos + e->p.n_stop_ids;
    e->stop_ids = sem_calloc(cap ? cap : 1, sizeof *e->stop_ids);
    if (!e->stop_ids) return sem_errf(err, SEM_ENOMEM, "engine: out of memory");
    for (size_t i = 0; i < cap; i++) {
        tok_id t = i < n_tok ? tok_eos[i] : i < n_tok + (size_t)e->spec->n_eos ? e->spec->eos_ids[i - n_tok] : e->p.stop_ids[i - n_tok - (size_t)e->spec->n_eos];
        if (t >= 0 && (size_t)t < e->vocab && !is_stop_id(e, t)) e->stop_ids[e->n_stop_ids++] = t;
    }
    return SEM_OK;
}

static void on_block_free(void *ctx, int32_t id) { eng_prefix_remove(ctx, id); }

static sem_status engine_alloc(eng_engine *e, sem_err *err)
{
    kv_geometry g;
    kv_ring ring;
    eng_kv_layout(e->p.m, e->p.block_tokens, e->p.kv_dtype, &g, &ring);
    kv_pool_params pp = {.budget_bytes = e->p.kv_budget_bytes, .ring = &ring};
    size_t mb = (size_t)e->p.max_batch + 1;
    sem_status st;
    if ((st = kv_pool_create(&g, &pp, &e->pool, err)) ||
        (st = eng_prefix_index_create(kv_pool_n_ids(e->pool), e->p.block_tokens, &e->pix, err)) ||
        (st = model_run_create(e->p.m, (size_t)e->p.prefill_chunk + mb, &e->run, err)) ||
        (st = eng_sampler_create(e->vocab, &e->sampler, err)) || (st = collect_stop_ids(e, err)))
        return st;
    kv_pool_set_free_hook(e->pool, on_block_free, e->pix);
    e->kv_bytes_total = kv_pool_bytes_total(e->pool);
    cache_store_params cp = {.cache_dir = e->p.cache_dir, .model_id = e->p.model_id, .fingerprint = e->p.fingerprint,
                             .disk_budget_bytes = e->p.cache_disk_bytes, .compat = e->p.cache_compat, .lg = e->p.lg};
    if ((st = cache_store_create(&cp, e->pool, &e->cache, err))) return st;
    e->control = chan_create();
    e->submit = chan_create();
    e->running = sem_calloc(mb, sizeof *e->running);
    e->batch = sem_calloc(mb, sizeof *e->batch);
    e->batch_of = sem_calloc(mb, sizeof *e->batch_of);
    e->logits = sem_alloc_aligned(mb * e->vocab * sizeof(float));
    e->work = sem_calloc(e->vocab, sizeof *e->work);
    e->seen = sem_calloc(e->vocab, 1);
    if (!e->submit || !e->control || !e->running || !e->batch || !e->batch_of || !e->logits || !e->work || !e->seen)
        return sem_errf(err, SEM_ENOMEM, "engine: out of memory");
    return SEM_OK;
}

static void engine_free(eng_engine *e)
{
    cache_store_destroy(e->cache); /* flushes dirty entries to disk */
    chan_destroy(e->control);
    kv_pool_destroy(e->pool);
    eng_prefix_index_destroy(e->pix);
    model_run_destroy(e->run);
    eng_sampler_destroy(e->sampler);
    chan_destroy(e->submit);
    free(e->waiting);
    free(e->running);
    free(e->batch);
    free(e->batch_of);
    sem_free_aligned(e->logits);
    free(e->work);
    free(e->seen);
    free(e->stop_ids);
    free(e);
}

sem_status eng_start(const eng_params *p, eng_engine **out, sem_err *err)
{
    eng_engine *e = calloc(1, sizeof *e);
    if (!e) return sem_errf(err, SEM_ENOMEM, "engine: out of memory");
    eng_params d = eng_default_params();
    e->p = *p;
    if (e->p.max_batch <= 0) e->p.max_batch = d.max_batch;
    if (e->p.prefill_chunk <= 0) e->p.prefill_chunk = d.prefill_chunk;
    if (e->p.block_tokens <= 0) e->p.block_tokens = d.block_tokens;
    if (e->p.kv_budget_bytes == 0) e->p.kv_budget_bytes = d.kv_budget_bytes;
    e->spec = model_get_spec(p->m);
    e->vocab = (size_t)e->spec->vocab;
    e->max_ctx = p->max_ctx > 0 ? p->max_ctx : e->spec->max_pos < 32768 ? e->spec->max_pos : 32768;
    if (e->max_ctx > e->spec->max_pos) e->max_ctx = e->spec->max_pos;
    sem_status st = engine_alloc(e, err);
    if (!st && pthread_create(&e->thread, NULL, engine_main, e) != 0)
        st = sem_errf(err, SEM_ENOMEM, "engine: cannot start its thread");
    if (st) {
        engine_free(e);
        return st;
    }
    *out = e;
    return SEM_OK;
}

void eng_stop(eng_engine *e)
{
    if (!e) return;
    atomic_store(&e->stopping, true);
    chan_close(e->submit); /* wakes an idle engine at once; later submits fail */
    pthread_join(e->thread, NULL);
    engine_free(e);
}

int32_t eng_max_ctx(const eng_engine *e) { return e->max_ctx; }

sem_status eng_submit(eng_engine *e, const eng_request_params *p, eng_request **out, sem_err *err)
{
    if (p->n_prompt == 0) return sem_errf(err, SEM_EINVAL, "the prompt is empty");
    if (p->max_tokens <= 0) return sem_errf(err, SEM_EINVAL, "max_tokens must be positive (got %d)", p->max_tokens);
    if (p->n_prompt + 1 > (size_t)e->max_ctx)
        return sem_errf(err, SEM_ELIMIT, "the prompt has %zu tokens; the context holds %d", p->n_prompt, e->max_ctx);
    if (p->top_logprobs < 0 || p->top_logprobs > ENG_MAX_TOP_LOGPROBS)
        return sem_errf(err, SEM_EINVAL, "top_logprobs must be 0..%d", ENG_MAX_TOP_LOGPROBS);
    for (size_t i = 0; i < p->n_prompt; i++)
        if (p->prompt[i] < 0 || (size_t)p->prompt[i] >= e->vocab)
            return sem_errf(err, SEM_EINVAL, "prompt token %d at %zu is outside the vocabulary (%zu)", p->prompt[i], i, e->vocab);
    for (size_t i = 0; i < p->n_forced; i++)
        if (p->forced[i] < 0 || (size_t)p->forced[i] >= e->vocab)
            return sem_errf(err, SEM_EINVAL, "forced token %d is outside the vocabulary", p->forced[i]);
    eng_request_params q = *p;
    if (q.n_forced && (size_t)q.max_tokens > q.n_forced) q.max_tokens = (int32_t)q.n_forced;
    eng_request *r = eng_request_new(&q, atomic_fetch_add(&e->next_id, 1) + 1);
    if (!r) return sem_errf(err, SEM_ENOMEM, "engine: out of memory for a request");
    if (!chan_push(e->submit, r)) {
        eng_request_unref(r);
        eng_request_unref(r);
        return sem_errf(err, SEM_EBUSY, "engine is stopping");
    }
    *out = r;
    return SEM_OK;
}

eng_stats eng_get_stats(const eng_engine *e)
{
    eng_engine *m = (eng_engine *)e; /* atomics only; loads do not modify */
    return (eng_stats){
        .running = atomic_load(&m->st_running),
        .waiting = atomic_load(&m->st_waiting) + (int32_t)chan_len(m->submit),
        .blocks_total = kv_pool_n_blocks(e->pool),
        .blocks_used = atomic_load(&m->st_blocks_used),
        .blocks_shared = atomic_load(&m->st_blocks_shared),
        .steps = atomic_load(&m->st_steps),
        .tokens_prefilled = atomic_load(&m->st_prefilled),
        .tokens_generated = atomic_load(&m->st_generated),
        .last_batch_size = atomic_load(&m->st_last_batch),
        .preemptions = atomic_load(&m->st_preemptions),
        .kv_bytes_used = atomic_load(&m->st_kv_bytes),
        .kv_bytes_total = e->kv_bytes_total,
    };
}
