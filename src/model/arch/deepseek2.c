/* deepseek2.c - the DeepSeek-V2 family (DeepseekV2ForCausalLM, e.g.
 * DeepSeek-Coder-V2-Lite): multi-head latent attention and a mixture of
 * experts. Semantics follow DeepSeek's modeling_deepseek.py (the code the
 * checkpoints' config.json names) and Hugging Face transformers:
 *
 *   x = embed[tok]
 *   per layer:  h = rmsnorm(x)
 *               q = h Wq                 (or rmsnorm(h Wq_a) Wq_b with q_lora_rank)
 *               [c | k_pe] = h Wkv_a     (c: kv_lora_rank dims, k_pe: qk_rope dims)
 *               [k_nope | v] per head = rmsnorm(c) Wkv_b     (folded in, see KV)
 *               q_pe, k_pe: interleaved rope (pairs 2i, 2i+1), YaRN
 *                   frequencies, cos/sin scaled by the YaRN attention factor;
 *                   k_pe is shared by every head
 *               K = [k_nope | k_pe], Q = [q_nope | q_pe]
 *               x += attention(Q, K, V) Wo  (scale 1/sqrt(qk dims) * mscale^2)
 *               h = rmsnorm(x)
 *               dense layers (l < first_k_dense_replace):
 *                   x += (silu(h Wgate) * h Wup) Wdown
 *               MoE layers:
 *                   p = softmax(h Wrouter); pick the top k experts greedily
 *                   (within the best topk_group groups for group_limited_greedy);
 *                   w = p / sum(p) when norm_topk_prob (k > 1), else
 *                   p * routed_scaling_factor
 *                   x += sum_k w_k expert_k(h) + shared_experts(h)
 *   logits = rmsnorm(x) lm_head
 *
 * The rope dims are stored de-interleaved (x0 x2 x4 .. x1 x3 ..) and
 * rotated rotate-half style: the same permutation of q_pe and k_pe leaves
 * every q.k unchanged, which is how DeepSeek's own code applies it.
 *
 * MoE batching: the tokens routed to each expert are gathered into one
 * matrix, so each expert's three matrices are read once per forward call;
 * the experts' (and the per-head MLA) products are issued as groups
 * (kn_matmul_group), one pool pass for many small matrices.
 *
 * KV: the compressed latent, not per-head K and V (model_spec_kv_geometry):
 * each position stores [c | k_pe] as its one K row and c as its V row, and
 * attention runs absorbed, the same math in another order:
 *   q_lat_h = [W_uk,h^T q_nope,h | q_pe,h]   (W_uk,h: head h's K rows of kv_b_proj)
 *   o_h     = softmax(q_lat_h . [c | k_pe]_s * scale) c_s       (MQA over the latent)
 *   v_h     = W_uv,h o_h                     (W_uv,h: head h's V rows)
 * W_uk,h^T is kept transposed in f32 (built at load from the stored
 * values); W_uv,h are row views of kv_b_proj itself.
 *
 * Thread: engine (forward); any (bind, during model_load).
 */
#include "model/model_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* q_a_layernorm and kv_a_layernorm use eps 1e-6 whatever rms_norm_eps says
 * (DeepseekV2RMSNorm's default; mlx-lm hard-codes it too). */
#define MLA_NORM_EPS 1e-6f

/* ===================================================================== */
/* Binding                                                                */
/* ===================================================================== */

/* kv_b_proj split for absorbed attention: its K half transposed per head
 * into f32 (exact: the dequantized values), its V half as row views. */
static sem_status bind_absorption(model *m, model_layer *L, sem_err *err)
{
    const model_spec *s = &m->spec;
    size_t nh = (size_t)s->n_heads, nope = (size_t)s->qk_nope_dim, vd = (size_t)s->v_head_dim;
    size_t kvl = (size_t)s->kv_lora_rank;
    float *row = sem_calloc(kvl, sizeof *row);
    L->uk_t = sem_calloc(nh * kvl * nope, sizeof *L->uk_t);
    L->w_uk_t = sem_calloc(nh, sizeof *L->w_uk_t);
    L->w_uv = sem_calloc(nh, sizeof *L->w_uv);
    if (!row || !L->uk_t || !L->w_uk_t || !L->w_uv) {
        free(row);
        return sem_errf(err, SEM_ENOMEM, "%s: out of memory", m->dir);
    }
    for (size_t h = 0; h < nh; h++) {
        float *t = L->uk_t + h * kvl * nope;
        for (size_t i = 0; i < nope; i++) {
            kn_weight_row(&L->wkv_b, h * (nope + vd) + i, row);
            for (size_t c = 0; c < kvl; c++) t[c * nope + i] = row[c];
        }
        L->w_uk_t[h] = (kn_weight){.dtype = KN_F32, .rows = kvl, .cols = nope, .data = t};
        L->w_uv[h] = model_weight_rows(&L->wkv_b, h * (nope + vd) + nope, vd);
    }
    free(row);
    m->matrix_bytes += (uint64_t)nh * kvl * nope * sizeof(float); /* read every step */
    return SEM_OK;
}

static sem_status bind_attention(model *m, model_layer *L, const char *p, sem_err *err)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, nh = (size_t)s->n_heads;
    size_t q_dim = nh * (size_t)s->head_dim, kv_lora = (size_t)s->kv_lora_rank, q_lora = (size_t)s->q_lora_rank;
    char n[320];
    sem_status st;
#define MAT(field, suffix, rows, cols) \
    (snprintf(n, sizeof n, "%s.%s", p, suffix), model_bind_matrix(m, n, rows, cols, &L->field, err))
#define VEC(field, suffix, len) \
    (snprintf(n, sizeof n, "%s.%s", p, suffix), model_bind_vector(m, n, len, &L->field, err))
    if (q_lora > 0) {
        if ((st = MAT(wq_a, "self_attn.q_a_proj", q_lora, hidden)) || (st = VEC(q_a_norm, "self_attn.q_a_layernorm.weight", q_lora)) ||
            (st = MAT(wq, "self_attn.q_b_proj", q_dim, q_lora)))
            return st;
    } else if ((st = MAT(wq, "self_attn.q_proj", q_dim, hidden))) {
        return st;
    }
    if ((st = MAT(wkv_a, "self_attn.kv_a_proj_with_mqa", kv_lora + (size_t)s->qk_rope_dim, hidden)) ||
        (st = VEC(kv_a_norm, "self_attn.kv_a_layernorm.weight", kv_lora)) ||
        (st = MAT(wkv_b, "self_attn.kv_b_proj", nh * (size_t)(s->qk_nope_dim + s->v_head_dim), kv_lora)) ||
        (st = MAT(wo, "self_attn.o_proj", hidden, nh * (size_t)s->v_head_dim)))
        return st;
    return bind_absorption(m, L, err);
}

static sem_status bind_moe(model *m, model_layer *L, const char *p, sem_err *err)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, E = (size_t)s->n_experts, mi = (size_t)s->moe_intermediate;
    size_t shared = mi * (size_t)s->n_shared_experts;
    char mlp[300], n[320];
    sem_status st;
    snprintf(mlp, sizeof mlp, "%s.mlp", p);
    L->moe = true;
    L->exp_gate = sem_calloc(E, sizeof *L->exp_gate);
    L->exp_up = sem_calloc(E, sizeof *L->exp_up);
    L->exp_down = sem_calloc(E, sizeof *L->exp_down);
    if (!L->exp_gate || !L->exp_up || !L->exp_down) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", m->dir);
    if ((st = MAT(router, "mlp.gate", E, hidden)) ||
        (st = model_bind_experts(m, mlp, "gate_proj", E, mi, hidden, L->exp_gate, err)) ||
        (st = model_bind_experts(m, mlp, "up_proj", E, mi, hidden, L->exp_up, err)) ||
        (st = model_bind_experts(m, mlp, "down_proj", E, hidden, mi, L->exp_down, err)))
        return st;
    if (shared > 0 &&
        ((st = MAT(sh_gate, "mlp.shared_experts.gate_proj", shared, hidden)) ||
         (st = MAT(sh_up, "mlp.shared_experts.up_proj", shared, hidden)) ||
         (st = MAT(sh_down, "mlp.shared_experts.down_proj", hidden, shared))))
        return st;
    return SEM_OK;
}

static sem_status bind_layer(model *m, int32_t l, sem_err *err)
{
    const model_spec *s = &m->spec;
    model_layer *L = &m->layers[l];
    size_t hidden = (size_t)s->hidden, inter = (size_t)s->intermediate;
    char p[256], n[320];
    sem_status st;
    snprintf(p, sizeof p, "model.layers.%d", l);
    if ((st = VEC(attn_norm, "input_layernorm.weight", hidden)) ||
        (st = VEC(ffn_norm, "post_attention_layernorm.weight", hidden)) || (st = bind_attention(m, L, p, err)))
        return st;
    if (model_spec_layer_is_moe(s, l)) return bind_moe(m, L, p, err);
    if ((st = MAT(w_gate, "mlp.gate_proj", inter, hidden)) || (st = MAT(w_up, "mlp.up_proj", inter, hidden)) ||
        (st = MAT(w_down, "mlp.down_proj", hidden, inter)))
        return st;
    return SEM_OK;
}
#undef MAT
#undef VEC

sem_status model_deepseek2_bind(model *m, sem_err *err)
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
/* Attention (MLA, absorbed, over the cached latent)                      */
/* ===================================================================== */

/* Interleaved rope on n vectors of rope_dim at x[i * stride]: reorder each
 * to (even dims, odd dims), then rotate-half. */
static void rope_interleaved(const model *m, float *x, size_t n, size_t stride, int32_t pos)
{
    const model_spec *s = &m->spec;
    size_t rd = (size_t)s->rope_dim, half = rd / 2;
    float tmp[MODEL_MAX_HEAD_DIM];
    for (size_t i = 0; i < n; i++) {
        float *v = x + i * stride;
        for (size_t j = 0; j < half; j++) {
            tmp[j] = v[2 * j];
            tmp[half + j] = v[2 * j + 1];
        }
        memcpy(v, tmp, rd * sizeof(float));
    }
    kn_rope(x, n, stride, rd, pos, m->rope_inv_freq, s->rope_attn_factor);
}

/* A batch of independent matmuls run as kn_matmul_group calls (one pool
 * pass for many small matrices: experts, per-head projections). */
typedef struct mm_batch {
    kn_ctx *kc;
    kn_mm_item items[KN_GROUP_MAX];
    size_t n;
} mm_batch;

static void mm_flush(mm_batch *b)
{
    if (b->n) kn_matmul_group(b->kc, b->items, b->n);
    b->n = 0;
}

static void mm_add(mm_batch *b, const kn_weight *w, const float *x, size_t ldx, float *y, size_t ldy, size_t n_tokens)
{
    if (b->n == KN_GROUP_MAX) mm_flush(b);
    b->items[b->n++] = (kn_mm_item){w, x, ldx, y, ldy, n_tokens};
}

/* From the normed input r->xb, in one group: Q [T][n_heads][qk_nope +
 * qk_rope] into r->q (through q_a / q_b with q_lora_rank), and the latent
 * of each token into r->lat, [rmsnorm(c) | roped k_pe]: the KV row (its
 * first kv_lora dims are also the V row). */
static void project_q_latent(const model *m, kn_ctx *kc, model_run *r, const model_layer *L, size_t T)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, q_dim = (size_t)s->n_heads * (size_t)s->head_dim;
    size_t kvl = (size_t)s->kv_lora_rank, rd = (size_t)s->qk_rope_dim, lat_dim = kvl + rd, ql = (size_t)s->q_lora_rank;
    mm_batch b = {.kc = kc};
    if (ql > 0) mm_add(&b, &L->wq_a, r->xb, hidden, r->latn, ql, T);
    else mm_add(&b, &L->wq, r->xb, hidden, r->q, q_dim, T);
    mm_add(&b, &L->wkv_a, r->xb, hidden, r->lat, lat_dim, T);
    mm_flush(&b);
    if (ql > 0) {
        model_rmsnorm_rows(r->latn, r->latn, L->q_a_norm, T, ql, MLA_NORM_EPS, 0.0f);
        kn_matmul(kc, &L->wq, r->latn, ql, r->q, q_dim, T);
    }
    for (size_t t = 0; t < T; t++) {
        float *lat = r->lat + t * lat_dim;
        kn_rmsnorm(lat, lat, L->kv_a_norm, kvl, MLA_NORM_EPS, 0.0f);
        rope_interleaved(m, lat + kvl, 1, rd, r->pos[t]);
    }
}

/* Absorbed queries r->q_lat [T][n_heads][kv_lora + qk_rope]: per head
 * [W_uk^T q_nope | roped q_pe], so q_lat . [c | k_pe] = q_nope . k_nope +
 * q_pe . k_pe with k_nope = W_uk c, the score of the unabsorbed form. */
static void absorb_q(const model *m, kn_ctx *kc, model_run *r, const model_layer *L, size_t T)
{
    const model_spec *s = &m->spec;
    size_t nh = (size_t)s->n_heads, hd = (size_t)s->head_dim, nope = (size_t)s->qk_nope_dim;
    size_t kvl = (size_t)s->kv_lora_rank, rd = (size_t)s->qk_rope_dim, lat_dim = kvl + rd;
    for (size_t t = 0; t < T; t++) {
        rope_interleaved(m, r->q + t * nh * hd + nope, nh, hd, r->pos[t]);
        for (size_t h = 0; h < nh; h++)
            memcpy(r->q_lat + (t * nh + h) * lat_dim + kvl, r->q + (t * nh + h) * hd + nope, rd * sizeof(float));
    }
    mm_batch b = {.kc = kc};
    for (size_t h = 0; h < nh; h++) mm_add(&b, &L->w_uk_t[h], r->q + h * hd, nh * hd, r->q_lat + h * lat_dim, nh * lat_dim, T);
    mm_flush(&b);
}

static void attention_block(const model *m, kn_ctx *kc, model_run *r, const model_layer *L, int32_t l,
                            model_seq *seqs, size_t n_seqs, size_t T)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, nh = (size_t)s->n_heads, vd = (size_t)s->v_head_dim;
    size_t kvl = (size_t)s->kv_lora_rank, lat_dim = kvl + (size_t)s->qk_rope_dim;
    model_rmsnorm_rows(r->xb, r->x, L->attn_norm, T, hidden, s->rms_eps, 0.0f);
    project_q_latent(m, kc, r, L, T);
    absorb_q(m, kc, r, L, T);
    size_t t0 = 0;
    for (size_t i = 0; i < n_seqs; i++) { /* MQA over the latent: one KV head for all query heads */
        model_seq *sq = &seqs[i];
        kn_kv_view kv = model_seq_layer_kv(sq, l);
        for (size_t t = 0; t < sq->n_tokens; t++) {
            const float *lat = r->lat + (t0 + t) * lat_dim;
            kn_kv_store(&kv, r->pos[t0 + t], lat, lat);
        }
        kn_attention(kc, &kv, r->q_lat + t0 * nh * lat_dim, r->pos + t0, sq->n_tokens, s->n_heads, s->attn_scale,
                     0, 0.0f, r->o_lat + t0 * nh * kvl);
        t0 += sq->n_tokens;
    }
    mm_batch b = {.kc = kc};
    for (size_t h = 0; h < nh; h++) /* back from the latent: v_h = W_uv,h o_h */
        mm_add(&b, &L->w_uv[h], r->o_lat + h * kvl, nh * kvl, r->att + h * vd, nh * vd, T);
    mm_flush(&b);
    kn_matmul(kc, &L->wo, r->att, nh * vd, r->xb, hidden, T);
    for (size_t t = 0; t < T; t++) kn_add(r->x + t * hidden, r->xb + t * hidden, hidden);
}

/* ===================================================================== */
/* Feed-forward: dense MLP, or routed + shared experts                    */
/* ===================================================================== */

/* out[T][hidden] = (silu(in Wg) * in Wu) Wd, through r->gate / r->up. */
static void swiglu(kn_ctx *kc, model_run *r, const kn_weight *wg, const kn_weight *wu, const kn_weight *wd,
                   const float *in, float *out, size_t T, size_t hidden)
{
    size_t inter = wg->rows;
    const kn_mm_item gate_up[2] = {{wg, in, hidden, r->gate, inter, T}, {wu, in, hidden, r->up, inter, T}};
    kn_matmul_group(kc, gate_up, 2);
    kn_swiglu(kc, r->gate, r->gate, r->up, T * inter);
    kn_matmul(kc, wd, r->gate, inter, out, hidden, T);
}

/* Index of the largest p[i] over i < n with allowed[i], ties to the lowest
 * index; -1 if none. */
static int32_t argmax_allowed(const float *p, const bool *allowed, int32_t n)
{
    int32_t best = -1;
    for (int32_t i = 0; i < n; i++)
        if (allowed[i] && (best < 0 || p[i] > p[best])) best = i;
    return best;
}

/* One token's routing: softmax scores in p[E] (in place), its top-k
 * experts in ids[k] and their weights in w[k]. */
static void route_token(const model_spec *s, float *p, int32_t *ids, float *w)
{
    int32_t E = s->n_experts, k = s->n_experts_used, G = s->n_expert_groups, per = E / G;
    bool allowed[MODEL_MAX_EXPERTS];
    kn_softmax(p, (size_t)E);
    for (int32_t e = 0; e < E; e++) allowed[e] = G == 1;
    if (G > 1) { /* group_limited_greedy: keep the topk_group groups with the best max score */
        float gmax[MODEL_MAX_EXPERTS];
        bool gfree[MODEL_MAX_EXPERTS];
        for (int32_t g = 0; g < G; g++) {
            gmax[g] = p[g * per];
            for (int32_t e = 1; e < per; e++) gmax[g] = fmaxf(gmax[g], p[g * per + e]);
            gfree[g] = true;
        }
        for (int32_t j = 0; j < s->n_groups_used; j++) {
            int32_t g = argmax_allowed(gmax, gfree, G);
            gfree[g] = false;
            for (int32_t e = 0; e < per; e++) allowed[g * per + e] = true;
        }
    }
    float sum = 0.0f;
    for (int32_t j = 0; j < k; j++) {
        ids[j] = argmax_allowed(p, allowed, E);
        SEM_ASSERT(ids[j] >= 0);
        allowed[ids[j]] = false;
        w[j] = p[ids[j]];
        sum += w[j];
    }
    for (int32_t j = 0; j < k; j++)
        w[j] = k > 1 && s->norm_topk_prob ? w[j] / (sum + 1e-20f) : w[j] * s->routed_scaling;
}

/* Routes every token, then lists (token, slot) pairs by expert:
 * exp_rows[exp_count[e] .. exp_count[e + 1]) are expert e's. */
static void route_batch(const model *m, kn_ctx *kc, model_run *r, const model_layer *L, size_t T)
{
    const model_spec *s = &m->spec;
    size_t E = (size_t)s->n_experts, k = (size_t)s->n_experts_used;
    kn_matmul(kc, &L->router, r->xb, (size_t)s->hidden, r->router, E, T);
    memset(r->exp_count, 0, (E + 1) * sizeof *r->exp_count);
    for (size_t t = 0; t < T; t++) {
        route_token(s, r->router + t * E, r->route_ids + t * k, r->route_w + t * k);
        for (size_t j = 0; j < k; j++) r->exp_count[r->route_ids[t * k + j] + 1]++;
    }
    for (size_t e = 0; e < E; e++) r->exp_count[e + 1] += r->exp_count[e];
    memcpy(r->exp_cursor, r->exp_count, E * sizeof *r->exp_cursor);
    for (size_t i = 0; i < T * k; i++) r->exp_rows[r->exp_cursor[r->route_ids[i]]++] = (int32_t)i; /* token order */
}

/* Routed + shared experts: every (token, slot) row is gathered by expert
 * into r->ex_x, so each expert's matrices run once over all its tokens;
 * all experts' gate/up products go in one group, all down products in
 * another; the weighted rows are then added back per token. */
static void moe_block(const model *m, kn_ctx *kc, model_run *r, const model_layer *L, size_t T)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden, k = (size_t)s->n_experts_used, mi = (size_t)s->moe_intermediate;
    size_t rows = T * k, sh = mi * (size_t)s->n_shared_experts;
    route_batch(m, kc, r, L, T);
    for (size_t i = 0; i < rows; i++)
        memcpy(r->ex_x + i * hidden, r->xb + (size_t)r->exp_rows[i] / k * hidden, hidden * sizeof(float));
    mm_batch b = {.kc = kc};
    if (sh > 0) {
        mm_add(&b, &L->sh_gate, r->xb, hidden, r->gate, sh, T);
        mm_add(&b, &L->sh_up, r->xb, hidden, r->up, sh, T);
    }
    for (int32_t e = 0; e < s->n_experts; e++) {
        size_t lo = (size_t)r->exp_count[e], n = (size_t)r->exp_count[e + 1] - lo;
        if (n == 0) continue;
        mm_add(&b, &L->exp_gate[e], r->ex_x + lo * hidden, hidden, r->ex_gate + lo * mi, mi, n);
        mm_add(&b, &L->exp_up[e], r->ex_x + lo * hidden, hidden, r->ex_up + lo * mi, mi, n);
    }
    mm_flush(&b);
    kn_swiglu(kc, r->ex_gate, r->ex_gate, r->ex_up, rows * mi);
    if (sh > 0) {
        kn_swiglu(kc, r->gate, r->gate, r->up, T * sh);
        mm_add(&b, &L->sh_down, r->gate, sh, r->moe_out, hidden, T);
    } else {
        memset(r->moe_out, 0, T * hidden * sizeof(float));
    }
    for (int32_t e = 0; e < s->n_experts; e++) { /* ex_x is free again: the experts' outputs */
        size_t lo = (size_t)r->exp_count[e], n = (size_t)r->exp_count[e + 1] - lo;
        if (n > 0) mm_add(&b, &L->exp_down[e], r->ex_gate + lo * mi, mi, r->ex_x + lo * hidden, hidden, n);
    }
    mm_flush(&b);
    for (size_t i = 0; i < rows; i++) { /* scatter, weighted */
        size_t row = (size_t)r->exp_rows[i];
        float w = r->route_w[row], *dst = r->moe_out + row / k * hidden;
        const float *src = r->ex_x + i * hidden;
        for (size_t c = 0; c < hidden; c++) dst[c] += w * src[c];
    }
    for (size_t t = 0; t < T; t++) kn_add(r->x + t * hidden, r->moe_out + t * hidden, hidden);
}

static void ffn_block(const model *m, kn_ctx *kc, model_run *r, const model_layer *L, size_t T)
{
    const model_spec *s = &m->spec;
    size_t hidden = (size_t)s->hidden;
    model_rmsnorm_rows(r->xb, r->x, L->ffn_norm, T, hidden, s->rms_eps, 0.0f);
    if (L->moe) {
        moe_block(m, kc, r, L, T);
        return;
    }
    swiglu(kc, r, &L->w_gate, &L->w_up, &L->w_down, r->xb, r->xb, T, hidden); /* xb is read before written */
    for (size_t t = 0; t < T; t++) kn_add(r->x + t * hidden, r->xb + t * hidden, hidden);
}

void model_deepseek2_forward(const model *m, kn_ctx *kc, model_run *r, model_seq *seqs, size_t n_seqs)
{
    size_t T = model_embed_batch(m, r, seqs, n_seqs);
    for (int32_t l = 0; l < m->spec.n_layers; l++) {
        attention_block(m, kc, r, &m->layers[l], l, seqs, n_seqs, T);
        ffn_block(m, kc, r, &m->layers[l], T);
    }
    model_logits_batch(m, kc, r, seqs, n_seqs);
}
