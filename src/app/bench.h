/* bench.h - options shared by the `semantic bench` subcommands. */
#ifndef SEM_APP_BENCH_H
#define SEM_APP_BENCH_H

#include "kernels/kernels.h"

typedef struct bench_opts {
    const char *model_dir;
    long prompt;       /* model: prompt tokens; batch: tokens per request */
    long decode;       /* tokens to decode */
    long threads;
    long mem_mb;
    long long_prompt;  /* batch: the long prompt of the TTFT test */
    long chunk;        /* batch: prefill chunk */
    long runs;         /* model, batch: repetitions, the best is reported */
    kn_kv_dtype kv_dtype;
} bench_opts;

int bench_batch(const bench_opts *o);
int bench_cache(const bench_opts *o);

#endif
