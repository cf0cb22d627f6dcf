/* runtime.c - building the per-process root for model-running commands:
 * logger, compute pool, kernel dispatch and the loaded model. */
#include "app/runtime.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool app_parse_long(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool app_parse_float(const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi)) return false;
    *out = v;
    return true;
}

sem_status app_parse_ids(const char *s, int32_t **out, size_t *n, sem_err *err)
{
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *ids = sem_calloc(cap, sizeof *ids);
    if (!ids) return sem_errf(err, SEM_ENOMEM, "out of memory");
    size_t k = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return sem_errf(err, SEM_EINVAL, "bad token list at \"%.20s\": expected comma-separated ids like 1,2,3", p);
        }
        ids[k++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (k == 0) {
        free(ids);
        return sem_errf(err, SEM_EINVAL, "empty token list");
    }
    *out = ids;
    *n = k;
    return SEM_OK;
}

sem_status app_runtime_open(app_runtime *rt, const char *dir, int n_threads, size_t max_tokens,
                            sem_err *err)
{
    memset(rt, 0, sizeof *rt);
    rt->lg = sem_logger_create(stderr, SEM_LOG_INFO);
    const char *env = getenv("SEMANTIC_THREADS");
    long v;
    /* flags first, then the environment, then one thread per core */
    if (n_threads <= 0 && env && app_parse_long(env, 1, 256, &v)) n_threads = (int)v;
    double t0 = clk_now_s();
    sem_status st = model_load(dir, &rt->m, err);
    if (st) return st;
    sem_log(rt->lg, SEM_LOG_INFO, "model loaded dir=%s params=%.1fM bytes=%.1fMiB ms=%.0f", dir,
            (double)model_n_params(rt->m) / 1e6, (double)model_weight_bytes(rt->m) / 1048576.0,
            (clk_now_s() - t0) * 1e3);
    if ((st = tp_create(n_threads, &rt->pool, err))) return st;
    kn_ctx_params kp = kn_ctx_default_params();
    kp.pool = rt->pool;
    kp.max_tokens = max_tokens;
    kp.max_cols = model_max_matmul_cols(rt->m);
    if ((st = app_kernel_mode(&kp.force_ref, &kp.q_exact, &kp.q_int8_act, err)) ||
        (st = kn_ctx_create(&kp, &rt->kc, err)))
        return st;
    t0 = clk_now_s();
    if ((st = model_pack_for(rt->m, rt->kc, err))) return st;
    if (model_packed_bytes(rt->m))
        sem_log(rt->lg, SEM_LOG_INFO, "weights packed for %s kernels bytes=%.1fMiB ms=%.0f", kn_ctx_isa(rt->kc),
                (double)model_packed_bytes(rt->m) / 1048576.0, (clk_now_s() - t0) * 1e3);
    return SEM_OK;
}

sem_status app_kernel_mode(bool *ref, bool *exact, bool *int8, sem_err *err)
{
    const char *kern = getenv("SEMANTIC_KERNELS");
    *ref = kern && !strcmp(kern, "ref");
    *exact = kern && !strcmp(kern, "exact");
    *int8 = kern && !strcmp(kern, "int8");
    if (kern && *kern && !*ref && !*exact && !*int8 && strcmp(kern, "default"))
        return sem_errf(err, SEM_EINVAL,
                        "SEMANTIC_KERNELS=%.32s: expected ref, exact, int8 or default (unset: default, int16 activations)",
                        kern);
    return SEM_OK;
}

void app_runtime_close(app_runtime *rt)
{
    kn_ctx_destroy(rt->kc);
    tp_destroy(rt->pool);
    model_destroy(rt->m);
    sem_logger_destroy(rt->lg);
    memset(rt, 0, sizeof *rt);
}
