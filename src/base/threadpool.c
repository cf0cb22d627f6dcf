/* threadpool.c - the compute pool: a fork-join parallel-for used by the
 * kernels. No OpenMP (libgomp hangs after fork).
 *
 * A job is published by bumping `gen`; workers spin on it for a while
 * (decode issues hundreds of small matmuls per token, and a futex wakeup
 * each would cost more than the work), then fall back to a condvar.
 *
 * Shares are claimed, not assigned: share i of job g belongs to whoever
 * first moves claim[i] to g, worker i or the caller. The caller runs share
 * 0, then claims every share whose worker has not started it yet and runs
 * it itself, then waits only for the workers that won their claim. On a
 * busy host a worker that has no core at the moment (preempted, or still
 * waking) therefore costs the caller its share of the work instead of a
 * scheduler time slice of waiting; a worker that does not get to its
 * share finds it claimed and skips it. The one stall left is a worker
 * preempted in the middle of its share. Kernels that deal their work with
 * tp_deal (each share's own contiguous range first, then the others'
 * from the back) make that share small: the caller has already taken
 * everything else.
 *
 * Thread: tp_run is called by one owner thread at a time (the engine).
 */
#include "base.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

enum { SPIN_ITERS = 200000 };

struct tp_pool {
    int n_threads;            /* including the caller */
    pthread_t *threads;       /* owned; n_threads - 1 workers */
    tp_fn fn;                 /* current job; written before the gen bump */
    void *ctx;
    atomic_uint gen;          /* job generation; its bump publishes fn/ctx */
    atomic_uint *claim;       /* [n_threads]: the gen that claimed share i */
    atomic_int n_done;        /* shares finished by workers in this job */
    atomic_bool stop;
    atomic_int n_sleeping;    /* workers waiting on cv */
    pthread_mutex_t mu;       /* guards cv sleep/wake */
    pthread_cond_t cv;
};

typedef struct worker_arg {
    tp_pool *tp;
    int ith;
} worker_arg;

static unsigned wait_for_gen(tp_pool *tp, unsigned seen)
{
    for (int i = 0; i < SPIN_ITERS; i++) {
        unsigned g = atomic_load_explicit(&tp->gen, memory_order_acquire);
        if (g != seen || atomic_load(&tp->stop)) return g;
        if ((i & 1023) == 1023) sched_yield();
        else cpu_relax();
    }
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add(&tp->n_sleeping, 1);
    unsigned g;
    while ((g = atomic_load_explicit(&tp->gen, memory_order_acquire)) == seen &&
           !atomic_load(&tp->stop))
        pthread_cond_wait(&tp->cv, &tp->mu);
    atomic_fetch_sub(&tp->n_sleeping, 1);
    pthread_mutex_unlock(&tp->mu);
    return g;
}

/* Moves claim[i] forward to gen g unless someone already claimed it for g
 * or a later job: true if we won. (A worker that saw gen g late must not
 * claim a share of a later job, whose fn it has not read.) */
static bool claim_share(tp_pool *tp, int i, unsigned g)
{
    unsigned old = atomic_load_explicit(&tp->claim[i], memory_order_relaxed);
    return (int)(g - old) > 0 && atomic_compare_exchange_strong_explicit(&tp->claim[i], &old, g,
                                                                         memory_order_acq_rel,
                                                                         memory_order_relaxed);
}

static void *worker_main(void *p)
{
    worker_arg *wa = p;
    tp_pool *tp = wa->tp;
    int ith = wa->ith;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_gen(tp, seen);
        if (atomic_load(&tp->stop)) break;
        /* a claim for gen `seen` can only succeed while the caller is
         * still in that job, so fn/ctx are that job's */
        if (!claim_share(tp, ith, seen)) continue;
        tp->fn(tp->ctx, ith, tp->n_threads);
        atomic_fetch_add_explicit(&tp->n_done, 1, memory_order_release);
    }
    return NULL;
}

sem_status tp_create(int n_threads, tp_pool **out, sem_err *err)
{
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 256) return sem_errf(err, SEM_EINVAL, "thread pool: %d threads is too many", n_threads);
    tp_pool *tp = calloc(1, sizeof *tp);
    if (!tp) return sem_errf(err, SEM_ENOMEM, "thread pool: out of memory");
    tp->n_threads = n_threads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_cond_init(&tp->cv, NULL);
    tp->threads = calloc((size_t)n_threads, sizeof *tp->threads);
    tp->claim = calloc((size_t)n_threads, sizeof *tp->claim);
    if (!tp->threads || !tp->claim) {
        tp_destroy(tp);
        return sem_errf(err, SEM_ENOMEM, "thread pool: out of memory");
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) goto fail;
        wa->tp = tp;
        wa->ith = i;
        if (pthread_create(&tp->threads[i - 1], NULL, worker_main, wa) != 0) {
            free(wa);
            goto fail;
        }
    }
    *out = tp;
    return SEM_OK;
fail:
    tp_destroy(tp);
    return sem_errf(err, SEM_ENOMEM, "thread pool: cannot start %d threads", n_threads);
}

void tp_destroy(tp_pool *tp)
{
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->stop, true);
    pthread_cond_broadcast(&tp->cv);
    pthread_mutex_unlock(&tp->mu);
    if (tp->threads) {
        for (int i = 0; i < tp->n_threads - 1; i++)
            if (tp->threads[i]) pthread_join(tp->threads[i], NULL);
    }
    free(tp->threads);
    free(tp->claim);
    pthread_cond_destroy(&tp->cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp);
}

int tp_n_threads(const tp_pool *tp) { return tp ? tp->n_threads : 1; }

void tp_run(tp_pool *tp, tp_fn fn, void *ctx)
{
    if (!tp || tp->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    int nth = tp->n_threads;
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store_explicit(&tp->n_done, 0, memory_order_relaxed);
    unsigned g = atomic_load_explicit(&tp->gen, memory_order_relaxed) + 1u;
    atomic_store_explicit(&tp->gen, g, memory_order_release);
    if (atomic_load(&tp->n_sleeping) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
    }
    fn(ctx, 0, nth);
    int by_workers = nth - 1;
    for (int i = 1; i < nth; i++) {
        if (!claim_share(tp, i, g)) continue;
        fn(ctx, i, nth); /* worker i has not started: its share is ours */
        by_workers--;
    }
    /* Yield now and then: when cores are oversubscribed (tests under
     * ctest -j, a noisy host), the worker we wait for may need our core. */
    for (unsigned spins = 0;
         atomic_load_explicit(&tp->n_done, memory_order_acquire) < by_workers; spins++) {
        if ((spins & 1023) == 1023) sched_yield();
        else cpu_relax();
    }
}

void tp_split(size_t n, size_t align, int ith, int nth, size_t *lo, size_t *hi)
{
    if (align == 0) align = 1;
    size_t units = (n + align - 1) / align;
    size_t per = units / (size_t)nth, rem = units % (size_t)nth;
    size_t u0 = (size_t)ith * per + ((size_t)ith < rem ? (size_t)ith : rem);
    size_t u1 = u0 + per + ((size_t)ith < rem ? 1 : 0);
    size_t a = u0 * align, b = u1 * align;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

void tp_deal_init(tp_deal *d, size_t n, int nth)
{
    SEM_ASSERT(n < ((uint64_t)1 << 32));
    d->parts = nth < 1 ? 1 : nth > TP_DEAL_PARTS ? TP_DEAL_PARTS : nth;
    for (int i = 0; i < d->parts; i++) {
        size_t lo, hi;
        tp_split(n, 1, i, d->parts, &lo, &hi);
        atomic_init(&d->part[i].range, (uint64_t)lo << 32 | hi);
    }
}

/* Takes units of part p: a run of up to max_run from its front when
 * `own` (shorter as the part runs out, at most a quarter of what is left,
 * so the last units stay small for the helpers), else one from its back. */
static bool deal_take(tp_deal *d, int p, bool own, size_t max_run, size_t *unit, size_t *count)
{
    uint64_t r = atomic_load_explicit(&d->part[p].range, memory_order_relaxed);
    for (;;) {
        uint64_t lo = r >> 32, hi = r & 0xffffffffu;
        if (lo >= hi) return false;
        uint64_t k = own ? (hi - lo) / 4 : 1;
        k = k < 1 ? 1 : k > max_run ? max_run : k;
        uint64_t nr = own ? (lo + k) << 32 | hi : lo << 32 | (hi - 1);
        if (atomic_compare_exchange_weak_explicit(&d->part[p].range, &r, nr, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *unit = (size_t)(own ? lo : hi - 1);
            *count = (size_t)k;
            return true;
        }
    }
}

bool tp_deal_next(tp_deal *d, int ith, int *cursor, size_t max_run, size_t *unit, size_t *count)
{
    for (; *cursor < d->parts; ++*cursor)
        if (deal_take(d, (ith + *cursor) % d->parts, *cursor == 0, max_run ? max_run : 1, unit, count))
            return true;
    return false;
}
