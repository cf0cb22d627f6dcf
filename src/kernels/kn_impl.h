/* kn_impl.h - private to the kernels room: the dispatch table, the context
 * struct, the quantized-activation scratch and the per-ISA entry points.
 * Nothing outside src/kernels/ includes this file (tests/kernels may, to
 * compare variants against the reference).
 *
 * A variant is one kn_ops table (reference C, AVX2, AVX-512). cpu.c picks
 * one at kn_ctx_create from CPUID/XCR0; kn_ops_ref/avx2/avx512 return a
 * table or NULL when the variant is not compiled in.
 *
 * Thread: the tables are immutable after construction (static const).
 */
#ifndef SEM_KN_IMPL_H
#define SEM_KN_IMPL_H

#include "kernels/kernels.h"

#include <string.h>

/* Activation rows quantized per 32-element block, to int16 (the default
 * tables) or to int8 (the _int8 tables), for the Q4/Q8 integer kernels.
 * Per token t (row stride cols elements for q16 and q, cols/8 floats for
 * d, cols/group_size floats for gsum):
 *   q16   int16 [cols], per 32-element block x ~= d_block * q16, in the
 *         order the layout names (KN_QX_I16_*)
 *   q     int8 [cols], per 32-element block x ~= d_block * q
 *         (KN_QX_PERMUTED*, KN_QX_NATURAL)
 *   d     f32 [cols/32][4]: each block's scale repeated 4 times, so one
 *         256-bit load gives the per-lane scales of a 64-element chunk
 *   gsum  f32 [cols/group_size]: exact f32 sums of x over each weight
 *         group (multiplies the group's bias)
 * Only one of q / q16 is allocated, as the table's act_bits says. */
typedef struct kn_qx {
    int8_t *q;
    int16_t *q16;
    float *d;
    float *gsum;
    size_t cols, n_tokens;
    int group_size;
} kn_qx;

/* Quantization layout the integer kernels want. */
typedef enum kn_qx_layout {
    KN_QX_PERMUTED = 0, /* int8 Q4: evens then odds per 64-element piece
                           (a trailing 32-element piece likewise) */
    KN_QX_NATURAL,      /* int8 Q8 */
    KN_QX_PERMUTED128,  /* int8 Q4: evens then odds per 128-element piece */
    KN_QX_I16_Q4,       /* int16 Q4: per 64-element piece, elements 0, 4,
                           8, .. then 1, 5, 9, .. then 2, .. then 3, ..
                           (a trailing 32-element piece likewise) */
    KN_QX_I16_Q8,       /* int16 Q8: evens then odds per 32-element block */
    KN_QX_I16_SPLIT,    /* int16 as two byte planes, the token's q16 row
                           read as bytes: [cols] hi = h >> 8 (s8), then
                           [cols] lo = h & 255 (u8), h = 256 hi + lo; per
                           8 elements in the order 0, 2, 4, 6, 1, 3, 5, 7
                           (the packed Q4 tiles, pack.c) */
    KN_QX_I8_EO,        /* int8, per 8 elements in the order 0, 2, 4, 6,
                           1, 3, 5, 7 (the packed Q4 tiles, int8 mode) */
    KN_QX_I16_SPLIT8,   /* int16 with |h| <= 32639 as two s8 planes in
                           natural order, [cols] hi = (h + 128) >> 8, then
                           [cols] lo = h - 256 hi (the packed Q8 tiles) */
} kn_qx_layout;

/* Matmul over the row range [r0, r1) of w for n_tokens tokens.
 * Float formats read x directly; quantized formats read qx when the
 * table's uses_qx is true (SIMD) and x otherwise (reference). */
typedef void (*kn_mm_fn)(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,
                         const kn_qx *qx, float *y, size_t ldy, size_t n_tokens);
/* Quantizes one activation row of cols elements (cols % 32 == 0) for
 * token slot t of qx. */
typedef void (*kn_quant_fn)(const float *x, kn_qx *qx, size_t t, kn_qx_layout layout);
/* out[i] = scale * (q . row_i), row_i = rows + i * stride, for i < n
 * stored KV rows of dim elements; qgsum[g] = sum of q over KV group g
 * (used by the affine formats). */
typedef void (*kn_kv_scores_fn)(const float *q, const float *qgsum, float scale,
                                const uint8_t *rows, size_t stride, size_t n, size_t dim,
                                float *out);
/* The scores of g (1 to KN_GQA_MAX) query heads sharing a KV head (GQA)
 * over the same rows, each row read and converted once: out[h] as a
 * kn_kv_scores_fn call with q[h] and qgsum[h] gives it, bit for bit
 * (qgsum: the affine formats; NULL for the float ones). With next !=
 * NULL the rows next + i * stride (i < n) are prefetched along the way
 * (the next chunk's). */
#define KN_GQA_MAX 4
typedef void (*kn_kv_scores_g_fn)(const float *const *q, const float *const *qgsum, int g, float scale,
                                  const uint8_t *rows, size_t stride, size_t n, size_t dim,
                                  const uint8_t *next, float *const *out);
/* acc[c] += sum_i p[i] * row_i[c] for c < dim, i < n. */
typedef void (*kn_kv_accum_fn)(float *acc, const float *p, const uint8_t *rows, size_t stride,
                               size_t n, size_t dim);
/* kn_kv_accum_fn for g (1 to KN_GQA_MAX) heads over the same rows, each
 * row read and converted once; bit for bit the g single-head calls.
 * next: as for kn_kv_scores_g_fn. */
typedef void (*kn_kv_accum_g_fn)(float *const *acc, const float *const *p, int g,
                                 const uint8_t *rows, size_t stride, size_t n, size_t dim,
                                 const uint8_t *next);
/* s[i] = exp(s[i] - m) for i < n; returns the sum. */
typedef float (*kn_exp_sum_fn)(float *s, size_t n, float m);
/* out[i] = silu(gate[i]) * up[i]; out may alias gate. */
typedef void (*kn_gate_fn)(float *out, const float *gate, const float *up, size_t n);
/* acc[i] *= s */
typedef void (*kn_scale_fn)(float *acc, float s, size_t n);

#define KN_N_DTYPES 5
#define KN_N_KV_DTYPES 5

typedef struct kn_ops {
    const char *isa;              /* "ref", "avx2", "avx512" */
    bool uses_qx;                 /* Q4/Q8 kernels read quantized activations */
    int act_bits;                 /* 8 or 16 when uses_qx */
    kn_quant_fn quantize;         /* NULL when !uses_qx */
    kn_qx_layout q4_layout;       /* what the Q4 kernel reads */
    kn_qx_layout q8_layout;       /* what the Q8 kernel reads */
    kn_mm_fn mm[KN_N_DTYPES];     /* indexed by kn_dtype */
    kn_mm_fn mm_q4p, mm_q8p;      /* Q4 / Q8 weights with w->packed (pack.c),
                                     rows in multiples of 16; NULL: that
                                     format is never packed */
    kn_qx_layout q4p_layout;      /* what mm_q4p reads */
    kn_qx_layout q8p_layout;      /* what mm_q8p reads */
    kn_kv_scores_fn kv_scores[KN_N_KV_DTYPES]; /* indexed by kn_kv_dtype */
    kn_kv_accum_fn kv_accum[KN_N_KV_DTYPES];
    kn_kv_scores_g_fn kv_scores_g[KN_N_KV_DTYPES]; /* optional (NULL: per head) */
    kn_kv_accum_g_fn kv_accum_g[KN_N_KV_DTYPES];   /* set with kv_scores_g */
    kn_exp_sum_fn exp_sum;
    kn_scale_fn scale;
    kn_gate_fn silu_mul;
} kn_ops;

const kn_ops *kn_ops_ref(void);
/* NULL if not compiled for x86-64. The tables of one ISA differ only in
 * their Q4/Q8 matmul: int16 activations (the default), f32 activations
 * (_exact, params.q_exact) or int8 activations (_int8, params.q_int8_act). */
const kn_ops *kn_ops_avx2(void);
const kn_ops *kn_ops_avx2_exact(void);
const kn_ops *kn_ops_avx2_int8(void);
const kn_ops *kn_ops_avx512(void);
const kn_ops *kn_ops_avx512_exact(void);
const kn_ops *kn_ops_avx512_int8(void);

struct kn_ctx {
    kn_ctx_params params;
    kn_cpu_features feat;
    const kn_ops *ops;       /* chosen once at create */
    tp_pool *pool;           /* borrowed */
    kn_qx qx;                /* scratch sized max_tokens x max_cols */
    void *qx_mem;            /* owned backing store of qx */
};

/* Builds a context with an explicit table (tests compare variants). */
sem_status kn_ctx_create_with_ops(const kn_ctx_params *p, const kn_ops *ops, kn_ctx **out,
                                  sem_err *err);

/* Loads of element i from a buffer of any alignment: mapped safetensors
 * data carries no alignment promise, and memcpy keeps that defined. */
static inline uint16_t kn_ld_u16(const void *p, size_t i)
{
    uint16_t v;
    memcpy(&v, (const uint8_t *)p + i * 2, 2);
    return v;
}
static inline uint32_t kn_ld_u32(const void *p, size_t i)
{
    uint32_t v;
    memcpy(&v, (const uint8_t *)p + i * 4, 4);
    return v;
}
static inline float kn_ld_f32(const void *p, size_t i)
{
    float v;
    memcpy(&v, (const uint8_t *)p + i * 4, 4);
    return v;
}

/* Element i of a scale/bias array (F32, F16 or BF16) as f32. */
static inline float kn_scale_at(kn_dtype t, const void *p, size_t i)
{
    if (t == KN_F32) return kn_ld_f32(p, i);
    if (t == KN_BF16) return kn_bf16_to_f32(kn_ld_u16(p, i));
    return kn_f16_to_f32(kn_ld_u16(p, i));
}

/* Bytes of one packed data row of a quantized weight. */
static inline size_t kn_qrow_bytes(const kn_weight *w) { return w->cols * (size_t)w->bits / 8; }

/* The KV row layout of the affine formats: data, then F16 scales, then F16
 * biases, dim / KN_KV_GROUP of each. */
static inline size_t kn_kv_data_bytes(kn_kv_dtype t, size_t dim)
{
    return t == KN_KV_Q4 ? dim / 2 : dim;
}


/* Attention row kernels, declared per format. */
#define KN_KV_DECL(pfx, fmt)                                                                  \
    void pfx##_kv_scores_##fmt(const float *q, const float *qgsum, float scale,               \
                               const uint8_t *rows, size_t stride, size_t n, size_t dim,      \
                               float *out);                                                   \
    void pfx##_kv_accum_##fmt(float *acc, const float *p, const uint8_t *rows, size_t stride, \
                              size_t n, size_t dim)
#define KN_KV_DECL_ALL(pfx)                                                                   \
    KN_KV_DECL(pfx, f32);                                                                     \
    KN_KV_DECL(pfx, f16);                                                                     \
    KN_KV_DECL(pfx, bf16);                                                                    \
    KN_KV_DECL(pfx, q8);                                                                      \
    KN_KV_DECL(pfx, q4);                                                                      \
    float pfx##_exp_sum(float *s, size_t n, float m);                                         \
    void pfx##_scale(float *acc, float s, size_t n)

#define KN_KV_DECL_GQA(pfx, fmt)                                                              \
    void pfx##_kv_scores_g_##fmt(const float *const *q, const float *const *qgsum, int g, float scale, \
                                 const uint8_t *rows, size_t stride, size_t n, size_t dim,    \
                                 const uint8_t *next, float *const *out);                     \
    void pfx##_kv_accum_g_##fmt(float *const *acc, const float *const *p, int g,              \
                                const uint8_t *rows, size_t stride, size_t n, size_t dim,     \
                                const uint8_t *next)

/* Reference row kernels (ref/kv_ref.c). */
KN_KV_DECL_ALL(kn_ref);


/* Matmul work units (matmul.c): rows per unit of w for nth threads (about
 * 16 KiB of weights, a multiple of 8, of 16 for packed weights), dealt in
 * runs of up to KN_MM_RUN. */
enum { KN_MM_RUN = 4 };
size_t kn_unit_rows(const kn_weight *w, int nth);

/* Bytes of one group of a packed 16-row tile (pack.c): 16 scales and 16
 * biases (64 bytes), then the 16 rows' gs weights of `bits` bits. */
static inline size_t kn_packed_group_bytes(size_t gs, int bits) { return 64 + 16 * gs * (size_t)bits / 8; }

/* The kernel and the activation layout a quantized weight takes in ops. */
static inline kn_mm_fn kn_mm_packed(const kn_ops *ops, kn_dtype dt)
{
    return dt == KN_Q4 ? ops->mm_q4p : dt == KN_Q8 ? ops->mm_q8p : NULL;
}
static inline kn_mm_fn kn_mm_kernel(const kn_ops *ops, const kn_weight *w)
{
    return w->packed && kn_mm_packed(ops, w->dtype) ? kn_mm_packed(ops, w->dtype) : ops->mm[w->dtype];
}
static inline kn_qx_layout kn_mm_layout(const kn_ops *ops, const kn_weight *w)
{
    bool q4 = w->dtype == KN_Q4;
    if (w->packed && kn_mm_packed(ops, w->dtype)) return q4 ? ops->q4p_layout : ops->q8p_layout;
    return q4 ? ops->q4_layout : ops->q8_layout;
}

/* AVX2 kernels (the x86 files named _avx2.c; call only when the CPU has AVX2+FMA+F16C).
 * The AVX-512 table reuses the ones it does not replace. */
void kn_avx2_quantize(const float *x, kn_qx *qx, size_t t, kn_qx_layout layout);
#define KN_MM_DECL(name)                                                                     \
    void name(const kn_weight *w, size_t r0, size_t r1, const float *x, size_t ldx,          \
              const kn_qx *qx, float *y, size_t ldy, size_t n_tokens)
KN_MM_DECL(kn_avx2_mm_q4_i16); /* int16 activations (the default) */
KN_MM_DECL(kn_avx2_mm_q8_i16);
KN_MM_DECL(kn_avx2_mm_q4f);    /* f32 activations (_exact) */
KN_MM_DECL(kn_avx2_mm_q8f);
KN_MM_DECL(kn_avx2_mm_q4);     /* int8 activations (_int8) */
KN_MM_DECL(kn_avx2_mm_q8);
KN_MM_DECL(kn_avx2_mm_f32);
KN_MM_DECL(kn_avx2_mm_f16);
KN_MM_DECL(kn_avx2_mm_bf16);
KN_KV_DECL_ALL(kn_avx2);
void kn_avx2_silu_mul(float *out, const float *gate, const float *up, size_t n);
/* Converts x[0, n - n % 8) to f16 at out (any alignment); returns that count. */
size_t kn_avx2_f32_to_f16_8s(const float *x, void *out, size_t n);
KN_KV_DECL_GQA(kn_avx2, f32);
KN_KV_DECL_GQA(kn_avx2, f16);
KN_KV_DECL_GQA(kn_avx2, bf16);
KN_KV_DECL_GQA(kn_avx2, q8);
KN_KV_DECL_GQA(kn_avx2, q4);

/* AVX-512 kernels (x86 files named _avx512.c; call only when the CPU has
 * AVX512F/BW/VL and VNNI). */
KN_MM_DECL(kn_avx512_mm_q4);
KN_MM_DECL(kn_avx512_mm_q8);
KN_MM_DECL(kn_avx512_mm_q4p);    /* packed Q4 tiles on KN_QX_I16_SPLIT activations */
KN_MM_DECL(kn_avx512_mm_q4p_i8); /* packed Q4 tiles on KN_QX_I8_EO activations */
KN_MM_DECL(kn_avx512_mm_q8p);    /* packed Q8 tiles on KN_QX_I16_SPLIT8 activations */
KN_MM_DECL(kn_avx512_mm_q8p_i8); /* packed Q8 tiles on KN_QX_NATURAL int8 activations */
KN_KV_DECL(kn_avx512, f16);
KN_KV_DECL(kn_avx512, bf16);
KN_KV_DECL_GQA(kn_avx512, f16);
KN_KV_DECL_GQA(kn_avx512, bf16);

#endif /* SEM_KN_IMPL_H */
