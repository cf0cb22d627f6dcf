/* kn_test.h - helpers shared by the kernels tests: a seeded RNG, weight
 * builders in every format (with their unpacked values kept for an
 * independent naive computation), the list of dispatch tables this CPU can
 * run, and the named tolerances.
 *
 * Not a test itself (no test_ prefix). Thread: test main thread.
 */
#ifndef SEM_KN_TEST_H
#define SEM_KN_TEST_H

#include "kernels/kn_impl.h"

#include "test_util.h"

#include <math.h>

/* ---- RNG (xorshift64*, deterministic per test) -------------------------- */

typedef struct kt_rng {
    uint64_t s;
} kt_rng;

static inline uint64_t kt_next(kt_rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ull;
}
/* uniform in [lo, hi) */
static inline float kt_unif(kt_rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)((kt_next(r) >> 40) * 0x1p-24);
}
static inline uint32_t kt_below(kt_rng *r, uint32_t n) { return (uint32_t)(kt_next(r) % n); }

static inline void kt_fill(kt_rng *r, float *x, size_t n, float amp)
{
    for (size_t i = 0; i < n; i++) x[i] = kt_unif(r, -amp, amp);
}

/* ---- unit roundoff ------------------------------------------------------- */

#define KT_U32 0x1p-24 /* f32 unit roundoff */

/* ---- dispatch tables this CPU can run ------------------------------------ */

typedef struct kt_variant {
    const char *name;
    const kn_ops *ops;
} kt_variant;

#define KT_MAX_VARIANTS 6

/* Fills out[] (room for KT_MAX_VARIANTS) with the SIMD tables the CPU
 * supports (the reference is not listed) and reports each one it skips. */
static inline int kt_simd_variants(kt_variant out[KT_MAX_VARIANTS])
{
    kn_cpu_features f = kn_cpu_detect();
    bool avx2 = f.avx2 && f.fma && f.f16c;
    bool avx512 = avx2 && f.avx512f && f.avx512bw && f.avx512vl && f.avx512_vnni;
    static const char *names[KT_MAX_VARIANTS] = {"avx2", "avx2-exact", "avx2-int8",
                                                 "avx512", "avx512-exact", "avx512-int8"};
    const kn_ops *t[KT_MAX_VARIANTS] = {kn_ops_avx2(), kn_ops_avx2_exact(), kn_ops_avx2_int8(),
                                        kn_ops_avx512(), kn_ops_avx512_exact(), kn_ops_avx512_int8()};
    int n = 0;
    for (int i = 0; i < KT_MAX_VARIANTS; i++) {
        if (t[i] && (i < 3 ? avx2 : avx512)) out[n++] = (kt_variant){t[i]->isa, t[i]};
        else print_message("skipped variant %s: %s\n", names[i], t[i] ? "CPU lacks it" : "not built");
    }
    return n;
}

static inline kn_ctx *kt_ctx(const kn_ops *ops, tp_pool *pool, size_t max_tokens, size_t max_cols)
{
    kn_ctx_params p = kn_ctx_default_params();
    p.pool = pool;
    p.max_tokens = max_tokens;
    p.max_cols = max_cols;
    kn_ctx *kc = NULL;
    sem_err err;
    assert_int_equal(kn_ctx_create_with_ops(&p, ops, &kc, &err), SEM_OK);
    return kc;
}

/* ---- weights -------------------------------------------------------------- */

/* A weight plus what the test needs to check it independently. */
typedef struct kt_weight {
    kn_weight w;
    uint8_t *data_mem, *scale_mem, *bias_mem; /* owned, with a byte offset */
    float *dense;                             /* [rows][cols] the exact f32 weights */
    float *absq;                              /* [rows][cols] |scale * q| (quantized) */
} kt_weight;

static inline void kt_put_scale(kn_dtype t, uint8_t *p, size_t i, float v)
{
    if (t == KN_F32) {
        memcpy(p + 4 * i, &v, 4);
    } else {
        uint16_t h = t == KN_F16 ? kn_f32_to_f16(v) : kn_f32_to_bf16(v);
        memcpy(p + 2 * i, &h, 2);
    }
}

/* Builds a rows x cols weight in dtype (scale_dtype, group_size for the
 * quantized ones). Every pointer is offset by `mis` bytes from an
 * allocation so kernels see unaligned views. */
static inline kt_weight kt_make_weight(kt_rng *r, kn_dtype dt, size_t rows, size_t cols,
                                       kn_dtype sdt, int gs, size_t mis)
{
    kt_weight k = {0};
    k.w.dtype = dt;
    k.w.rows = rows;
    k.w.cols = cols;
    k.dense = calloc(rows * cols, sizeof(float));
    k.absq = calloc(rows * cols, sizeof(float));
    if (dt == KN_F32 || dt == KN_F16 || dt == KN_BF16) {
        size_t esz = dt == KN_F32 ? 4 : 2;
        k.data_mem = calloc(rows * cols * esz + mis + 1, 1);
        uint8_t *d = k.data_mem + mis;
        for (size_t i = 0; i < rows * cols; i++) {
            float v = kt_unif(r, -1, 1);
            kt_put_scale(dt, d, i, v);
            k.dense[i] = kn_scale_at(dt, d, i);
        }
        k.w.data = d;
        return k;
    }
    int bits = dt == KN_Q4 ? 4 : 8;
    uint32_t levels = (1u << bits) - 1;
    size_t ng = cols / (size_t)gs, ssz = sdt == KN_F32 ? 4 : 2;
    k.data_mem = calloc(rows * cols * (size_t)bits / 8 + mis + 1, 1);
    k.scale_mem = calloc(rows * ng * ssz + mis + 1, 1);
    k.bias_mem = calloc(rows * ng * ssz + mis + 1, 1);
    uint8_t *d = k.data_mem + mis, *sp = k.scale_mem + mis, *bp = k.bias_mem + mis;
    for (size_t i = 0; i < rows * ng; i++) {
        /* MLX scales may be negative; magnitudes like real checkpoints */
        float s = kt_unif(r, 0.002f, 0.03f) * (kt_below(r, 4) == 0 ? -1.0f : 1.0f);
        kt_put_scale(sdt, sp, i, s);
        kt_put_scale(sdt, bp, i, kt_unif(r, -0.2f, 0.2f));
    }
    for (size_t row = 0; row < rows; row++) {
        for (size_t c = 0; c < cols; c++) {
            uint32_t q = kt_below(r, levels + 1);
            size_t per_word = 32 / (size_t)bits, wi = (row * cols + c) / per_word;
            uint32_t word;
            memcpy(&word, d + 4 * wi, 4);
            word |= q << (bits * (int)(c % per_word));
            memcpy(d + 4 * wi, &word, 4);
            size_t g = row * ng + c / (size_t)gs;
            float s = kn_scale_at(sdt, sp, g), b = kn_scale_at(sdt, bp, g);
            k.dense[row * cols + c] = s * (float)q + b;
            k.absq[row * cols + c] = fabsf(s * (float)q);
        }
    }
    k.w.data = d;
    k.w.scales = sp;
    k.w.biases = bp;
    k.w.scale_dtype = sdt;
    k.w.group_size = gs;
    k.w.bits = bits;
    return k;
}

static inline void kt_free_weight(kt_weight *k)
{
    free(k->data_mem);
    free(k->scale_mem);
    free(k->bias_mem);
    free(k->dense);
    free(k->absq);
}

#endif /* SEM_KN_TEST_H */
