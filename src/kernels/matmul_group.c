/* matmul_group.c - kn_matmul_group: several independent matmuls in one
 * pass over the compute pool.
 *
 * Why: a MoE layer runs three small matmuls per chosen expert and MLA's
 * absorbed attention two per head; at decode each is a few hundred KiB of
 * weights, and one fork-join per matrix (tens of microseconds, far more
 * when a pool thread is preempted on a busy host) costs as much as the
 * arithmetic. Here the rows of every matrix are cut into units (the same
 * ~16 KiB units as kn_matmul) and all units of all matrices are dealt
 * as one range (tp_deal, as in kn_matmul), so the group costs one barrier
 * (two with quantized activations: one to quantize every item's rows, one
 * to multiply).
 *
 * Results are those of kn_matmul on each item: the same row kernels on
 * the same rows (which thread computes a row does not change its value)
 * and, on the quantizing tables, each item's activations quantized into its own
 * slice of the context's scratch exactly as kn_matmul would (items with
 * the same input - a gate and an up projection - share one slice). When
 * the slices do not all fit the scratch, the group runs in consecutive
 * parts that do; an item too large on its own goes through kn_matmul.
 *
 * Thread: the ctx owner; blocks run on the pool's workers, which write
 * disjoint rows of the items' outputs (outputs must not overlap).
 */
#include "kernels/kn_impl.h"

#include <stdatomic.h>

enum { SERIAL_QUANT_ELEMS = 65536 };

typedef struct grp_job {
    const kn_ops *ops;
    const kn_mm_item *items;
    size_t n;
    kn_qx qx[KN_GROUP_MAX];          /* item i's view of the scratch */
    size_t block[KN_GROUP_MAX];      /* rows per unit of item i */
    size_t first[KN_GROUP_MAX + 1];  /* first unit of item i; first[n] = all units */
    size_t qfirst[KN_GROUP_MAX + 1]; /* first quantize task (token) of item i */
    size_t qx_elems;                 /* activations to quantize, in all */
    tp_deal deal;                    /* the units [0, first[n]) */
    atomic_size_t next_task;         /* first quantize task not yet handed out */
} grp_job;

static bool is_quant(const kn_weight *w) { return w->dtype == KN_Q4 || w->dtype == KN_Q8; }

static void check_item(const kn_ctx *kc, const kn_mm_item *it)
{
    const kn_weight *w = it->w;
    SEM_ASSERT(w->dtype >= KN_F32 && w->dtype <= KN_Q8 && w->rows > 0);
    if (is_quant(w)) {
        SEM_ASSERT(w->bits == (w->dtype == KN_Q4 ? 4 : 8));
        SEM_ASSERT(w->group_size == 32 || w->group_size == 64 || w->group_size == 128);
        SEM_ASSERT(w->cols % (size_t)w->group_size == 0);
        if (kc->ops->uses_qx) SEM_ASSERT(w->cols <= kc->params.max_cols);
    }
}

/* The earlier item of the group whose activations item i can share (same
 * rows, same quantization), or i itself: a gate and an up projection of
 * one input quantize it once. */
static size_t same_input(const grp_job *j, size_t i, const kn_qx_layout *layout)
{
    const kn_mm_item *it = &j->items[i];
    for (size_t p = 0; p < i; p++) {
        const kn_mm_item *q = &j->items[p];
        if (is_quant(q->w) && q->x == it->x && q->ldx == it->ldx && q->n_tokens == it->n_tokens &&
            q->w->cols == it->w->cols && q->w->group_size == it->w->group_size && layout[p] == layout[i])
            return p;
    }
    return i;
}

/* Carves the quantized items' activation slices out of the scratch, in
 * the per-token strides the quantizer and the integer kernels use (q or
 * q16: cols elements, d: cols / 8 floats, gsum: cols / group floats),
 * for the longest prefix of items that fits; returns its length (0 when
 * the first item alone does not fit). */
static size_t carve_qx(const kn_ctx *kc, grp_job *j)
{
    size_t cap = kc->params.max_tokens * kc->params.max_cols, used = 0, gused = 0, i;
    kn_qx_layout layout[KN_GROUP_MAX];
    j->qfirst[0] = 0;
    for (i = 0; i < j->n; i++) {
        const kn_mm_item *it = &j->items[i];
        j->qfirst[i + 1] = j->qfirst[i];
        if (!is_quant(it->w)) continue;
        layout[i] = kn_mm_layout(j->ops, it->w);
        size_t p = same_input(j, i, layout);
        if (p != i) {
            j->qx[i] = j->qx[p];
            continue;
        }
        size_t cols = it->w->cols, need = it->n_tokens * cols;
        if (it->n_tokens > kc->params.max_tokens || need > cap - used) break;
        kn_qx *q = &j->qx[i];
        if (kc->qx.q) q->q = kc->qx.q + used;
        if (kc->qx.q16) q->q16 = kc->qx.q16 + used;
        q->d = kc->qx.d + used / 8;
        q->gsum = kc->qx.gsum + gused;
        q->cols = cols;
        q->n_tokens = it->n_tokens;
        q->group_size = it->w->group_size;
        used += need;
        gused += it->n_tokens * (cols / (size_t)it->w->group_size);
        j->qfirst[i + 1] += it->n_tokens;
    }
    j->qx_elems = used;
    return i;
}

static void grp_quantize(void *p, int ith, int nth)
{
    grp_job *j = p;
    (void)ith, (void)nth;
    size_t i = 0; /* tasks only increase, so the item index only advances */
    for (;;) {
        size_t task = atomic_fetch_add_explicit(&j->next_task, 1, memory_order_relaxed);
        if (task >= j->qfirst[j->n]) break;
        while (task >= j->qfirst[i + 1]) i++;
        const kn_mm_item *it = &j->items[i];
        size_t t = task - j->qfirst[i];
        kn_qx_layout layout = kn_mm_layout(j->ops, it->w);
        j->ops->quantize(it->x + t * it->ldx, &j->qx[i], t, layout);
    }
}

static void grp_rows(void *p, int ith, int nth)
{
    grp_job *j = p;
    (void)nth;
    size_t i = 0, u, n; /* a thread's units increase within a part of the deal */
    for (int cursor = 0; tp_deal_next(&j->deal, ith, &cursor, KN_MM_RUN, &u, &n);) {
        for (size_t end = u + n; u < end;) { /* the run, cut where an item ends */
            if (u < j->first[i]) i = 0;
            while (u >= j->first[i + 1]) i++;
            const kn_mm_item *it = &j->items[i];
            size_t take = end < j->first[i + 1] ? end - u : j->first[i + 1] - u;
            size_t lo = (u - j->first[i]) * j->block[i], rows = it->w->rows;
            size_t hi = rows - lo < take * j->block[i] ? rows : lo + take * j->block[i];
            kn_mm_kernel(j->ops, it->w)(it->w, lo, hi, it->x, it->ldx, &j->qx[i], it->y, it->ldy, it->n_tokens);
            u += take;
        }
    }
}

/* Runs items[0 .. n) (all fitting the scratch together) in one pass. */
static void run_group(kn_ctx *kc, grp_job *j)
{
    int nth = tp_n_threads(kc->pool);
    j->first[0] = 0;
    for (size_t i = 0; i < j->n; i++) {
        const kn_mm_item *it = &j->items[i];
        j->block[i] = kn_unit_rows(it->w, nth);
        j->first[i + 1] = j->first[i] + (it->n_tokens ? (it->w->rows + j->block[i] - 1) / j->block[i] : 0);
    }
    /* A few rows (decode) quantize faster here than a fork-join takes. */
    atomic_init(&j->next_task, 0);
    if (j->qx_elems > SERIAL_QUANT_ELEMS) tp_run(kc->pool, grp_quantize, j);
    else if (j->qx_elems > 0) grp_quantize(j, 0, 1);
    tp_deal_init(&j->deal, j->first[j->n], nth);
    tp_run(kc->pool, grp_rows, j);
}

void kn_matmul_group(kn_ctx *kc, const kn_mm_item *items, size_t n)
{
    SEM_ASSERT(n <= KN_GROUP_MAX);
    bool need_qx = false;
    for (size_t i = 0; i < n; i++) {
        check_item(kc, &items[i]);
        need_qx |= is_quant(items[i].w) && kc->ops->uses_qx;
    }
    for (size_t i = 0; i < n;) {
        grp_job j = {.ops = kc->ops, .items = items + i, .n = n - i};
        for (size_t k = 0; k < j.n; k++) j.qx[k] = kc->qx;
        if (need_qx) j.n = carve_qx(kc, &j); /* the prefix that fits the scratch */
        if (j.n == 0) { /* one item too large for the scratch at once: kn_matmul slices it */
            kn_matmul(kc, items[i].w, items[i].x, items[i].ldx, items[i].y, items[i].ldy, items[i].n_tokens);
            i++;
            continue;
        }
        run_group(kc, &j);
        i += j.n;
    }
}
