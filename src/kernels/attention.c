/* attention.c - kn_attention: causal, GQA, optionally windowed and
 * soft-capped attention of a few query tokens over one sequence's paged KV.
 *
 * Work unit: (query token, KV heads, slice of each KV head's query heads,
 * range of positions). The heads of a unit share every K and V row they
 * read: a chunk of rows is scored and accumulated for all of them while
 * it sits in L1, so a long context is streamed from memory once per unit
 * rather than once per query head.
 *
 * Prefill (many query tokens) runs one unit per (token, KV head); the
 * tokens of a chunk read the same rows, which stay in cache. A decode
 * step (fewer query tokens than the pool wants units) instead splits each
 * token's positions into `splits` equal ranges whose units take every KV
 * head, so the threads get equal work whatever the number of KV heads (3
 * KV heads on 2 threads left one thread twice the other's). Blocks are
 * head-major (kernels.h), so each head's rows of a chunk are one
 * contiguous run that the prefetchers stream (position-major blocks, where
 * a head read every n_kv_heads-th row, ran a cold SmolLM2-shaped layer
 * 25-30% slower on one thread and on two). Each range yields a partial softmax
 * state (max, denominator, unnormalized output) in a stack scratch, and
 * the ranges are merged in order after the pool pass (flash-decoding).
 * When the context is too short to split, or the partial states do not
 * fit the scratch (many heads of a wide v_head_dim, as MLA), the units
 * are per KV head and, if still too few, slice the group's query heads.
 * Units are dealt round-robin (in prefill later tokens attend to more
 * positions, so round-robin balances better than contiguous ranges).
 *
 * A unit streams its positions in chunks of at most CHUNK that never cross
 * a KV block: per KV head, scores for the chunk, then an online-softmax
 * update per query head (running max m, running denominator l; the
 * accumulator in the output row is rescaled by exp(m_old - m_new) when the
 * max grows). The only scratch is fixed arrays on the worker's stack.
 *
 * Thread: the ctx owner; units write disjoint output rows.
 */
#include "kernels/kn_impl.h"

#include <math.h>

enum {
    CHUNK = 64,         /* positions per scoring pass */
    MAX_KV_GROUPS = 64, /* head_dim / KN_KV_GROUP for the affine formats */
    MAX_PASS_HEADS = 32, /* query heads sharing one pass over the rows */
    PART_FLOATS = 16384, /* partial states of a split pass (64 KiB of stack) */
};

typedef struct at_job {
    const kn_ops *ops;
    const kn_kv_view *kv;
    const float *q;
    const int32_t *q_pos;
    size_t n_q;
    int32_t n_heads;
    int32_t group;   /* query heads per KV head */
    int32_t kv_unit; /* KV heads per unit: all of them (splits > 1) or 1 */
    int32_t slices;  /* head slices per (token, KV head); > 1 only with splits == 1 */
    int32_t splits;  /* position ranges per token */
    float *part;    /* splits > 1: [split][token][head] partial states (part_slot) */
    float scale;
    int32_t window;
    float softcap;
    float *out;
} at_job;

/* One query head's running state. */
typedef struct at_head {
    const float *q;             /* head_dim floats */
    float qgsum[MAX_KV_GROUPS]; /* sums of q per KV group (affine formats) */
    float m, l;                 /* running max and denominator */
    float *acc;                 /* the output row, v_head_dim floats */
} at_head;

/* Folds one chunk of scores (already softcapped) into head h's state:
 * sc becomes the weights exp(s - m) of the chunk's V rows. */
static void fold_chunk(const at_job *j, at_head *h, float *sc, size_t n)
{
    float mx[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) /* eight independent chains (one vector max) */
        for (size_t k = 0; k < 8; k++) mx[k] = sc[i + k] > mx[k] ? sc[i + k] : mx[k];
    for (; i < n; i++) mx[0] = sc[i] > mx[0] ? sc[i] : mx[0];
    float cmax = mx[0];
    for (size_t k = 1; k < 8; k++) cmax = mx[k] > cmax ? mx[k] : cmax;
    if (cmax > h->m) {
        if (h->l > 0) {
            float r = expf(h->m - cmax);
            h->l *= r;
            j->ops->scale(h->acc, r, (size_t)j->kv->v_head_dim);
        }
        h->m = cmax;
    }
    h->l += j->ops->exp_sum(sc, n, h->m);
}

/* n positions from pos0 (one block) for heads[0..nh) of KV head kvh: the
 * heads in groups of up to KN_GQA_MAX where the table scores and
 * accumulates a group in one pass over the rows, else one at a time. */
static void attend_chunk(const at_job *j, at_head *heads, int32_t nh, int32_t kvh, int32_t pos0,
                         size_t n, int32_t next, int32_t next_kvh)
{
    const kn_kv_view *kv = j->kv;
    const kn_ops *ops = j->ops;
    size_t kstride = kv->k_row_bytes;
    size_t vstride = kv->v_row_bytes;
    size_t hd = (size_t)kv->head_dim, vd = (size_t)kv->v_head_dim;
    const uint8_t *krows = kn_kv_row_ptr(kv, pos0, kvh, false);
    const uint8_t *vrows = kn_kv_row_ptr(kv, pos0, kvh, true);
    const uint8_t *knext = next >= 0 ? kn_kv_row_ptr(kv, next, next_kvh, false) : NULL;
    const uint8_t *vnext = next >= 0 ? kn_kv_row_ptr(kv, next, next_kvh, true) : NULL;
    float sc[KN_GQA_MAX][CHUNK];
    kn_kv_scores_g_fn scores_g = ops->kv_scores_g[kv->dtype];
    kn_kv_accum_g_fn accum_g = ops->kv_accum_g[kv->dtype];
    for (int32_t i = 0, m; i < nh; i += m) {
        m = scores_g ? (nh - i < KN_GQA_MAX ? nh - i : KN_GQA_MAX) : 1;
        const float *q[KN_GQA_MAX], *qg[KN_GQA_MAX], *p[KN_GQA_MAX];
        float *o[KN_GQA_MAX], *acc[KN_GQA_MAX];
        for (int32_t k = 0; k < m; k++)
            q[k] = heads[i + k].q, qg[k] = heads[i + k].qgsum, p[k] = o[k] = sc[k], acc[k] = heads[i + k].acc;
        if (scores_g) scores_g(q, qg, m, j->scale, krows, kstride, n, hd, i ? NULL : knext, o);
        else ops->kv_scores[kv->dtype](q[0], heads[i].qgsum, j->scale, krows, kstride, n, hd, o[0]);
        for (int32_t k = 0; k < m; k++) {
            if (j->softcap > 0)
                for (size_t c = 0; c < n; c++) sc[k][c] = j->softcap * tanhf(sc[k][c] / j->softcap);
            fold_chunk(j, &heads[i + k], sc[k], n);
        }
        if (accum_g) accum_g(acc, p, m, vrows, vstride, n, vd, i ? NULL : vnext);
        else ops->kv_accum[kv->dtype](acc[0], p[0], vrows, vstride, n, vd);
    }
}

/* Floats of one partial state: the accumulator rounded up to whole cache
 * lines, then a line holding (m, l). Each accumulator starts a line and
 * the slots of one split are contiguous, so the threads never write the
 * same line (a slot straddling two splits' lines had them trade it on
 * every chunk) and no vector access of an accumulator splits a line. */
static size_t part_floats(size_t v_head_dim) { return (v_head_dim + 15) / 16 * 16 + 16; }

/* Split r of a split pass: the partial state of query head row `row`;
 * its m and l follow the accumulator (part_floats). */
static float *part_slot(const at_job *j, size_t row, int32_t r)
{
    size_t rows = j->n_q * (size_t)j->n_heads;
    return j->part + ((size_t)r * rows + row) * part_floats((size_t)j->kv->v_head_dim);
}

static void head_init(const at_job *j, size_t t, int32_t hq, int32_t split, at_head *h)
{
    const kn_kv_view *kv = j->kv;
    size_t hd = (size_t)kv->head_dim, vd = (size_t)kv->v_head_dim;
    size_t row = t * (size_t)j->n_heads + (size_t)hq;
    h->q = j->q + row * hd;
    h->m = -INFINITY;
    h->l = 0;
    h->acc = j->splits > 1 ? part_slot(j, row, split) : j->out + row * vd;
    for (size_t i = 0; i < vd; i++) h->acc[i] = 0;
    size_t ng = hd / KN_KV_GROUP;
    for (size_t g = 0; g < ng && g < MAX_KV_GROUPS; g++) {
        float s = 0;
        for (size_t c = 0; c < KN_KV_GROUP; c++) s += h->q[g * KN_KV_GROUP + c];
        h->qgsum[g] = s;
    }
}

/* The positions token t attends to: [*lo, *end). */
static void token_range(const int32_t *q_pos, int32_t window, size_t t, int32_t *lo, int32_t *end)
{
    int32_t p = q_pos[t];
    *lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
    *end = p + 1;
}

/* The chunk at pos: at most CHUNK positions, within pos's block, before stop. */
static int32_t chunk_len(int32_t bt, int32_t pos, int32_t stop)
{
    int32_t n = bt - pos % bt;
    n = n < stop - pos ? n : stop - pos;
    return n < CHUNK ? n : CHUNK;
}

/* One pass of token t over split `split` of its positions: KV heads
 * [k0, k1) and of each its group's query heads [g0, g1), at most
 * MAX_PASS_HEADS in all. */
static void attend_pass(const at_job *j, size_t t, int32_t k0, int32_t k1, int32_t g0, int32_t g1,
                        int32_t split)
{
    const kn_kv_view *kv = j->kv;
    at_head heads[MAX_PASS_HEADS];
    int32_t per = g1 - g0, nh = (k1 - k0) * per, lo, end, bt = kv->block_tokens;
    for (int32_t i = 0; i < nh; i++) head_init(j, t, (k0 + i / per) * j->group + g0 + i % per, split, &heads[i]);
    token_range(j->q_pos, j->window, t, &lo, &end);
    size_t a0 = 0, a1 = (size_t)(end - lo);
    tp_split(a1, 16, split, j->splits, &a0, &a1); /* 16: balanced ranges, whole 4-row groups */
    for (int32_t pos = lo + (int32_t)a0, stop = lo + (int32_t)a1; pos < stop;) {
        int32_t n = chunk_len(bt, pos, stop);
        /* the grouped kernels prefetch the rows of the next (chunk, KV
         * head) while they compute this one's: the same chunk's next head,
         * or after the last head the next chunk's first (when it is as
         * long, in whichever block) */
        int32_t next = pos + n < stop && chunk_len(bt, pos + n, stop) >= n ? pos + n : -1;
        for (int32_t k = k0; k < k1; k++)
            attend_chunk(j, heads + (k - k0) * per, per, k, pos, (size_t)n, k + 1 < k1 ? pos : next,
                         k + 1 < k1 ? k + 1 : k0);
        pos += n;
    }
    for (int32_t i = 0; i < nh; i++) {
        if (j->splits > 1) { /* the partial state; merged by merge_splits */
            float *ml = heads[i].acc + part_floats((size_t)kv->v_head_dim) - 16;
            ml[0] = heads[i].m;
            ml[1] = heads[i].l;
            continue;
        }
        j->ops->scale(heads[i].acc, heads[i].l > 0 ? 1.0f / heads[i].l : 0.0f, (size_t)kv->v_head_dim);
    }
}

/* Token t, KV heads [k0, k1), query heads [g0, g1) of each group, split
 * `split`: as many KV heads per pass as MAX_PASS_HEADS allows. */
static void attend_heads(const at_job *j, size_t t, int32_t k0, int32_t k1, int32_t g0, int32_t g1,
                         int32_t split)
{
    int32_t per = g1 - g0;
    if (per > MAX_PASS_HEADS) {
        for (int32_t k = k0; k < k1; k++)
            for (int32_t a = g0; a < g1; a += MAX_PASS_HEADS)
                attend_pass(j, t, k, k + 1, a, g1 - a < MAX_PASS_HEADS ? g1 : a + MAX_PASS_HEADS, split);
        return;
    }
    for (int32_t k = k0, kn = MAX_PASS_HEADS / per; k < k1; k += kn)
        attend_pass(j, t, k, k1 - k < kn ? k1 : k + kn, g0, g1, split);
}

/* out = the softmax over all splits: each split's output and denominator
 * rescaled to the common max, summed in split order, normalized. */
static void merge_splits(const at_job *j)
{
    size_t vd = (size_t)j->kv->v_head_dim, ml = part_floats(vd) - 16;
    for (size_t row = 0; row < j->n_q * (size_t)j->n_heads; row++) {
        float m = -INFINITY, l = 0, *out = j->out + row * vd;
        for (int32_t r = 0; r < j->splits; r++) {
            const float *sl = part_slot(j, row, r) + ml;
            if (sl[1] > 0 && sl[0] > m) m = sl[0];
        }
        for (size_t i = 0; i < vd; i++) out[i] = 0;
        for (int32_t r = 0; r < j->splits; r++) {
            const float *acc = part_slot(j, row, r), *sl = acc + ml;
            if (sl[1] <= 0) continue; /* no positions */
            float w = expf(sl[0] - m);
            l += w * sl[1];
            for (size_t i = 0; i < vd; i++) out[i] += w * acc[i];
        }
        j->ops->scale(out, l > 0 ? 1.0f / l : 0.0f, vd);
    }
}

static void attend_units(void *p, int ith, int nth)
{
    const at_job *j = p;
    size_t per_kv = (size_t)j->slices * (size_t)j->splits; /* one of them is 1 */
    size_t per_token = (size_t)(j->kv->n_kv_heads / j->kv_unit) * per_kv;
    size_t units = j->n_q * per_token;
    for (size_t u = (size_t)ith; u < units; u += (size_t)nth) {
        size_t t = u / per_token, rest = u % per_token;
        int32_t k0 = (int32_t)(rest / per_kv) * j->kv_unit, r = (int32_t)(rest % per_kv);
        size_t lo, hi;
        tp_split((size_t)j->group, 1, j->slices > 1 ? r : 0, j->slices, &lo, &hi);
        if (lo < hi)
            attend_heads(j, t, k0, k0 + j->kv_unit, (int32_t)lo, (int32_t)hi, j->splits > 1 ? r : 0);
    }
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
    int32_t group = n_heads / kv->n_kv_heads, kv_unit = 1, slices = 1, splits = 1;
    size_t nth = (size_t)tp_n_threads(kc->pool), want = 2 * nth;
    _Alignas(64) float part[PART_FLOATS];
    if (n_q < want) {
        /* decode: units of whole rows (every KV head) over position
         * ranges, one range per thread: a range's first chunk has no
         * prefetch ahead of it, so fewer, longer ranges stream better
         * (two per thread took 10-30% longer on a cold SmolLM2-shaped
         * layer; dealing four per thread, 20-40% longer). Each range at
         * least a chunk long (the shortest token's range), partials that
         * fit; too short a context for two ranges uses the units per KV
         * head below unless there is one thread. */
        int32_t lo, end;
        size_t shortest = SIZE_MAX, fit = PART_FLOATS / (n_q * (size_t)n_heads * part_floats((size_t)kv->v_head_dim));
        for (size_t t = 0; t < n_q; t++) {
            token_range(q_pos, window, t, &lo, &end);
            shortest = (size_t)(end - lo) < shortest ? (size_t)(end - lo) : shortest;
        }
        size_t sp = (nth + n_q - 1) / n_q;
        sp = sp < shortest / CHUNK ? sp : shortest / CHUNK;
        sp = sp < fit ? sp : fit;
        while (sp > 1 && n_q * sp > nth && n_q * sp % nth) sp--;
        if (sp > 1 || nth == 1) splits = sp > 1 ? (int32_t)sp : 1, kv_unit = kv->n_kv_heads;
    }
    if (splits == 1)
        while (slices < group && n_q * (size_t)kv->n_kv_heads * (size_t)slices < want) slices++;
    at_job j = {
        .ops = kc->ops, .kv = kv, .q = q, .q_pos = q_pos, .n_q = n_q, .n_heads = n_heads,
        .group = group, .kv_unit = kv_unit, .slices = slices, .splits = splits, .part = part,
        .scale = scale,
        .window = window, .softcap = softcap, .out = out,
    };
    tp_run(kc->pool, attend_units, &j);
    if (splits > 1) merge_splits(&j);
}
