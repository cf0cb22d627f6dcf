/* bench_batch.c - `semantic bench batch`: aggregate decode throughput of
 * the batching engine at batch 1, 2, 4, 8 and 16 (each the best of
 * --runs), then the time to first token and time per output token of a
 * short request that arrives while a long prompt is prefilling. Prints
 * figures; asserts nothing. */
#include "app/bench.h"
#include "app/runtime.h"
#include "engine/engine.h"

#include <stdlib.h>
#include <unistd.h>

typedef struct timing {
    double submit_s, first_s, last_s;
    int32_t n_tokens;
} timing;

static eng_engine *start(app_runtime *rt, const bench_opts *o, int32_t max_batch, int32_t max_ctx, sem_err *err)
{
    eng_params p = eng_default_params();
    p.m = rt->m;
    p.kc = rt->kc;
    p.lg = rt->lg;
    p.max_batch = max_batch;
    p.prefill_chunk = (int32_t)o->chunk;
    p.kv_dtype = o->kv_dtype;
    p.max_ctx = max_ctx;
    model_kv_geometry g = model_spec_kv_geometry(model_get_spec(rt->m));
    size_t per_token = (size_t)g.n_layers * (size_t)g.n_kv_heads * (kn_kv_row_bytes(o->kv_dtype, (size_t)g.head_dim) +
                                                                    kn_kv_row_bytes(o->kv_dtype, (size_t)g.v_head_dim));
    p.kv_budget_bytes = per_token * (size_t)(max_ctx + 512) * (size_t)(max_batch + 1);
    eng_engine *e = NULL;
    return eng_start(&p, &e, err) == SEM_OK ? e : NULL;
}

static eng_request *submit(eng_engine *e, const int32_t *prompt, size_t n, long max_tokens, sem_err *err)
{
    eng_request_params p = eng_request_default_params();
    p.prompt = prompt;
    p.n_prompt = n;
    p.max_tokens = (int32_t)max_tokens;
    p.ignore_eos = true;
    eng_request *r = NULL;
    return eng_submit(e, &p, &r, err) == SEM_OK ? r : NULL;
}

/* Drains whatever events are ready; returns true when r is done. */
static bool poll_request(eng_request *r, timing *t)
{
    eng_event *ev;
    bool done = false;
    while (!done && eng_request_next(r, 0, &ev) == SEM_OK) {
        double now = clk_now_s();
        if (ev->kind == ENG_EV_TOKEN) {
            if (t->n_tokens++ == 0) t->first_s = now;
            t->last_s = now;
        }
        done = ev->kind == ENG_EV_DONE;
        eng_event_free(ev);
    }
    return done;
}

static void random_prompt(int32_t *p, size_t n, int32_t vocab, uint64_t seed)
{
    eng_rng r;
    eng_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) p[i] = (int32_t)(eng_rng_next(&r) % (uint64_t)vocab);
}

/* B requests at once; decode throughput measured from the moment the last
 * of them produced its first token to the moment the first one finished,
 * so every step in the window runs the full batch. Events are timed when
 * polled (every ~0.2 ms), so a window under 50 ms (a tiny model) is too
 * coarse: then all tokens over the whole run from the first submission,
 * prefill included (a lower bound). */
static int batch_throughput(app_runtime *rt, const bench_opts *o, int32_t B, double *tok_s)
{
    sem_err err;
    int32_t vocab = model_get_spec(rt->m)->vocab;
    eng_engine *e = start(rt, o, B, (int32_t)(o->prompt + o->decode + 8), &err);
    if (!e) return fprintf(stderr, "semantic bench batch: %s\n", err.msg), 1;
    eng_request *r[16];
    timing t[16] = {0};
    int32_t *prompt = calloc((size_t)o->prompt, sizeof *prompt);
    for (int32_t i = 0; i < B; i++) {
        random_prompt(prompt, (size_t)o->prompt, vocab, 10 + (uint64_t)i);
        r[i] = submit(e, prompt, (size_t)o->prompt, o->decode, &err);
        t[i].submit_s = clk_now_s();
    }
    free(prompt);
    int32_t left = B;
    double first_done = 0;
    int64_t tokens_at_start = 0;
    double all_started = 0, window_s = 0;
    while (left > 0) {
        for (int32_t i = 0; i < B; i++) {
            if (!r[i] || !poll_request(r[i], &t[i])) continue;
            if (first_done == 0) first_done = clk_now_s();
            eng_request_release(r[i]);
            r[i] = NULL;
            left--;
        }
        bool started = true;
        int64_t n = 0;
        for (int32_t i = 0; i < B; i++) {
            started &= t[i].n_tokens > 0;
            n += t[i].n_tokens;
        }
        if (started && all_started == 0) {
            all_started = clk_now_s();
            tokens_at_start = n;
        }
        if (first_done == 0 && all_started > 0) {
            window_s = clk_now_s() - all_started;
            *tok_s = (double)(n - tokens_at_start) / window_s;
        }
        usleep(200);
    }
    if (window_s < 0.05) { /* too few polls in the window (a tiny model): the whole run */
        double t1 = 0;
        int64_t n = 0;
        for (int32_t i = 0; i < B; i++) {
            t1 = t[i].last_s > t1 ? t[i].last_s : t1;
            n += t[i].n_tokens;
        }
        *tok_s = (double)n / (t1 - t[0].submit_s);
    }
    eng_stop(e);
    return 0;
}

/* A long prompt starts prefilling; a short request arrives 20 ms later. */
static int ttft_during_prefill(app_runtime *rt, const bench_opts *o)
{
    sem_err err;
    int32_t vocab = model_get_spec(rt->m)->vocab;
    int32_t max_ctx = (int32_t)(o->long_prompt + 64);
    if (max_ctx > model_get_spec(rt->m)->max_pos) max_ctx = model_get_spec(rt->m)->max_pos;
    eng_engine *e = start(rt, o, 4, max_ctx, &err);
    if (!e) return fprintf(stderr, "semantic bench batch: %s\n", err.msg), 1;
    size_t n_long = (size_t)max_ctx - 64, n_short = 16;
    int32_t *lp = calloc(n_long, sizeof *lp), sp[16];
    random_prompt(lp, n_long, vocab, 1);
    random_prompt(sp, n_short, vocab, 2);
    timing tl = {.submit_s = clk_now_s()}, ts = {0};
    eng_request *rl = submit(e, lp, n_long, 16, &err);
    usleep(20000);
    ts.submit_s = clk_now_s();
    eng_request *rs = submit(e, sp, n_short, 32, &err);
    bool dl = false, ds = false;
    while (!dl || !ds) {
        if (!dl) dl = poll_request(rl, &tl);
        if (!ds) ds = poll_request(rs, &ts);
        usleep(100);
    }
    printf("long prompt:  %zu tokens, TTFT %.0f ms (prefill chunk %ld)\n", n_long, (tl.first_s - tl.submit_s) * 1e3, o->chunk);
    printf("short request arriving 20 ms into it: TTFT %.0f ms, time per output token %.1f ms\n",
           (ts.first_s - ts.submit_s) * 1e3, (ts.last_s - ts.first_s) * 1e3 / (ts.n_tokens > 1 ? ts.n_tokens - 1 : 1));
    eng_request_release(rl);
    eng_request_release(rs);
    free(lp);
    eng_stop(e);
    return 0;
}

int bench_batch(const bench_opts *o)
{
    sem_err err;
    app_runtime rt;
    if (app_runtime_open(&rt, o->model_dir, (int)o->threads, (size_t)o->chunk + 17, &err)) {
        fprintf(stderr, "semantic bench batch: %s\n", err.msg);
        app_runtime_close(&rt);
        return 1;
    }
    printf("model: %s (%s kernels, %d threads, kv %s)\n", o->model_dir, kn_ctx_isa(rt.kc), tp_n_threads(rt.pool),
           kn_kv_dtype_name(o->kv_dtype));
    static const int32_t sizes[] = {1, 2, 4, 8, 16};
    double base = 0;
    int rc = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0] && !rc; i++) {
        double tok_s = 0;
        for (long run = 0; run < o->runs && !rc; run++) { /* the best run: the host's noise only slows */
            double t = 0;
            rc = batch_throughput(&rt, o, sizes[i], &t);
            if (t > tok_s) tok_s = t;
        }
        if (i == 0) base = tok_s;
        printf("batch %2d: aggregate decode %7.1f tok/s (%.2fx batch 1, best of %ld)\n", sizes[i], tok_s,
               base > 0 ? tok_s / base : 0, o->runs);
        fflush(stdout);
    }
    if (!rc) rc = ttft_during_prefill(&rt, o);
    app_runtime_close(&rt);
    return rc;
}
