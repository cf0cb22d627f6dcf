/* base.h - the door of the base room: status codes and errors, checked size
 * math, logging, growable buffers, JSON helpers, filesystem helpers, the
 * compute thread pool, queues, CRC32C and clocks.
 *
 * Everything above base/ reports failure the same way: a function returns a
 * sem_status and fills the caller's sem_err (never NULL) with a message that
 * says what failed and where. Out-params are written only on success.
 *
 * Thread: any, unless a function says otherwise.
 */
#ifndef SEM_BASE_H
#define SEM_BASE_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ===================================================================== */
/* Status codes and errors                                                */
/* ===================================================================== */

/* Enum values only grow; a retired value stays as a comment. */
#define SEM_STATUS_LIST(X)                                   \
    X(SEM_OK, "ok")                                          \
    X(SEM_EINVAL, "invalid argument")                        \
    X(SEM_ENOMEM, "out of memory")                           \
    X(SEM_EIO, "i/o error")                                  \
    X(SEM_ECORRUPT, "corrupt data")                          \
    X(SEM_EUNSUPPORTED, "unsupported")                       \
    X(SEM_ENOTFOUND, "not found")                            \
    X(SEM_EBUSY, "busy")                                     \
    X(SEM_ECANCELED, "canceled")                             \
    X(SEM_ETIMEDOUT, "timed out")                            \
    X(SEM_EDEGRADED, "degraded")                             \
    X(SEM_ELIMIT, "limit exceeded")                          \
    X(SEM_EAUTH, "unauthorized")                             \
    X(SEM_EEXIST, "already exists")

typedef enum sem_status {
#define SEM_X_ENUM(name, text) name,
    SEM_STATUS_LIST(SEM_X_ENUM)
#undef SEM_X_ENUM
        SEM_STATUS_COUNT
} sem_status;

const char *sem_status_name(sem_status s); /* "SEM_EINVAL"; never NULL */
const char *sem_status_text(sem_status s); /* "invalid argument" */

#define SEM_ERR_MSG_BYTES 256
typedef struct sem_err {
    sem_status code;             /* SEM_OK when nothing failed */
    char msg[SEM_ERR_MSG_BYTES]; /* NUL-terminated, truncated if long */
} sem_err;

#define SEM_PRINTF(fmt_idx, arg_idx) __attribute__((format(printf, fmt_idx, arg_idx)))

/* Fills err and returns code, so a raise is one line:
 *   return sem_errf(err, SEM_ECORRUPT, "%s: bad header", path); */
sem_status sem_errf(sem_err *err, sem_status code, const char *fmt, ...) SEM_PRINTF(3, 4);
/* Prepends context ("model.safetensors: ") to an existing message. */
void sem_err_prefix(sem_err *err, const char *fmt, ...) SEM_PRINTF(2, 3);
void sem_err_clear(sem_err *err);

/* Invariant checks on our own state (never on input: input gets a status).
 * Always on; report file and line, then abort. */
#define SEM_ASSERT(cond) \
    ((cond) ? (void)0 : sem_assert_fail(__FILE__, __LINE__, #cond))
#ifndef NDEBUG
#define SEM_DASSERT(cond) SEM_ASSERT(cond)
#else
#define SEM_DASSERT(cond) ((void)0)
#endif
_Noreturn void sem_assert_fail(const char *file, int line, const char *expr);

/* ===================================================================== */
/* Checked size math: true on success, false on overflow (out untouched). */
/* ===================================================================== */

static inline bool sem_mul_size(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}
static inline bool sem_add_size(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_add_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}
static inline bool sem_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    uint64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return false;
    *out = r;
    return true;
}

/* ===================================================================== */
/* Allocation: calloc/malloc wrappers that never return NULL silently.    */
/* ===================================================================== */

/* Zeroed n*size bytes, or NULL on overflow/OOM (caller raises SEM_ENOMEM). */
void *sem_calloc(size_t n, size_t size);
/* 64-byte aligned, zeroed; free with sem_free_aligned. NULL on failure. */
void *sem_alloc_aligned(size_t bytes);
void sem_free_aligned(void *p);
char *sem_strdup(const char *s); /* NULL-safe */

/* ===================================================================== */
/* Logging: one line per event, key=value fields.                         */
/* ===================================================================== */

typedef enum sem_log_level {
    SEM_LOG_DEBUG = 0,
    SEM_LOG_INFO = 1,
    SEM_LOG_WARN = 2,
    SEM_LOG_ERROR = 3,
} sem_log_level;

typedef struct sem_logger sem_logger; /* opaque; Thread: any */

/* Writes to f (borrowed; must outlive the logger). */
sem_logger *sem_logger_create(FILE *f, sem_log_level min_level);
void sem_logger_destroy(sem_logger *lg); /* NULL ok */
void sem_logger_set_level(sem_logger *lg, sem_log_level lvl);
bool sem_log_enabled(const sem_logger *lg, sem_log_level lvl);
/* lg may be NULL: then the line goes to stderr at INFO and above. */
void sem_log(sem_logger *lg, sem_log_level lvl, const char *fmt, ...) SEM_PRINTF(3, 4);

/* ===================================================================== */
/* Growable byte buffer. Always NUL-terminated when data != NULL.         */
/* ===================================================================== */

typedef struct buf {
    char *data; /* owned */
    size_t len;
    size_t cap;
} buf;

void buf_init(buf *b);
void buf_fini(buf *b); /* frees data; b is reusable after buf_init */
bool buf_reserve(buf *b, size_t extra);
bool buf_append(buf *b, const void *data, size_t n);
bool buf_append_str(buf *b, const char *s);
bool buf_printf(buf *b, const char *fmt, ...) SEM_PRINTF(2, 3);
void buf_clear(buf *b);
/* Takes the data out of b (caller frees with free()); b is left empty. */
char *buf_take(buf *b);

/* ===================================================================== */
/* Filesystem                                                             */
/* ===================================================================== */

/* Reads a whole regular file up to max_bytes into a NUL-terminated heap
 * block. Fails with SEM_ELIMIT if larger, SEM_ENOTFOUND if absent. */
sem_status fs_read_file(const char *path, size_t max_bytes, char **out_data, size_t *out_len,
                        sem_err *err);
/* temp file in the same directory -> write -> fsync -> close -> rename ->
 * fsync(dir). On failure, the step is named and the temp file removed. */
sem_status fs_write_atomic(const char *path, const void *data, size_t len, sem_err *err);
sem_status fs_mkdirs(const char *path, sem_err *err); /* mkdir -p */
/* fsyncs the directory holding path, making a rename into it durable. */
sem_status fs_fsync_parent_dir(const char *path, sem_err *err);
bool fs_exists(const char *path);
bool fs_is_dir(const char *path);
/* Joins a and b with exactly one '/' into out (cap bytes). False if it
 * does not fit. */
bool fs_join(char *out, size_t cap, const char *a, const char *b);

/* ===================================================================== */
/* JSON helpers over jansson (include <jansson.h> to use the json_t).     */
/* ===================================================================== */

struct json_t;
/* Parses a file into a JSON object. Errors name the path, line and column. */
sem_status js_load_file(const char *path, size_t max_bytes, struct json_t **out, sem_err *err);

/* ===================================================================== */
/* Clocks                                                                 */
/* ===================================================================== */

uint64_t clk_now_ns(void);  /* CLOCK_MONOTONIC */
double clk_now_s(void);     /* CLOCK_MONOTONIC, seconds */
uint64_t clk_wall_ms(void); /* CLOCK_REALTIME, ms since the epoch */

/* ===================================================================== */
/* CRC32C (Castagnoli)                                                    */
/* ===================================================================== */

/* Incremental: crc = crc32c_update(0, a, n); crc = crc32c_update(crc, b, m). */
uint32_t crc32c_update(uint32_t crc, const void *data, size_t n);

/* ===================================================================== */
/* Compute thread pool: fork-join parallel-for over n_threads workers.    */
/* ===================================================================== */

typedef struct tp_pool tp_pool; /* opaque; dispatch Thread: one owner at a time */

/* fn runs once for every share ith = 0 .. nth-1 and must partition its
 * work by (ith, nth); shares run concurrently on the pool's threads. The
 * caller runs share 0 and any share whose worker has not started it by
 * then, so fn must not assume which thread runs a share. */
typedef void (*tp_fn)(void *ctx, int ith, int nth);

/* n_threads <= 0 means one per online core. Workers spin briefly after each
 * job so back-to-back kernels do not pay a wakeup, then sleep. */
sem_status tp_create(int n_threads, tp_pool **out, sem_err *err);
void tp_destroy(tp_pool *tp); /* NULL ok */
int tp_n_threads(const tp_pool *tp);
/* Runs every share of fn and returns when all are done. tp may be NULL
 * (runs fn(ctx, 0, 1) inline). A worker that has no core at the moment
 * does not stall the caller (threadpool.c). */
void tp_run(tp_pool *tp, tp_fn fn, void *ctx);
/* Splits [0, n) into nth nearly equal chunks aligned to `align`; returns
 * thread ith's [*lo, *hi). */
void tp_split(size_t n, size_t align, int ith, int nth, size_t *lo, size_t *hi);

/* Work units [0, n) dealt for locality and balance: share ith takes the
 * units of its own contiguous part (tp_split) front to back, then helps
 * the other parts from their back ends. A contiguous part keeps each
 * core's hardware prefetchers on one stream (decode streams weights from
 * DRAM); helping keeps a slow or preempted share from stalling the job
 * without breaking up the stream of the share it helps. Shares beyond
 * TP_DEAL_PARTS share parts; n must be below 2^32. */
enum { TP_DEAL_PARTS = 16 };
typedef struct tp_deal {
    int parts;
    struct {
        _Alignas(64) _Atomic uint64_t range; /* front << 32 | back; own cache line */
    } part[TP_DEAL_PARTS];
} tp_deal;
void tp_deal_init(tp_deal *d, size_t n, int nth);
/* The next units for share ith, [*unit, *unit + *count), or false when
 * none is left: from its own part a run of up to max_run (fewer as the
 * part runs out), from the others' one at a time. *cursor starts at 0 in
 * each share and is advanced by the calls. */
bool tp_deal_next(tp_deal *d, int ith, int *cursor, size_t max_run, size_t *unit, size_t *count);

/* ===================================================================== */
/* Channels: unbounded MPMC queue of pointers with timed pop.             */
/* ===================================================================== */

typedef struct chan chan; /* opaque; Thread: any */

chan *chan_create(void);
void chan_destroy(chan *c); /* NULL ok; items still queued are not freed */
bool chan_push(chan *c, void *item); /* false on OOM or when closed */
/* Waits up to timeout_ms (<0 = forever). Returns SEM_OK with *out set,
 * SEM_ETIMEDOUT, or SEM_ECANCELED once closed and empty. */
sem_status chan_pop(chan *c, int64_t timeout_ms, void **out);
bool chan_try_pop(chan *c, void **out);
void chan_close(chan *c); /* wakes all waiters; later pushes fail */
size_t chan_len(chan *c);

#endif /* SEM_BASE_H */
