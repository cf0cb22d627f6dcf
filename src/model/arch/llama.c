/* llama.c - the Llama family (LlamaForCausalLM, MistralForCausalLM, and
 * Qwen2ForCausalLM, which adds q/k/v biases): tensor names and the forward
 * pass, following Hugging Face transformers' semantics:
 *
 *   x = embed[tok]
 *   per layer:  h = rmsnorm(x) ; q,k,v = h Wq,Wk,Wv (+ biases)
 *               rope(q, k) rotate-half at each token's position
 *               x += attention(q, K, V) Wo          (causal, GQA)
 *               h = rmsnorm(x) ; x += (silu(h Wgate) * h Wup) Wdown
 *   logits = rmsnorm(x) lm_head
 *
 * A call processes a batch: the new tokens of every sequence are stacked
 * into one [T][hidden] matrix, so each weight is read once per call;
 * only attention runs per sequence, over that sequence's KV blocks.
 *
 * Thread: engine (forward); any (bind, during model_load).
 */
#include "model/model_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* Binding                                                                */
/* ===================================================================== */

static sem_status bind_layer(model *m, int32_t l, sem_err *err)
{
    const model_spec *s = &m->spec;
    model_layer *L = &m->layers[l];
    size_t hidden = (size_t)s->hidden, inter = (size_t)s->intermediate;
    size_t q_dim = (size_t)s->n_heads * (size_t)s->head_dim;
    size_t kv_dim = (size_t)s->n_kv_heads * (size_t)s->head_dim;
    char p[256], n[300];
    snprintf(p, sizeof p, "model.layers.%d", l);
    sem_status st;
#define MAT(field, suffix, rows, cols) \
    (snprintf(n, sizeof n, "%s.%s", p, suffix), model_bind_matrix(m, n, rows, cols, &L->field, err))
#define VEC(field, suffix, len) \
    (snprintf(n, sizeof n, "%s.%s", p, suffix), model_bind_vector(m, n, len, &L->field, err))
    if ((st = VEC(attn_norm, "input_layernorm.weight", hidden)) ||
        (st = VEC(ffn_norm, "post_attention_layernorm.weight", hidden)) ||
        (st = MAT(wq, "self_attn.q_proj", q_dim, hidden)) ||
        (st = MAT(wk, "self_attn.k_proj", kv_dim, hidden)) ||
        (st = MAT(wv, "self_attn.v_proj", kv_dim, hidden)) ||
        (st = MAT(wo, "self_attn.o_proj", hidden, q_dim)) ||
        (st = MAT(w_gate, "mlp.gate_proj", inter, hidden)) ||
        (st = MAT(w_up, "mlp.up_proj", inter, hidden)) ||
        (st = MAT(w_down, "mlp.down_proj", hidden, inter)))
        return st;
    if (s->qkv_bias &&
        ((st = VEC(bq, "self_attn.q_proj.bias", q_dim)) || (st = VEC(bk, "self_attn.k_proj.bias", kv_dim)) ||
         (st = VEC(bv, "self_attn.v_proj.bias", kv_dim))))
        return st;
#undef MAT
#undef VEC
    return SEM_OK;
}

sem_status model_llama_bind(model *m, sem_err *err)
{
    const model_spec *s = &m->spec;
    m->layers = sem_calloc((size_t)s->n_layers, sizeof *m->layers);
    if (!m->layers) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", m->dir);
    sem_status st = model_bind_matrix(m, "model.embed_tokens", (size_t)s->vocab, (size_t)s->hidden, &m->embed, err);
    if (st) return st;
    m->embed_bytes = m->matrix_bytes;
    if ((st = model_bind_vector(m, "model.norm.weight", (size_t)s->hidden, &m->final_norm, err))) return st;
    if (s->tied_embeddings) m->lm_head = m->embed;
    else if ((st = model_bind_matrix(m, "lm_head", (size_t)s->vocab, (size_t)s->hidden, &m->lm_head, err)))
        return st;
    for (int32_t l = 0; l < s->n_layers; l++)
        if ((st = bind_layer(m, l, err))) return st;
    return SEM_OK;
}

/* ===================================================================== */
/* Forward                                                                */
/* ===================================================================== */

static void add_bias_rows(float *x, const float *bias, size_t n_rows, size_t dim)
{
    if (!bias) return;
    for (size_t t = 0; t < n_rows; t++) kn_add(x + t * dim, bias, dim);
}

/* Attention block for layer l: x += Wo · attention(rope(Wq h), rope(Wk h), Wv h). */
static void attention_block(const model *m, kn_ctx *kc, model_run *r, const model_layer *L, int32_t l,
                            model_seq *seqs, size_t n_seqs, size_t T)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, hd = (size_t)s->head_dim;
    size_t q_dim = (size_t)s->n_heads * hd, kv_dim = (size_t)s->n_kv_heads * hd;
    size_t v_dim = (size_t)s->n_kv_heads * (size_t)s->v_head_dim;
    size_t att_dim = (size_t)s->n_heads * (size_t)s->v_head_dim;

    for (size_t t = 0; t < T; t++) kn_rmsnorm(r->xb + t * hidden, r->x + t * hidden, L->attn_norm, hidden, s->rms_eps, 0.0f);
    const kn_mm_item qkv[3] = {{&L->wq, r->xb, hidden, r->q, q_dim, T},
                               {&L->wk, r->xb, hidden, r->k, kv_dim, T},
                               {&L->wv, r->xb, hidden, r->v, v_dim, T}};
    kn_matmul_group(kc, qkv, 3); /* one pool pass, one input quantized once */
    add_bias_rows(r->q, L->bq, T, q_dim);
    add_bias_rows(r->k, L->bk, T, kv_dim);
    add_bias_rows(r->v, L->bv, T, v_dim);
    for (size_t t = 0; t < T; t++) {
        kn_rope_apply(r->q + t * q_dim, (size_t)s->n_heads, hd, hd, r->rope + t * hd);
        kn_rope_apply(r->k + t * kv_dim, (size_t)s->n_kv_heads, hd, hd, r->rope + t * hd);
    }

    size_t t0 = 0;
    for (size_t i = 0; i < n_seqs; i++) {
        model_seq *sq = &seqs[i];
        kn_kv_view kv = sq->kv;
        kv.k_offset += (size_t)l * sq->kv_layer_stride;
        kv.v_offset += (size_t)l * sq->kv_layer_stride;
        for (size_t t = 0; t < sq->n_tokens; t++)
            kn_kv_store(&kv, r->pos[t0 + t], r->k + (t0 + t) * kv_dim, r->v + (t0 + t) * v_dim);
        kn_attention(kc, &kv, r->q + t0 * q_dim, r->pos + t0, sq->n_tokens, s->n_heads,
                     1.0f / sqrtf((float)hd), 0, 0.0f, r->att + t0 * att_dim);
        t0 += sq->n_tokens;
    }
    kn_matmul(kc, &L->wo, r->att, att_dim, r->xb, hidden, T);
    for (size_t t = 0; t < T; t++) kn_add(r->x + t * hidden, r->xb + t * hidden, hidden);
}

/* Feed-forward block: x += Wdown · (silu(Wgate h) * Wup h). */
static void mlp_block(const model *m, kn_ctx *kc, model_run *r, const model_layer *L, size_t T)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, inter = (size_t)s->intermediate;
    for (size_t t = 0; t < T; t++) kn_rmsnorm(r->xb + t * hidden, r->x + t * hidden, L->ffn_norm, hidden, s->rms_eps, 0.0f);
    const kn_mm_item gate_up[2] = {{&L->w_gate, r->xb, hidden, r->gate, inter, T},
                                   {&L->w_up, r->xb, hidden, r->up, inter, T}};
    kn_matmul_group(kc, gate_up, 2);
    kn_swiglu(kc, r->gate, r->gate, r->up, T * inter);
    kn_matmul(kc, &L->w_down, r->gate, inter, r->xb, hidden, T);
    for (size_t t = 0; t < T; t++) kn_add(r->x + t * hidden, r->xb + t * hidden, hidden);
}

static void flush_logits(const model *m, kn_ctx *kc, model_run *r, float **dst, size_t *n)
{
    size_t hidden = (size_t)m->spec.hidden, vocab = (size_t)m->spec.vocab;
    if (*n == 0) return;
    kn_matmul(kc, &m->lm_head, r->xb, hidden, r->logits, vocab, *n);
    for (size_t j = 0; j < *n; j++) memcpy(dst[j], r->logits + j * vocab, vocab * sizeof(float));
    *n = 0;
}

/* Final norm and lm_head over the rows that want logits, in chunks of
 * run->logit_rows rows per matmul (one weight pass per chunk). */
static void logits_block(const model *m, kn_ctx *kc, model_run *r, model_seq *seqs, size_t n_seqs)
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
            kn_rmsnorm(r->xb + n * hidden, r->x + (t0 + t) * hidden, m->final_norm, hidden, s->rms_eps, 0.0f);
            dst[n++] = sq->logits + (t - first) * vocab;
            if (n == r->logit_rows) flush_logits(m, kc, r, dst, &n);
        }
        t0 += sq->n_tokens;
    }
    flush_logits(m, kc, r, dst, &n);
}

void model_llama_forward(const model *m, kn_ctx *kc, model_run *r, model_seq *seqs, size_t n_seqs)
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
            /* q and k of every layer rotate by these angles: cos/sin once */
            kn_rope_table(r->rope + T * (size_t)s->head_dim, r->pos[T], m->rope_inv_freq, (size_t)s->head_dim, 1.0f);
            kn_weight_row(&m->embed, (size_t)tok, r->x + T * hidden);
            T++;
        }
    }
    for (int32_t l = 0; l < s->n_layers; l++) {
        attention_block(m, kc, r, &m->layers[l], l, seqs, n_seqs, T);
        mlp_block(m, kc, r, &m->layers[l], T);
    }
    logits_block(m, kc, r, seqs, n_seqs);
}
