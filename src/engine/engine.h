/* engine.h - the door of the engine room: sampling and running sequences
 * through a model.
 *
 * eng_runner runs one sequence at a time over its own small block pool:
 * the CLI's generate, the benchmarks and the reference tests use it. The
 * batching scheduler for the server builds on the same pieces.
 *
 * Thread: engine (a runner and a sampler belong to one thread).
 */
#ifndef SEM_ENGINE_H
#define SEM_ENGINE_H

#include "base/base.h"
#include "kernels/kernels.h"
#include "model/model.h"

/* ===================================================================== */
/* Sampling                                                               */
/* ===================================================================== */

/* Per-request random state: splitmix64-seeded xoshiro256**, so a request's
 * samples depend only on its seed, whatever else runs. */
typedef struct eng_rng {
    uint64_t s[4];
} eng_rng;

void eng_rng_seed(eng_rng *r, uint64_t seed);
uint64_t eng_rng_next(eng_rng *r);
double eng_rng_uniform(eng_rng *r); /* [0, 1) */

typedef struct eng_sampling {
    float temperature; /* 0 = greedy */
    int32_t top_k;     /* 0 = off */
    float top_p;       /* 1 = off */
    float min_p;       /* 0 = off */
} eng_sampling;

eng_sampling eng_sampling_greedy(void);

typedef struct eng_sampler eng_sampler; /* opaque: scratch for one vocab */

sem_status eng_sampler_create(size_t vocab, eng_sampler **out, sem_err *err);
void eng_sampler_destroy(eng_sampler *s); /* NULL ok */
/* Picks a token from logits[vocab] (not modified). Greedy ties go to the
 * lowest id. */
int32_t eng_sample(eng_sampler *s, const float *logits, const eng_sampling *p, eng_rng *rng);
/* The argmax of logits[n], lowest id on ties. */
int32_t eng_argmax(const float *logits, size_t n);

/* ===================================================================== */
/* Single-sequence runner                                                 */
/* ===================================================================== */

typedef struct eng_runner_params {
    size_t max_ctx;       /* 0 = the model's max_position_embeddings (capped at 32768) */
    size_t chunk_tokens;  /* prefill chunk; 0 = 512 */
    int32_t block_tokens; /* 0 = 256 */
    kn_kv_dtype kv_dtype; /* default KN_KV_F16 */
} eng_runner_params;

typedef struct eng_runner eng_runner; /* opaque; Thread: engine */

eng_runner_params eng_runner_default_params(void);
/* Borrows m and kc (must outlive the runner). kc must have been created
 * with max_tokens >= chunk_tokens and max_cols >= model_max_matmul_cols. */
sem_status eng_runner_create(const model *m, kn_ctx *kc, const eng_runner_params *p,
                             eng_runner **out, sem_err *err);
void eng_runner_destroy(eng_runner *r); /* NULL ok */
/* Appends tokens to the sequence (prefill in chunks, or one decode step)
 * and writes logits: for every token ([n][vocab]) when all_logits, else
 * for the last one ([vocab]). Fails with SEM_ELIMIT past max_ctx and
 * SEM_EINVAL for a token id outside the vocabulary. */
sem_status eng_runner_feed(eng_runner *r, const int32_t *tokens, size_t n, bool all_logits,
                           float *logits, sem_err *err);
void eng_runner_reset(eng_runner *r); /* forget the sequence, keep the memory */
size_t eng_runner_n_past(const eng_runner *r);
size_t eng_runner_chunk_tokens(const eng_runner *r);

#endif /* SEM_ENGINE_H */
