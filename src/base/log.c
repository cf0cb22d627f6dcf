/* log.c - the logger: one line per event, "time level message", with
 * key=value fields chosen by the caller. A mutex keeps lines whole when
 * several threads log at once. The logger is an object passed down from
 * app/, never a global.
 */
#include "base.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

struct sem_logger {
    FILE *f;                /* borrowed */
    sem_log_level min;      /* lines below this are dropped */
    pthread_mutex_t mu;     /* guards writes to f */
};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

sem_logger *sem_logger_create(FILE *f, sem_log_level min_level)
{
    sem_logger *lg = calloc(1, sizeof *lg);
    if (!lg) return NULL;
    lg->f = f;
    lg->min = min_level;
    pthread_mutex_init(&lg->mu, NULL);
    return lg;
}

void sem_logger_destroy(sem_logger *lg)
{
    if (!lg) return;
    pthread_mutex_destroy(&lg->mu);
    free(lg);
}

void sem_logger_set_level(sem_logger *lg, sem_log_level lvl)
{
    if (lg) lg->min = lvl;
}

bool sem_log_enabled(const sem_logger *lg, sem_log_level lvl)
{
    return lvl >= (lg ? lg->min : SEM_LOG_INFO);
}

void sem_log(sem_logger *lg, sem_log_level lvl, const char *fmt, ...)
{
    if (!sem_log_enabled(lg, lvl)) return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, level_names[lvl & 3]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line) vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    FILE *f = lg ? lg->f : stderr;
    if (lg) pthread_mutex_lock(&lg->mu);
    fprintf(f, "%s\n", line);
    fflush(f);
    if (lg) pthread_mutex_unlock(&lg->mu);
}
