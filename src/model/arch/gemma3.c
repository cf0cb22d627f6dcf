/* gemma3.c - the Gemma 3 family (Gemma3ForCausalLM, and the text model of
 * Gemma3ForConditionalGeneration): tensor names and the forward pass,
 * following Hugging Face transformers' modeling_gemma3:
 *
 *   x = embed[tok] * embed_scale                       (sqrt(hidden), as stored)
 *   per layer:  h = norm(x) ; q,k,v = h Wq,Wk,Wv
 *               q, k = per-head norm(q), norm(k)       (q_norm, k_norm)
 *               rope(q, k): sliding layers use rope_local_theta unscaled,
 *                           global layers rope_theta with rope_scaling
 *               a = attention(q, K, V), scale query_pre_attn_scalar^-1/2,
 *                   scores softcapped when configured; sliding layers see
 *                   only the last sliding_window positions
 *               x += norm(a Wo)                        (post_attention_layernorm)
 *               h = norm(x)                            (pre_feedforward_layernorm)
 *               x += norm((gelu_tanh(h Wgate) * h Wup) Wdown)  (post_feedforward_layernorm)
 *   logits = norm(x) embed^T, softcapped when configured
 *   norm(x) = x / sqrt(mean(x^2) + eps) * (1 + w)
 *
 * KV: a sliding layer's attention reads only its window, so the engine's
 * ring pool keeps only that much of its KV (model_spec_kv_geometry's
 * window; kv/kv.h): its view may hold nothing before pos0 - window + 1,
 * which kn_attention never reads. Global layers keep every position.
 *
 * Thread: engine (forward); any (bind, during model_load).
 */
#include "model/model_int.h"

#include <stdlib.h>
#include <string.h>

/* ===================================================================== */
/* Binding                                                                */
/* ===================================================================== */

static sem_status bind_layer(model *m, int32_t l, sem_err *err)
{
    const model_spec *s = &m->spec;
    model_layer *L = &m->layers[l];
    size_t hidden = (size_t)s->hidden, inter = (size_t)s->intermediate, hd = (size_t)s->head_dim;
    size_t q_dim = (size_t)s->n_heads * hd, kv_dim = (size_t)s->n_kv_heads * hd;
    char p[256], n[300];
    snprintf(p, sizeof p, "%slayers.%d", m->prefix, l);
    sem_status st;
#define MAT(field, suffix, rows, cols) \
    (snprintf(n, sizeof n, "%s.%s", p, suffix), model_bind_matrix(m, n, rows, cols, &L->field, err))
#define VEC(field, suffix, len) \
    (snprintf(n, sizeof n, "%s.%s", p, suffix), model_bind_vector(m, n, len, &L->field, err))
    if ((st = VEC(attn_norm, "input_layernorm.weight", hidden)) ||
        (st = VEC(attn_post_norm, "post_attention_layernorm.weight", hidden)) ||
        (st = VEC(ffn_norm, "pre_feedforward_layernorm.weight", hidden)) ||
        (st = VEC(ffn_post_norm, "post_feedforward_layernorm.weight", hidden)) ||
        (st = VEC(q_norm, "self_attn.q_norm.weight", hd)) || (st = VEC(k_norm, "self_attn.k_norm.weight", hd)) ||
        (st = MAT(wq, "self_attn.q_proj", q_dim, hidden)) || (st = MAT(wk, "self_attn.k_proj", kv_dim, hidden)) ||
        (st = MAT(wv, "self_attn.v_proj", kv_dim, hidden)) || (st = MAT(wo, "self_attn.o_proj", hidden, q_dim)) ||
        (st = MAT(w_gate, "mlp.gate_proj", inter, hidden)) || (st = MAT(w_up, "mlp.up_proj", inter, hidden)) ||
        (st = MAT(w_down, "mlp.down_proj", hidden, inter)))
        return st;
#undef MAT
#undef VEC
    L->sliding = s->layer_sliding[l];
    return SEM_OK;
}

/* Where the text model's tensors live: "model." in a text checkpoint;
 * "language_model.model." (transformers < 4.52, mlx-vlm) or
 * "model.language_model." (newer) in an image-text one. */
static sem_status find_prefix(model *m, sem_err *err)
{
    static const char *const multi[] = {"language_model.model.", "model.language_model."};
    char name[96];
    if (strcmp(m->spec.arch_name, "Gemma3ForConditionalGeneration") != 0) return SEM_OK; /* "model." */
    for (size_t i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "%sembed_tokens.weight", multi[i]);
        if (model_has_tensor(m, name)) {
            snprintf(m->prefix, sizeof m->prefix, "%s", multi[i]);
            return SEM_OK;
        }
    }
    return sem_errf(err, SEM_ECORRUPT, "%s: missing tensor '%sembed_tokens.weight' (or '%sembed_tokens.weight')", m->dir,
                    multi[0], multi[1]);
}

sem_status model_gemma3_bind(model *m, sem_err *err)
{
    const model_spec *s = &m->spec;
    char name[96];
    sem_status st;
    m->layers = sem_calloc((size_t)s->n_layers, sizeof *m->layers);
    if (!m->layers) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", m->dir);
    if ((st = find_prefix(m, err))) return st;
    snprintf(name, sizeof name, "%sembed_tokens", m->prefix);
    if ((st = model_bind_matrix(m, name, (size_t)s->vocab, (size_t)s->hidden, &m->embed, err))) return st;
    m->embed_bytes = m->matrix_bytes;
    snprintf(name, sizeof name, "%snorm.weight", m->prefix);
    if ((st = model_bind_vector(m, name, (size_t)s->hidden, &m->final_norm, err))) return st;
    if (s->tied_embeddings) {
        m->lm_head = m->embed;
    } else {
        const char *head = model_has_tensor(m, "language_model.lm_head.weight") ? "language_model.lm_head" : "lm_head";
        if ((st = model_bind_matrix(m, head, (size_t)s->vocab, (size_t)s->hidden, &m->lm_head, err))) return st;
    }
    for (int32_t l = 0; l < s->n_layers; l++)
        if ((st = bind_layer(m, l, err))) return st;
    return SEM_OK;
}

/* ===================================================================== */
/* Forward                                                                */
/* ===================================================================== */

/* x += post_norm(xb) for T rows (the sandwich norm around a branch). */
static void add_normed(const model_spec *s, float *x, float *xb, const float *post_norm, size_t T)
{
    size_t hidden = (size_t)s->hidden;
    for (size_t t = 0; t < T; t++) {
        kn_rmsnorm(xb + t * hidden, xb + t * hidden, post_norm, hidden, s->rms_eps, s->norm_offset);
        kn_add(x + t * hidden, xb + t * hidden, hidden);
    }
}

static void attention_block(const model *m, kn_ctx *kc, model_run *r, const model_layer *L, int32_t l,
                            model_seq *seqs, size_t n_seqs, size_t T)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, hd = (size_t)s->head_dim;
    size_t nh = (size_t)s->n_heads, nkv = (size_t)s->n_kv_heads, q_dim = nh * hd, kv_dim = nkv * hd;
    const float *inv_freq = L->sliding ? m->rope_inv_freq_local : m->rope_inv_freq;

    model_rmsnorm_rows(r->xb, r->x, L->attn_norm, T, hidden, s->rms_eps, s->norm_offset);
    const kn_mm_item qkv[3] = {{&L->wq, r->xb, hidden, r->q, q_dim, T},
                               {&L->wk, r->xb, hidden, r->k, kv_dim, T},
                               {&L->wv, r->xb, hidden, r->v, kv_dim, T}};
    kn_matmul_group(kc, qkv, 3); /* one pool pass, one input */
    model_rmsnorm_rows(r->q, r->q, L->q_norm, T * nh, hd, s->rms_eps, s->norm_offset);
    model_rmsnorm_rows(r->k, r->k, L->k_norm, T * nkv, hd, s->rms_eps, s->norm_offset);
    for (size_t t = 0; t < T; t++) {
        kn_rope(r->q + t * q_dim, nh, hd, hd, r->pos[t], inv_freq, 1.0f);
        kn_rope(r->k + t * kv_dim, nkv, hd, hd, r->pos[t], inv_freq, 1.0f);
    }
    int32_t window = L->sliding ? s->sliding_window : 0;
    size_t t0 = 0;
    for (size_t i = 0; i < n_seqs; i++) {
        model_seq *sq = &seqs[i];
        kn_kv_view kv = model_seq_layer_kv(sq, l);
        for (size_t t = 0; t < sq->n_tokens; t++)
            kn_kv_store(&kv, r->pos[t0 + t], r->k + (t0 + t) * kv_dim, r->v + (t0 + t) * kv_dim);
        kn_attention(kc, &kv, r->q + t0 * q_dim, r->pos + t0, sq->n_tokens, s->n_heads, s->attn_scale, window,
                     s->attn_softcap, r->att + t0 * q_dim);
        t0 += sq->n_tokens;
    }
    kn_matmul(kc, &L->wo, r->att, q_dim, r->xb, hidden, T);
    add_normed(s, r->x, r->xb, L->attn_post_norm, T);
}

static void mlp_block(const model *m, kn_ctx *kc, model_run *r, const model_layer *L, size_t T)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, inter = (size_t)s->intermediate;
    model_rmsnorm_rows(r->xb, r->x, L->ffn_norm, T, hidden, s->rms_eps, s->norm_offset);
    const kn_mm_item gate_up[2] = {{&L->w_gate, r->xb, hidden, r->gate, inter, T},
                                   {&L->w_up, r->xb, hidden, r->up, inter, T}};
    kn_matmul_group(kc, gate_up, 2);
    kn_gelu_tanh_mul(r->gate, r->gate, r->up, T * inter);
    kn_matmul(kc, &L->w_down, r->gate, inter, r->xb, hidden, T);
    add_normed(s, r->x, r->xb, L->ffn_post_norm, T);
}

void model_gemma3_forward(const model *m, kn_ctx *kc, model_run *r, model_seq *seqs, size_t n_seqs)
{
    size_t T = model_embed_batch(m, r, seqs, n_seqs);
    for (int32_t l = 0; l < m->spec.n_layers; l++) {
        attention_block(m, kc, r, &m->layers[l], l, seqs, n_seqs, T);
        mlp_block(m, kc, r, &m->layers[l], T);
    }
    model_logits_batch(m, kc, r, seqs, n_seqs);
}
