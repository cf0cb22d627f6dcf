/* common.c - pieces of the forward pass that the DeepSeek-V2 and Gemma 3
 * families share: stacking a batch's tokens into the residual stream, the
 * final norm + lm_head over the rows that want logits, and per-layer KV
 * views. Each reads the spec for what differs (embedding scale, RMSNorm
 * offset, final logit softcapping), so the family files show only their
 * own layers.
 *
 * Thread: engine (called from a family's forward).
 */
#include "model/model_int.h"

#include <math.h>
#include <string.h>

size_t model_embed_batch(const model *m, model_run *r, const model_seq *seqs, size_t n_seqs)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, T = 0;
    for (size_t i = 0; i < n_seqs; i++) {
        SEM_ASSERT(seqs[i].n_tokens > 0);
        for (size_t t = 0; t < seqs[i].n_tokens; t++) {
            SEM_ASSERT(T < r->max_tokens);
            int32_t tok = seqs[i].tokens[t];
            SEM_ASSERT(tok >= 0 && tok < s->vocab);
            r->pos[T] = seqs[i].pos0 + (int32_t)t;
            float *x = r->x + T * hidden;
            kn_weight_row(&m->embed, (size_t)tok, x);
            if (s->embed_scale != 1.0f)
                for (size_t c = 0; c < hidden; c++) x[c] *= s->embed_scale;
            T++;
        }
    }
    return T;
}

void model_rmsnorm_rows(float *out, const float *x, const float *w, size_t T, size_t n, float eps,
                        float w_offset)
{
    for (size_t t = 0; t < T; t++) kn_rmsnorm(out + t * n, x + t * n, w, n, eps, w_offset);
}

kn_kv_view model_seq_layer_kv(const model_seq *sq, int32_t l)
{
    return kn_kv_view_layer(&sq->kv, sq->kv_layer_stride, l);
}

/* lm_head over the n rows gathered in r->xb, then softcapping. */
static void flush_logits(const model *m, kn_ctx *kc, model_run *r, float **dst, size_t *n)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, vocab = (size_t)s->vocab;
    if (*n == 0) return;
    kn_matmul(kc, &m->lm_head, r->xb, hidden, r->logits, vocab, *n);
    for (size_t j = 0; j < *n; j++) {
        float *row = r->logits + j * vocab;
        if (s->final_softcap > 0.0f) {
            float cap = s->final_softcap;
            for (size_t v = 0; v < vocab; v++) row[v] = cap * tanhf(row[v] / cap);
        }
        memcpy(dst[j], row, vocab * sizeof(float));
    }
    *n = 0;
}

void model_logits_batch(const model *m, kn_ctx *kc, model_run *r, model_seq *seqs, size_t n_seqs)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, vocab = (size_t)s->vocab;
    float *dst[64];
    size_t n = 0, t0 = 0;
    SEM_ASSERT(r->logit_rows <= 64);
    for (size_t i = 0; i < n_seqs; i++) {
        model_seq *sq = &seqs[i];
        size_t first = sq->all_logits ? 0 : sq->n_tokens - 1;
        for (size_t t = first; sq->logits && t < sq->n_tokens; t++) {
            kn_rmsnorm(r->xb + n * hidden, r->x + (t0 + t) * hidden, m->final_norm, hidden, s->rms_eps,
                       s->norm_offset);
            dst[n++] = sq->logits + (t - first) * vocab;
            if (n == r->logit_rows) flush_logits(m, kc, r, dst, &n);
        }
        t0 += sq->n_tokens;
    }
    flush_logits(m, kc, r, dst, &n);
}
