/* attention.c - kn_attention: causal, GQA, optionally windowed and
 * soft-capped attention of a few query tokens over one sequence's paged KV.
 *
 * Each (query token, head) is one work unit, dealt round-robin over the
 * pool (later tokens attend to more positions, so round-robin balances
 * better than contiguous ranges). A unit streams its positions in chunks
 * of at most CHUNK that never cross a KV block: scores for the chunk, then
 * an online-softmax update (running max m, running denominator l; the
 * accumulator in the output row is rescaled by exp(m_old - m_new) when
 * the max grows). The only scratch is a fixed array on the worker's stack.
 *
 * Thread: the ctx owner; units write disjoint output rows.
 */
#include "kernels/kn_impl.h"

#include <math.h>

enum { CHUNK = 64, MAX_KV_GROUPS = 64 };

typedef struct at_job {
    const kn_ops *ops;
    const kn_kv_view *kv;
    const float *q;
    const int32_t *q_pos;
    size_t n_q;
    int32_t n_heads;
    float scale;
    int32_t window;
    float softcap;
    float *out;
} at_job;

typedef struct at_state {
    float m, l;  /* running max and denominator */
    float *acc;  /* the output row, v_head_dim floats */
} at_state;

/* Scores one chunk of n positions starting at pos0 (all in one block),
 * folds them into st. */
static void attend_chunk(const at_job *j, const float *qh, const float *qgsum, int32_t kvh,
                         int32_t pos0, int32_t n, at_state *st)
{
    const kn_kv_view *kv = j->kv;
    size_t hd = (size_t)kv->head_dim, vd = (size_t)kv->v_head_dim;
    size_t kstride = (size_t)kv->n_kv_heads * kv->k_row_bytes;
    size_t vstride = (size_t)kv->n_kv_heads * kv->v_row_bytes;
    kn_kv_dot_fn dot = j->ops->kv_dot[kv->dtype];
    kn_kv_axpy_fn axpy = j->ops->kv_axpy[kv->dtype];
    float sc[CHUNK];
    const uint8_t *krow = kn_kv_row_ptr(kv, pos0, kvh, false);
    float cmax = -INFINITY;
    for (int32_t i = 0; i < n; i++, krow += kstride) {
        float s = dot(qh, qgsum, krow, hd) * j->scale;
        if (j->softcap > 0) s = j->softcap * tanhf(s / j->softcap);
        sc[i] = s;
        cmax = s > cmax ? s : cmax;
    }
    if (cmax > st->m) {
        if (st->l > 0) {
            float r = expf(st->m - cmax);
            st->l *= r;
            j->ops->scale(st->acc, r, vd);
        }
        st->m = cmax;
    }
    const uint8_t *vrow = kn_kv_row_ptr(kv, pos0, kvh, true);
    for (int32_t i = 0; i < n; i++, vrow += vstride) {
        float e = expf(sc[i] - st->m);
        st->l += e;
        axpy(st->acc, e, vrow, vd);
    }
}

static void attend_one(const at_job *j, size_t t, int32_t h)
{
    const kn_kv_view *kv = j->kv;
    size_t hd = (size_t)kv->head_dim, vd = (size_t)kv->v_head_dim;
    int32_t kvh = h / (j->n_heads / kv->n_kv_heads);
    const float *qh = j->q + (t * (size_t)j->n_heads + (size_t)h) * hd;
    at_state st = {.m = -INFINITY, .l = 0, .acc = j->out + (t * (size_t)j->n_heads + (size_t)h) * vd};
    for (size_t i = 0; i < vd; i++) st.acc[i] = 0;

    float qgsum[MAX_KV_GROUPS];
    size_t ng = hd / KN_KV_GROUP;
    for (size_t g = 0; g < ng && g < MAX_KV_GROUPS; g++) {
        float s = 0;
        for (size_t c = 0; c < KN_KV_GROUP; c++) s += qh[g * KN_KV_GROUP + c];
        qgsum[g] = s;
    }

    int32_t p = j->q_pos[t];
    int32_t lo = j->window > 0 && p - j->window + 1 > 0 ? p - j->window + 1 : 0;
    int32_t bt = kv->block_tokens;
    for (int32_t pos = lo; pos <= p;) {
        int32_t in_block = bt - pos % bt, left = p + 1 - pos;
        int32_t n = in_block < left ? in_block : left;
        n = n < CHUNK ? n : CHUNK;
        attend_chunk(j, qh, qgsum, kvh, pos, n, &st);
        pos += n;
    }
    float inv = st.l > 0 ? 1.0f / st.l : 0.0f;
    j->ops->scale(st.acc, inv, vd);
}

static void attend_units(void *p, int ith, int nth)
{
    const at_job *j = p;
    size_t units = j->n_q * (size_t)j->n_heads;
    for (size_t u = (size_t)ith; u < units; u += (size_t)nth)
        attend_one(j, u / (size_t)j->n_heads, (int32_t)(u % (size_t)j->n_heads));
}

void kn_attention(kn_ctx *kc, const kn_kv_view *kv, const float *q, const int32_t *q_pos,
                  size_t n_q, int32_t n_heads, float scale, int32_t window, float softcap,
                  float *out)
{
    SEM_ASSERT(kv->n_kv_heads > 0 && n_heads % kv->n_kv_heads == 0);
    SEM_ASSERT(kv->block_tokens > 0);
    SEM_ASSERT(kv->dtype >= KN_KV_F16 && kv->dtype <= KN_KV_F32);
    if (kv->dtype == KN_KV_Q8 || kv->dtype == KN_KV_Q4) {
        SEM_ASSERT(kv->head_dim % KN_KV_GROUP == 0 && kv->v_head_dim % KN_KV_GROUP == 0);
        SEM_ASSERT(kv->head_dim / KN_KV_GROUP <= MAX_KV_GROUPS);
    }
    at_job j = {
        .ops = kc->ops, .kv = kv, .q = q, .q_pos = q_pos, .n_q = n_q, .n_heads = n_heads,
        .scale = scale, .window = window, .softcap = softcap, .out = out,
    };
    tp_run(kc->pool, attend_units, &j);
}
