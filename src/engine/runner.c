/* runner.c - eng_runner: one sequence through a model, over a private
 * block pool sized for max_ctx tokens. Prefill goes in chunks of
 * chunk_tokens; each call appends to the sequence's KV. A model with
 * sliding-window layers gets a ring pool (kv/kv.h): blocks are taken a
 * chunk at a time and trimmed once the window has passed them, so the
 * pool is sized for the global layers' whole context and the sliding
 * layers' window only.
 *
 * Also eng_kv_layout, the one place a model's KV layout becomes a pool's.
 *
 * Thread: engine.
 */
#include "engine/engine_int.h"

#include <stdlib.h>
#include <string.h>

struct eng_runner {
    const model *m;          /* borrowed */
    kn_ctx *kc;              /* borrowed */
    kv_pool *pool;           /* owned */
    model_run *run;          /* owned */
    int32_t *blocks;         /* owned block table [max_blocks] */
    size_t n_blocks;         /* blocks allocated so far */
    size_t n_trimmed;        /* blocks[0..n_trimmed) hold no sliding-layer KV */
    size_t max_ctx;
    size_t chunk;
    size_t n_past;           /* tokens whose KV is stored */
};

void eng_kv_layout(const model *m, int32_t block_tokens, kn_kv_dtype dtype, kv_geometry *g, kv_ring *ring)
{
    model_kv_geometry mg = model_spec_kv_geometry(model_get_spec(m));
    *g = (kv_geometry){mg.n_layers, mg.n_kv_heads, mg.head_dim, mg.v_head_dim, block_tokens, dtype};
    memset(ring, 0, sizeof *ring);
    ring->window = mg.window;
    for (int32_t l = 0; mg.window > 0 && l < mg.n_layers && l < KV_MAX_LAYERS; l++) ring->sliding[l] = mg.layer_sliding[l];
}

eng_runner_params eng_runner_default_params(void)
{
    return (eng_runner_params){.max_ctx = 0, .chunk_tokens = 512, .block_tokens = 256, .kv_dtype = KN_KV_F16};
}

sem_status eng_runner_create(const model *m, kn_ctx *kc, const eng_runner_params *p,
                             eng_runner **out, sem_err *err)
{
    const model_spec *s = model_get_spec(m);
    kv_geometry g;
    kv_ring ring;
    eng_kv_layout(m, p->block_tokens ? p->block_tokens : 256, p->kv_dtype, &g, &ring);
    size_t max_ctx = p->max_ctx ? p->max_ctx : (size_t)s->max_pos;
    if (max_ctx > 32768 && !p->max_ctx) max_ctx = 32768;
    if (max_ctx > (size_t)s->max_pos)
        return sem_errf(err, SEM_EINVAL, "runner: context %zu exceeds the model's %d positions", max_ctx, s->max_pos);
    eng_runner *r = calloc(1, sizeof *r);
    if (!r) return sem_errf(err, SEM_ENOMEM, "runner: out of memory");
    r->m = m;
    r->kc = kc;
    r->max_ctx = max_ctx;
    r->chunk = p->chunk_tokens ? p->chunk_tokens : 512;
    size_t max_blocks = (max_ctx + (size_t)g.block_tokens - 1) / (size_t)g.block_tokens;
    kv_pool_params pp = {.budget_bytes = kv_seq_bytes(&g, &ring, max_ctx, r->chunk), .ring = &ring};
    sem_status st = kv_pool_create(&g, &pp, &r->pool, err);
    if (!st) st = model_run_create(m, r->chunk, &r->run, err);
    if (!st && !(r->blocks = sem_calloc(max_blocks, sizeof *r->blocks)))
        st = sem_errf(err, SEM_ENOMEM, "runner: out of memory");
    if (st) {
        eng_runner_destroy(r);
        return st;
    }
    *out = r;
    return SEM_OK;
}

void eng_runner_destroy(eng_runner *r)
{
    if (!r) return;
    eng_runner_reset(r);
    model_run_destroy(r->run);
    kv_pool_destroy(r->pool);
    free(r->blocks);
    free(r);
}

void eng_runner_reset(eng_runner *r)
{
    for (size_t i = 0; i < r->n_blocks; i++) kv_pool_unref(r->pool, r->blocks[i]);
    r->n_blocks = 0;
    r->n_trimmed = 0;
    r->n_past = 0;
}

size_t eng_runner_n_past(const eng_runner *r) { return r->n_past; }
size_t eng_runner_chunk_tokens(const eng_runner *r) { return r->chunk; }
size_t eng_runner_kv_bytes(const eng_runner *r) { return kv_pool_bytes_used(r->pool); }

static sem_status ensure_blocks(eng_runner *r, size_t n_tokens, sem_err *err)
{
    return kv_pool_grow(r->pool, r->blocks, &r->n_blocks, n_tokens, err);
}

sem_status eng_runner_feed(eng_runner *r, const int32_t *tokens, size_t n, bool all_logits,
                           float *logits, sem_err *err)
{
    const model_spec *s = model_get_spec(r->m);
    if (n == 0) return sem_errf(err, SEM_EINVAL, "runner: no tokens to feed");
    if (n > r->max_ctx - r->n_past)
        return sem_errf(err, SEM_ELIMIT, "runner: %zu + %zu tokens exceed the context of %zu", r->n_past, n, r->max_ctx);
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= s->vocab)
            return sem_errf(err, SEM_EINVAL, "runner: token %d at index %zu is outside the vocabulary (%d)", tokens[i], i, s->vocab);
    for (size_t done = 0; done < n;) {
        size_t c = n - done < r->chunk ? n - done : r->chunk;
        bool last_chunk = done + c == n;
        sem_status st = ensure_blocks(r, r->n_past + c, err);
        if (st) return st;
        model_seq seq = {
            .tokens = tokens + done,
            .n_tokens = c,
            .pos0 = (int32_t)r->n_past,
            .kv = kv_pool_view(r->pool, r->blocks),
            .kv_layer_stride = kv_pool_layer_stride(r->pool),
            .all_logits = all_logits,
            .logits = all_logits ? logits + done * (size_t)s->vocab : last_chunk ? logits : NULL,
        };
        model_forward(r->m, r->kc, r->run, &seq, 1);
        r->n_past += c;
        kv_pool_trim_table(r->pool, r->blocks, &r->n_trimmed, r->n_past);
        done += c;
    }
    return SEM_OK;
}
