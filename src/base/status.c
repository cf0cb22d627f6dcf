/* status.c - sem_status names and the sem_err helpers.
 *
 * Errors are values: every fallible function fills a caller-owned sem_err.
 * The message buffer is fixed-size so raising an error never allocates and
 * works under OOM.
 */
#include "base.h"

#include <stdlib.h>
#include <string.h>

static const char *const status_names[] = {
#define SEM_X_NAME(name, text) #name,
    SEM_STATUS_LIST(SEM_X_NAME)
#undef SEM_X_NAME
};

static const char *const status_texts[] = {
#define SEM_X_TEXT(name, text) text,
    SEM_STATUS_LIST(SEM_X_TEXT)
#undef SEM_X_TEXT
};

const char *sem_status_name(sem_status s)
{
    if ((unsigned)s >= SEM_STATUS_COUNT) return "SEM_UNKNOWN";
    return status_names[s];
}

const char *sem_status_text(sem_status s)
{
    if ((unsigned)s >= SEM_STATUS_COUNT) return "unknown status";
    return status_texts[s];
}

sem_status sem_errf(sem_err *err, sem_status code, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void sem_err_prefix(sem_err *err, const char *fmt, ...)
{
    char pre[SEM_ERR_MSG_BYTES];
    char old[SEM_ERR_MSG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t n = strnlen(pre, sizeof pre - 1);
    memcpy(err->msg, pre, n);
    size_t rest = sizeof err->msg - 1 - n;
    size_t m = strnlen(old, rest);
    memcpy(err->msg + n, old, m);
    err->msg[n + m] = '\0';
}

void sem_err_clear(sem_err *err)
{
    err->code = SEM_OK;
    err->msg[0] = '\0';
}

_Noreturn void sem_assert_fail(const char *file, int line, const char *expr)
{
    fprintf(stderr, "semantic: assertion failed at %s:%d: %s\n", file, line, expr);
    fflush(stderr);
    abort();
}

void *sem_calloc(size_t n, size_t size)
{
    size_t total;
    if (!sem_mul_size(n, size, &total)) return NULL;
    return calloc(total ? total : 1, 1);
}

/* calloc, then align inside the block and keep the original pointer just
 * before the aligned one. calloc (unlike aligned_alloc + memset) gets large
 * blocks from fresh mmap pages that the kernel zeroes lazily, so a 256 MiB
 * KV pool costs nothing until it is used. */
void *sem_alloc_aligned(size_t bytes)
{
    size_t total;
    if (!sem_add_size(bytes ? bytes : 1, 64 + sizeof(void *), &total)) return NULL;
    uint8_t *raw = calloc(1, total);
    if (!raw) return NULL;
    uintptr_t a = ((uintptr_t)raw + sizeof(void *) + 63) & ~(uintptr_t)63;
    ((void **)a)[-1] = raw;
    return (void *)a;
}

void sem_free_aligned(void *p)
{
    if (p) free(((void **)p)[-1]);
}

char *sem_strdup(const char *s)
{
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
