/* matmul.c - kn_matmul: splits a matmul over the compute pool by output
 * rows, after quantizing the activations once when the chosen table's
 * Q4/Q8 kernels work on quantized (int16 or int8) activations.
 *
 * Token counts above the context's max_tokens are processed in slices of
 * max_tokens (the scratch bound), so callers may pass any n_tokens.
 *
 * Rows are handed out in blocks by tp_deal: each thread works through its
 * own contiguous range first (one DRAM stream per core for its prefetchers:
 * on Zen 3 that decodes a SmolLM2-shaped model's matmuls 20-30% faster
 * than blocks interleaved between threads), then takes blocks from the
 * others, so a thread slow to get a core (a busy host) costs its share and
 * not a wait; the pool skips a thread that has not started by the time the
 * work is gone (base/threadpool.c). Tokens to quantize come from an atomic
 * counter. A unit of rows is about 16 KiB of weights (and at least 32
 * per thread when the matrix is small), a multiple of the kernels' 4-row
 * tiles; a thread takes runs of up to 4 units (~64 KiB) from its own
 * range and single units from the others', so the last pieces of a job
 * are small and the thread that finishes first waits for at most one of
 * them (a 64 KiB block, at a core's ~12 GB/s, is ~5 us of waiting per
 * matmul at decode, ~150 matmuls a token). Which thread computes a row
 * does not change its value.
 *
 * Thread: the ctx owner; the row ranges run on the pool's workers, which
 * write disjoint rows of y.
 */
#include "kernels/kn_impl.h"

#include <stdatomic.h>

/* Rows per work unit are a multiple of ROW_ALIGN (SIMD tiles are 4 rows). */
enum { ROW_ALIGN = 8, UNIT_BYTES = 16384 };
/* Packed Q4 tiles are 16 rows (pack.c). */
enum { PACKED_ALIGN = 16 };

typedef struct mm_job {
    const kn_ops *ops;
    const kn_weight *w;
    const float *x;
    size_t ldx;
    kn_qx *qx;
    kn_qx_layout layout;
    float *y;
    size_t ldy;
    size_t n_tokens;
    size_t block;       /* rows per unit */
    tp_deal deal;       /* units of `block` rows, dealt in runs of KN_MM_RUN */
    atomic_size_t next_tok; /* first token not yet quantized */
} mm_job;

static void mm_rows(void *p, int ith, int nth)
{
    mm_job *j = p;
    (void)nth;
    size_t rows = j->w->rows, u, n;
    for (int cursor = 0; tp_deal_next(&j->deal, ith, &cursor, KN_MM_RUN, &u, &n);) {
        size_t lo = u * j->block, hi = rows - lo < n * j->block ? rows : lo + n * j->block;
        kn_mm_kernel(j->ops, j->w)(j->w, lo, hi, j->x, j->ldx, j->qx, j->y, j->ldy, j->n_tokens);
    }
}

/* Bytes of one weight row, scales and biases included. */
static size_t row_bytes(const kn_weight *w)
{
    switch (w->dtype) {
    case KN_F32: return w->cols * 4;
    case KN_F16:
    case KN_BF16: return w->cols * 2;
    case KN_Q4:
    case KN_Q8: {
        size_t ssz = w->scale_dtype == KN_F32 ? 4 : 2;
        return w->cols * (size_t)w->bits / 8 + 2 * ssz * (w->cols / (size_t)w->group_size);
    }
    }
    return 1;
}

size_t kn_unit_rows(const kn_weight *w, int nth)
{
    size_t rb = row_bytes(w);
    size_t by_bytes = UNIT_BYTES / (rb ? rb : 1);
    size_t by_share = w->rows / (32 * (size_t)nth);
    size_t b = by_share < by_bytes ? by_share : by_bytes;
    size_t align = w->packed ? PACKED_ALIGN : ROW_ALIGN;
    b = (b + align - 1) / align * align;
    return b < align ? align : b;
}

static void quantize_tokens(void *p, int ith, int nth)
{
    mm_job *j = p;
    (void)ith, (void)nth;
    for (;;) {
        size_t t = atomic_fetch_add_explicit(&j->next_tok, 1, memory_order_relaxed);
        if (t >= j->n_tokens) break;
        j->ops->quantize(j->x + t * j->ldx, j->qx, t, j->layout);
    }
}

static void check_weight(const kn_ctx *kc, const kn_weight *w)
{
    SEM_ASSERT(w->dtype >= KN_F32 && w->dtype <= KN_Q8);
    if (w->dtype == KN_Q4 || w->dtype == KN_Q8) {
        SEM_ASSERT(w->bits == (w->dtype == KN_Q4 ? 4 : 8));
        SEM_ASSERT(w->group_size == 32 || w->group_size == 64 || w->group_size == 128);
        SEM_ASSERT(w->cols % (size_t)w->group_size == 0);
        if (kc->ops->uses_qx) SEM_ASSERT(w->cols <= kc->params.max_cols);
    }
}

void kn_matmul(kn_ctx *kc, const kn_weight *w, const float *x, size_t ldx, float *y, size_t ldy,
               size_t n_tokens)
{
    check_weight(kc, w);
    bool quant = (w->dtype == KN_Q4 || w->dtype == KN_Q8) && kc->ops->uses_qx;
    size_t slice = quant ? kc->params.max_tokens : n_tokens;
    for (size_t t0 = 0; t0 < n_tokens; t0 += slice) {
        size_t n = n_tokens - t0 < slice ? n_tokens - t0 : slice;
        mm_job j = {
            .ops = kc->ops, .w = w, .x = x + t0 * ldx, .ldx = ldx, .qx = &kc->qx,
            .layout = kn_mm_layout(kc->ops, w),
            .y = y + t0 * ldy, .ldy = ldy, .n_tokens = n,
            .block = kn_unit_rows(w, tp_n_threads(kc->pool)),
        };
        tp_deal_init(&j.deal, (w->rows + j.block - 1) / j.block, tp_n_threads(kc->pool));
        atomic_init(&j.next_tok, 0);
        if (quant) {
            kc->qx.cols = w->cols;
            kc->qx.n_tokens = n;
            kc->qx.group_size = w->group_size;
            if (n == 1) quantize_tokens(&j, 0, 1);
            else tp_run(kc->pool, quantize_tokens, &j);
        }
        tp_run(kc->pool, mm_rows, &j);
    }
}
