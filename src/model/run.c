/* run.c - model_run: the forward pass's scratch activations, allocated once
 * for the largest batch so the forward pass itself allocates nothing. */
#include "model/model_int.h"

#include <stdlib.h>

enum { LOGIT_ROWS_MAX = 16 };

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* The MLA and MoE scratch of DeepSeek-V2. */
static bool alloc_deepseek2(const model_spec *s, model_run *r)
{
    size_t T = r->max_tokens, q_lora = (size_t)s->q_lora_rank, kv_lora = (size_t)s->kv_lora_rank;
    size_t nh = (size_t)s->n_heads, lat = kv_lora + (size_t)s->qk_rope_dim;
    size_t E = (size_t)s->n_experts, k = (size_t)s->n_experts_used, mi = (size_t)s->moe_intermediate;
    r->lat = sem_alloc_aligned(T * max_sz(lat, q_lora) * sizeof(float));
    r->latn = sem_alloc_aligned(T * max_sz(q_lora, 1) * sizeof(float));
    r->q_lat = sem_alloc_aligned(T * nh * lat * sizeof(float));
    r->o_lat = sem_alloc_aligned(T * nh * kv_lora * sizeof(float));
    if (!r->lat || !r->latn || !r->q_lat || !r->o_lat) return false;
    if (E == 0) return true;
    r->router = sem_alloc_aligned(T * E * sizeof(float));
    r->route_ids = sem_calloc(T * k, sizeof *r->route_ids);
    r->route_w = sem_calloc(T * k, sizeof *r->route_w);
    r->exp_rows = sem_calloc(T * k, sizeof *r->exp_rows);
    r->exp_count = sem_calloc(E + 1, sizeof *r->exp_count);
    r->exp_cursor = sem_calloc(E, sizeof *r->exp_cursor);
    r->ex_x = sem_alloc_aligned(T * k * (size_t)s->hidden * sizeof(float));
    r->ex_gate = sem_alloc_aligned(T * k * mi * sizeof(float));
    r->ex_up = sem_alloc_aligned(T * k * mi * sizeof(float));
    r->moe_out = sem_alloc_aligned(T * (size_t)s->hidden * sizeof(float));
    return r->router && r->route_ids && r->route_w && r->exp_rows && r->exp_count && r->exp_cursor && r->ex_x && r->ex_gate &&
           r->ex_up && r->moe_out;
}

sem_status model_run_create(const model *m, size_t max_tokens, model_run **out, sem_err *err)
{
    const model_spec *s = &m->spec;
    if (max_tokens == 0) return sem_errf(err, SEM_EINVAL, "model_run: max_tokens must be positive");
    model_run *r = calloc(1, sizeof *r);
    if (!r) return sem_errf(err, SEM_ENOMEM, "model_run: out of memory");
    size_t T = max_tokens;
    size_t q_dim = (size_t)s->n_heads * (size_t)s->head_dim;
    size_t kv_dim = (size_t)s->n_kv_heads * (size_t)s->head_dim;
    size_t v_dim = (size_t)s->n_kv_heads * (size_t)s->v_head_dim;
    size_t att_dim = (size_t)s->n_heads * (size_t)s->v_head_dim;
    r->max_tokens = T;
    r->logit_rows = T < LOGIT_ROWS_MAX ? T : LOGIT_ROWS_MAX;
    r->x = sem_alloc_aligned(T * (size_t)s->hidden * sizeof(float));
    r->xb = sem_alloc_aligned(T * (size_t)s->hidden * sizeof(float));
    r->q = sem_alloc_aligned(T * q_dim * sizeof(float));
    r->k = sem_alloc_aligned(T * kv_dim * sizeof(float));
    r->v = sem_alloc_aligned(T * v_dim * sizeof(float));
    r->att = sem_alloc_aligned(T * att_dim * sizeof(float));
    size_t inter = (size_t)s->intermediate, shared = (size_t)s->moe_intermediate * (size_t)s->n_shared_experts;
    if (shared > inter) inter = shared;
    r->gate = sem_alloc_aligned(T * inter * sizeof(float));
    r->up = sem_alloc_aligned(T * inter * sizeof(float));
    r->logits = sem_alloc_aligned(r->logit_rows * (size_t)s->vocab * sizeof(float));
    r->pos = sem_calloc(T, sizeof *r->pos);
    r->rope = sem_alloc_aligned(T * (size_t)s->head_dim * sizeof(float));
    bool ok = r->x && r->xb && r->q && r->k && r->v && r->att && r->gate && r->up && r->logits && r->pos && r->rope;
    if (ok && (s->kv_lora_rank > 0 || s->n_experts > 0)) ok = alloc_deepseek2(s, r);
    if (!ok) {
        model_run_destroy(r);
        return sem_errf(err, SEM_ENOMEM, "model_run: out of memory for %zu tokens", T);
    }
    *out = r;
    return SEM_OK;
}

void model_run_destroy(model_run *r)
{
    if (!r) return;
    sem_free_aligned(r->x);
    sem_free_aligned(r->xb);
    sem_free_aligned(r->q);
    sem_free_aligned(r->k);
    sem_free_aligned(r->v);
    sem_free_aligned(r->att);
    sem_free_aligned(r->gate);
    sem_free_aligned(r->up);
    sem_free_aligned(r->logits);
    free(r->pos);
    sem_free_aligned(r->rope);
    sem_free_aligned(r->lat);
    sem_free_aligned(r->latn);
    sem_free_aligned(r->q_lat);
    sem_free_aligned(r->o_lat);
    sem_free_aligned(r->router);
    free(r->route_ids);
    free(r->route_w);
    free(r->exp_rows);
    free(r->exp_count);
    free(r->exp_cursor);
    sem_free_aligned(r->ex_x);
    sem_free_aligned(r->ex_gate);
    sem_free_aligned(r->ex_up);
    sem_free_aligned(r->moe_out);
    free(r);
}

void model_forward(const model *m, kn_ctx *kc, model_run *run, model_seq *seqs, size_t n_seqs)
{
    m->ops->forward(m, kc, run, seqs, n_seqs);
}
