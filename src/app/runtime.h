/* runtime.h - what every command that runs a model needs: the logger, the
 * compute pool and the kernel context, built once from flags and
 * environment by app/ and passed down. */
#ifndef SEM_APP_RUNTIME_H
#define SEM_APP_RUNTIME_H

#include "base/base.h"
#include "kernels/kernels.h"
#include "model/model.h"

typedef struct app_runtime {
    sem_logger *lg;  /* owned */
    tp_pool *pool;   /* owned */
    kn_ctx *kc;      /* owned */
    model *m;        /* owned; NULL until loaded */
} app_runtime;

/* Loads the model at dir (printing progress to stderr) and builds the pool
 * (n_threads <= 0: SEMANTIC_THREADS, else one per core) and the kernel
 * context for batches of up to max_tokens tokens, in the kernel mode
 * app_kernel_mode reads. */
sem_status app_runtime_open(app_runtime *rt, const char *dir, int n_threads, size_t max_tokens,
                            sem_err *err);
void app_runtime_close(app_runtime *rt);

/* The kernel mode SEMANTIC_KERNELS asks for (kn_ctx_params): "ref" the
 * reference C kernels, "exact" Q4/Q8 matmul on f32 activations, "int8" on
 * int8 activations (fastest, 1/254 of the block max per activation);
 * unset, empty or "default", the default int16 activations (1/65534).
 * Any other value is an error. */
sem_status app_kernel_mode(bool *ref, bool *exact, bool *int8, sem_err *err);

/* Parses "1,2,3" into a malloc'd array. */
sem_status app_parse_ids(const char *s, int32_t **out, size_t *n, sem_err *err);
/* Strict integer / float flag values; false when malformed. */
bool app_parse_long(const char *s, long lo, long hi, long *out);
bool app_parse_float(const char *s, double lo, double hi, double *out);

#endif
