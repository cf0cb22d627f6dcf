/* run.c - model_run: the forward pass's scratch activations, allocated once
 * for the largest batch so the forward pass itself allocates nothing. */
#include "model/model_int.h"

#include <stdlib.h>

enum { LOGIT_ROWS_MAX = 16 };

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
    r->gate = sem_alloc_aligned(T * (size_t)s->intermediate * sizeof(float));
    r->up = sem_alloc_aligned(T * (size_t)s->intermediate * sizeof(float));
    r->logits = sem_alloc_aligned(r->logit_rows * (size_t)s->vocab * sizeof(float));
    r->pos = sem_calloc(T, sizeof *r->pos);
    if (!r->x || !r->xb || !r->q || !r->k || !r->v || !r->att || !r->gate || !r->up || !r->logits || !r->pos) {
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
    free(r);
}

void model_forward(const model *m, kn_ctx *kc, model_run *run, model_seq *seqs, size_t n_seqs)
{
    m->ops->forward(m, kc, run, seqs, n_seqs);
}
