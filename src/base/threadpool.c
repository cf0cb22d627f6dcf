/* threadpool.c - the compute pool: a fork-join parallel-for used by the
 * kernels. No OpenMP (libgomp hangs after fork).
 *
 * A job is published by bumping the generation in `job`; workers spin on
 * it for a while (decode issues hundreds of small matmuls per token, and a
 * futex wakeup each would cost more than the work), then fall back to a
 * condvar. The caller's thread runs share 0 and then waits.
 *
 * Two kinds of job:
 *  - tp_run: fn partitions its work by (ith, nth), so every worker must
 *    run it; the caller waits for all of them.
 *  - tp_run_shared: fn takes work from a shared counter until none is
 *    left, so the caller's call alone would do it all. A worker joins by
 *    bumping the low bits of `job` (the join count) while the job is open;
 *    when the caller's fn returns it closes the job and waits only for the
 *    workers that joined. On a busy host a worker that has no core at the
 *    moment (preempted, or still waking) is skipped instead of stalling
 *    the caller for a scheduler time slice; the one stall left is a worker
 *    preempted in the middle of a piece of work it took.
 *
 * Thread: tp_run / tp_run_shared are called by one owner thread at a time
 * (the engine).
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

/* The job word: generation << 32 | CLOSED | number of workers joined. */
#define JOB_CLOSED ((uint64_t)1 << 31)
#define JOB_JOINED ((uint64_t)0x7fffffff)
#define JOB_GEN(v) ((uint32_t)((v) >> 32))

struct tp_pool {
    int n_threads;            /* including the caller */
    pthread_t *threads;       /* owned; n_threads - 1 workers */
    tp_fn fn;                 /* current job; written before the gen bump */
    void *ctx;
    _Atomic uint64_t job;     /* see JOB_*; the gen bump publishes fn/ctx */
    atomic_int n_done;        /* workers finished with the current job */
    atomic_bool stop;
    atomic_int n_sleeping;    /* workers waiting on cv */
    pthread_mutex_t mu;       /* guards cv sleep/wake */
    pthread_cond_t cv;
};

typedef struct worker_arg {
    tp_pool *tp;
    int ith;
} worker_arg;

/* Waits for a job word whose generation is not `seen` (or stop). */
static uint64_t wait_for_job(tp_pool *tp, uint32_t seen)
{
    for (int i = 0; i < SPIN_ITERS; i++) {
        uint64_t v = atomic_load_explicit(&tp->job, memory_order_acquire);
        if (JOB_GEN(v) != seen || atomic_load(&tp->stop)) return v;
        if ((i & 1023) == 1023) sched_yield();
        else cpu_relax();
    }
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add(&tp->n_sleeping, 1);
    uint64_t v;
    while (JOB_GEN(v = atomic_load_explicit(&tp->job, memory_order_acquire)) == seen &&
           !atomic_load(&tp->stop))
        pthread_cond_wait(&tp->cv, &tp->mu);
    atomic_fetch_sub(&tp->n_sleeping, 1);
    pthread_mutex_unlock(&tp->mu);
    return v;
}

static void *worker_main(void *p)
{
    worker_arg *wa = p;
    tp_pool *tp = wa->tp;
    int ith = wa->ith;
    free(wa);
    uint32_t seen = 0;
    for (;;) {
        uint64_t v = wait_for_job(tp, seen);
        if (atomic_load(&tp->stop)) break;
        seen = JOB_GEN(v);
        /* join while the job is open; a new generation means the caller
         * finished this one without us: go and look at the next */
        while (!(v & JOB_CLOSED) && JOB_GEN(v) == seen) {
            if (atomic_compare_exchange_weak_explicit(&tp->job, &v, v + 1, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                tp->fn(tp->ctx, ith, tp->n_threads);
                atomic_fetch_add_explicit(&tp->n_done, 1, memory_order_release);
                break;
            }
        }
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
    if (!tp->threads) {
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
    pthread_cond_destroy(&tp->cv);
    pthread_mutex_destroy(&tp->mu);
    free(tp);
}

int tp_n_threads(const tp_pool *tp) { return tp ? tp->n_threads : 1; }

/* Publishes fn/ctx as a new open job with no one joined and wakes sleepers. */
static void publish(tp_pool *tp, tp_fn fn, void *ctx)
{
    tp->fn = fn;
    tp->ctx = ctx;
    atomic_store_explicit(&tp->n_done, 0, memory_order_relaxed);
    uint64_t gen = JOB_GEN(atomic_load_explicit(&tp->job, memory_order_relaxed)) + 1u;
    atomic_store_explicit(&tp->job, (uint64_t)(uint32_t)gen << 32, memory_order_release);
    if (atomic_load(&tp->n_sleeping) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->cv);
        pthread_mutex_unlock(&tp->mu);
    }
}

/* Waits until n workers have finished the current job. Yields now and
 * then: when cores are oversubscribed (tests under ctest -j, a noisy host),
 * the worker we wait for may need our core. */
static void wait_done(tp_pool *tp, int n)
{
    for (unsigned spins = 0; atomic_load_explicit(&tp->n_done, memory_order_acquire) < n; spins++) {
        if ((spins & 1023) == 1023) sched_yield();
        else cpu_relax();
    }
}

void tp_run(tp_pool *tp, tp_fn fn, void *ctx)
{
    if (!tp || tp->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    publish(tp, fn, ctx);
    fn(ctx, 0, tp->n_threads);
    wait_done(tp, tp->n_threads - 1); /* an open job: every worker joins */
}

void tp_run_shared(tp_pool *tp, tp_fn fn, void *ctx)
{
    if (!tp || tp->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    publish(tp, fn, ctx);
    fn(ctx, 0, tp->n_threads);
    uint64_t v = atomic_fetch_or_explicit(&tp->job, JOB_CLOSED, memory_order_acq_rel);
    wait_done(tp, (int)(v & JOB_JOINED));
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
