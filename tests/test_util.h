/* test_util.h - shared helpers for the cmocka tests: where the source tree,
 * the build tree and the binary are (set by ctest), temp directories, and
 * running a command while capturing its output. */
#ifndef SEM_TEST_UTIL_H
#define SEM_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

static inline const char *tu_env(const char *name, const char *dflt)
{
    const char *v = getenv(name);
    return v && *v ? v : dflt;
}
static inline const char *tu_source_dir(void) { return tu_env("SEM_SOURCE_DIR", "."); }
static inline const char *tu_build_dir(void) { return tu_env("SEM_BUILD_DIR", "build/release"); }
static inline const char *tu_bin(void) { return tu_env("SEM_BIN", "build/release/semantic"); }

/* mkdtemp under $TMPDIR; returns a static-lifetime heap string (test only). */
static inline char *tu_tmpdir(void)
{
    char *t = malloc(256);
    snprintf(t, 256, "%s/semtest.XXXXXX", tu_env("TMPDIR", "/tmp"));
    if (!mkdtemp(t)) {
        free(t);
        return NULL;
    }
    return t;
}

static inline void tu_rmrf(const char *path)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    if (system(cmd) != 0) fprintf(stderr, "warning: %s failed\n", cmd);
}

/* Runs a shell command, captures stdout+stderr into a malloc'd string
 * (*out, may be NULL) and returns the exit status (or -1). */
static inline int tu_run(char **out, const char *fmt, ...)
{
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[8300];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 4096, len = 0;
    char *b = malloc(cap);
    size_t n;
    while ((n = fread(b + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 1024) {
            cap *= 2;
            b = realloc(b, cap);
        }
    }
    b[len] = '\0';
    int st = pclose(p);
    if (out) *out = b;
    else free(b);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
