/* test_base.c - base room: errors, checked math, buffers, crc32c, atomic
 * writes, the compute pool and channels. */
#include "base/base.h"

#include "test_util.h"

#include <stdatomic.h>
#include <unistd.h>

static void test_errors(void **state)
{
    (void)state;
    sem_err err;
    sem_err_clear(&err);
    assert_int_equal(sem_errf(&err, SEM_ECORRUPT, "tensor '%s' bad", "x"), SEM_ECORRUPT);
    sem_err_prefix(&err, "%s: ", "file.safetensors");
    assert_string_equal(err.msg, "file.safetensors: tensor 'x' bad");
    assert_string_equal(sem_status_name(SEM_ENOMEM), "SEM_ENOMEM");
    assert_string_equal(sem_status_name((sem_status)999), "SEM_UNKNOWN");
}

static void test_checked_math(void **state)
{
    (void)state;
    size_t r = 7;
    assert_false(sem_mul_size(SIZE_MAX / 2 + 1, 2, &r));
    assert_int_equal(r, 7);
    assert_true(sem_mul_size(3, 5, &r));
    assert_int_equal(r, 15);
    assert_false(sem_add_size(SIZE_MAX, 1, &r));
}

static void test_buf(void **state)
{
    (void)state;
    buf b;
    buf_init(&b);
    for (int i = 0; i < 1000; i++) assert_true(buf_printf(&b, "%d,", i));
    assert_int_equal(strlen(b.data), b.len);
    assert_memory_equal(b.data, "0,1,2,", 6);
    char *s = buf_take(&b);
    assert_null(b.data);
    free(s);
}

static void test_crc32c(void **state)
{
    (void)state;
    /* The standard check value for "123456789" (RFC 3720 / iSCSI). */
    assert_int_equal(crc32c_update(0, "123456789", 9), 0xE3069283u);
    uint32_t c = crc32c_update(0, "1234", 4);
    assert_int_equal(crc32c_update(c, "56789", 5), 0xE3069283u);
}

static void test_atomic_write(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/a/b/file.bin", dir);
    sem_err err;
    char sub[512];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    assert_int_equal(fs_mkdirs(sub, &err), SEM_OK);
    assert_int_equal(fs_write_atomic(path, "hello", 5, &err), SEM_OK);
    char *data;
    size_t len;
    assert_int_equal(fs_read_file(path, 100, &data, &len, &err), SEM_OK);
    assert_int_equal(len, 5);
    assert_string_equal(data, "hello");
    free(data);
    assert_int_equal(fs_read_file(path, 4, &data, &len, &err), SEM_ELIMIT);
    snprintf(path, sizeof path, "%s/missing", dir);
    assert_int_equal(fs_read_file(path, 4, &data, &len, &err), SEM_ENOTFOUND);
    tu_rmrf(dir);
    free(dir);
}

typedef struct sum_ctx {
    atomic_long total;
    size_t n;
} sum_ctx;

static void sum_job(void *p, int ith, int nth)
{
    sum_ctx *c = p;
    size_t lo, hi;
    tp_split(c->n, 4, ith, nth, &lo, &hi);
    long s = 0;
    for (size_t i = lo; i < hi; i++) s += (long)i;
    atomic_fetch_add(&c->total, s);
}

static void test_thread_pool(void **state)
{
    (void)state;
    sem_err err;
    tp_pool *tp;
    assert_int_equal(tp_create(3, &tp, &err), SEM_OK);
    for (int rep = 0; rep < 2000; rep++) {
        sum_ctx c = {.n = (size_t)(rep % 97) + 1};
        atomic_init(&c.total, 0);
        tp_run(tp, sum_job, &c);
        long n = (long)c.n;
        assert_int_equal(atomic_load(&c.total), n * (n - 1) / 2);
    }
    tp_destroy(tp);
}

typedef struct shares_ctx {
    atomic_int runs[3]; /* times each share ran */
    atomic_long total;
    size_t n;
} shares_ctx;

static void shares_job(void *p, int ith, int nth)
{
    shares_ctx *c = p;
    atomic_fetch_add(&c->runs[ith], 1);
    size_t lo, hi;
    tp_split(c->n, 1, ith, nth, &lo, &hi);
    for (size_t i = lo; i < hi; i++) atomic_fetch_add(&c->total, (long)i);
}

/* Whoever runs a share (its worker, or the caller when the worker has not
 * started), every share runs exactly once per job, and the job is over
 * when tp_run returns: a straggler touching the context after that would
 * see the garbage written over it. */
static void test_thread_pool_shares(void **state)
{
    (void)state;
    sem_err err;
    tp_pool *tp;
    assert_int_equal(tp_create(3, &tp, &err), SEM_OK);
    for (int rep = 0; rep < 20000; rep++) {
        shares_ctx c = {.n = (size_t)(rep % 53)};
        for (int i = 0; i < 3; i++) atomic_init(&c.runs[i], 0);
        atomic_init(&c.total, 0);
        tp_run(tp, shares_job, &c);
        long n = (long)c.n;
        assert_int_equal(atomic_load(&c.total), n * (n - 1) / 2);
        for (int i = 0; i < 3; i++) assert_int_equal(atomic_load(&c.runs[i]), 1);
        memset(&c, 0xff, sizeof c);
        if (rep % 1000 == 999) usleep(2000); /* let the workers fall asleep now and then */
    }
    tp_destroy(tp);
}

typedef struct deal_ctx {
    tp_deal deal;
    atomic_int seen[300]; /* times each unit was dealt */
    atomic_int own_first; /* shares whose first unit opened their own part */
    atomic_int bad;       /* units out of range (asserted on the main thread) */
    atomic_int long_tail; /* own runs longer than a quarter of what was left */
    size_t n, max_run;
} deal_ctx;

static void deal_job(void *p, int ith, int nth)
{
    deal_ctx *c = p;
    size_t u, lo, hi;
    int parts = nth < TP_DEAL_PARTS ? nth : TP_DEAL_PARTS;
    tp_split(c->n, 1, ith % parts, parts, &lo, &hi);
    bool first = true;
    size_t n;
    for (int cursor = 0; tp_deal_next(&c->deal, ith, &cursor, c->max_run, &u, &n);) {
        if (u + n > c->n || n < 1 || n > c->max_run || (cursor > 0 && n != 1)) {
            atomic_fetch_add(&c->bad, 1);
            return;
        }
        /* an own run is at most a quarter of what its part had left (or 1) */
        if (cursor == 0 && n > 1 && 4 * n > hi - u) atomic_fetch_add(&c->long_tail, 1);
        if (first && u == lo) atomic_fetch_add(&c->own_first, 1);
        first = false;
        for (size_t k = 0; k < n; k++) atomic_fetch_add(&c->seen[u + k], 1);
    }
}

/* tp_deal hands out every unit exactly once, whoever runs which share and
 * however many shares there are (more than TP_DEAL_PARTS share parts), in
 * runs of at most max_run from a share's own part (never more than a
 * quarter of what the part has left, so its tail stays fine-grained) and
 * single units from the others', and a share alone on the job (1 thread)
 * starts at its part's front. */
static void test_thread_pool_deal(void **state)
{
    (void)state;
    static const int threads[] = {1, 2, 3, 20};
    static deal_ctx c;
    for (size_t ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
        sem_err err;
        tp_pool *tp;
        assert_int_equal(tp_create(threads[ti], &tp, &err), SEM_OK);
        for (int rep = 0; rep < 2000; rep++) {
            c.n = (size_t)(rep % 300);
            c.max_run = (size_t)(rep % 5) + 1;
            for (size_t i = 0; i < 300; i++) atomic_init(&c.seen[i], 0);
            atomic_init(&c.own_first, 0);
            atomic_init(&c.bad, 0);
            atomic_init(&c.long_tail, 0);
            tp_deal_init(&c.deal, c.n, threads[ti]);
            tp_run(tp, deal_job, &c);
            assert_int_equal(atomic_load(&c.bad), 0);
            assert_int_equal(atomic_load(&c.long_tail), 0);
            for (size_t i = 0; i < 300; i++) assert_int_equal(atomic_load(&c.seen[i]), i < c.n ? 1 : 0);
            if (threads[ti] == 1 && c.n > 0) assert_int_equal(atomic_load(&c.own_first), 1);
        }
        tp_destroy(tp);
    }
}

static void test_chan(void **state)
{
    (void)state;
    chan *c = chan_create();
    int a = 1, b = 2;
    void *out;
    assert_int_equal(chan_pop(c, 10, &out), SEM_ETIMEDOUT);
    assert_true(chan_push(c, &a));
    assert_true(chan_push(c, &b));
    assert_int_equal(chan_len(c), 2);
    assert_int_equal(chan_pop(c, -1, &out), SEM_OK);
    assert_ptr_equal(out, &a);
    chan_close(c);
    assert_false(chan_push(c, &a));
    assert_int_equal(chan_pop(c, -1, &out), SEM_OK);
    assert_ptr_equal(out, &b);
    assert_int_equal(chan_pop(c, -1, &out), SEM_ECANCELED);
    chan_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),      cmocka_unit_test(test_checked_math),
        cmocka_unit_test(test_buf),         cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_atomic_write), cmocka_unit_test(test_thread_pool),
        cmocka_unit_test(test_thread_pool_shares), cmocka_unit_test(test_thread_pool_deal),
        cmocka_unit_test(test_chan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
