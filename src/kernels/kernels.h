/* kernels.h - the door of the kernels room: CPU feature detection and
 * run-time dispatch, matmul for every weight format, the elementwise ops of
 * a transformer layer, and attention over paged KV blocks.
 *
 * kernels/ knows nothing of models: a weight is a kn_weight view, a KV cache
 * is a kn_kv_view, activations are f32 rows with explicit strides.
 *
 * Dispatch: kn_ctx_create() runs CPUID/XCR0 detection once and fills a
 * table of function pointers (reference C, AVX2+FMA+F16C, AVX-512). Setting
 * params.force_ref (SEMANTIC_KERNELS=ref, read by app/) forces the
 * reference path, which is the specification.
 *
 * Threading: kn_matmul and kn_attention split their work over the compute
 * pool given at create. Every other function runs on the calling thread.
 * Nothing here allocates, logs or locks after kn_ctx_create.
 *
 * Thread: engine (one owner at a time; the pool's workers are internal).
 */
#ifndef SEM_KERNELS_H
#define SEM_KERNELS_H

#include "base/base.h"

/* ===================================================================== */
/* Formats                                                                */
/* ===================================================================== */

/* Element formats of weights and activations. Values reach no file. */
typedef enum kn_dtype {
    KN_F32 = 0,
    KN_F16,
    KN_BF16,
    KN_Q4, /* MLX affine 4-bit: U32-packed, 8 values per word, low nibble first */
    KN_Q8, /* MLX affine 8-bit: U32-packed, 4 values per word, low byte first */
} kn_dtype;

const char *kn_dtype_name(kn_dtype t); /* "f32", "f16", "bf16", "q4", "q8" */

/* A weight matrix W[rows][cols] (rows = out_features, cols = in_features),
 * row-major, as a view into mapped file data (borrowed; must outlive use).
 * For KN_Q4/KN_Q8 (MLX affine quantization):
 *   data    U32 [rows][cols * bits / 32]
 *   scales  [rows][cols / group_size] in scale_dtype
 *   biases  [rows][cols / group_size] in scale_dtype
 *   w[r][c] = scales[r][c/gs] * q[r][c] + biases[r][c/gs],
 *   where q[r][c] is element c of row r, packed little-end first:
 *   for 4 bits, word c/8 holds element c at bits 4*(c%8).
 * group_size is 32, 64 or 128; cols is a multiple of group_size. */
typedef struct kn_weight {
    kn_dtype dtype;
    size_t rows, cols;
    const void *data;
    const void *scales;   /* quantized only */
    const void *biases;   /* quantized only */
    kn_dtype scale_dtype; /* KN_F16, KN_BF16 or KN_F32 */
    int group_size;       /* quantized only */
    int bits;             /* 4 or 8 for quantized; 0 otherwise */
    const uint8_t *packed; /* Q4/Q8 only, optional: the same weights in
                              16-row tiles (kn_pack), which the tables that
                              have a kernel for them read instead of data */
} kn_weight;

/* ===================================================================== */
/* Context: CPU features, dispatch, pool, scratch                         */
/* ===================================================================== */

typedef struct kn_cpu_features {
    bool avx2, fma, f16c;                  /* AVX2 path needs all three */
    bool avx512f, avx512bw, avx512vl;      /* AVX-512 path */
    bool avx512_vnni, avx512_bf16;
} kn_cpu_features;

/* Detects what the CPU and OS (XCR0) support. */
kn_cpu_features kn_cpu_detect(void);

typedef struct kn_ctx_params {
    tp_pool *pool;          /* borrowed; NULL = single-threaded */
    bool force_ref;         /* reference C kernels only */
    bool q_exact;           /* Q4/Q8 matmul on f32 activations (slower);
                               false (the default): activations quantized
                               per 32 to int16 (see kn_matmul) */
    bool q_int8_act;        /* Q4/Q8 matmul on activations quantized to int8
                               per 32 (fastest, least precise; wins over
                               q_exact) */
    size_t max_tokens;      /* tokens per quantized-activation pass (scratch;
                               default 256); larger n_tokens run in slices */
    size_t max_cols;        /* largest weight cols passed to kn_matmul for
                               Q4/Q8 weights (scratch; default 16384) */
} kn_ctx_params;
/* Scratch is about max_tokens * max_cols * 4.6 bytes (int16 planes; 1.6
 * for int8), allocated at create (quantizing tables only). Attention needs
 * none: it streams. */

typedef struct kn_ctx kn_ctx; /* opaque */

kn_ctx_params kn_ctx_default_params(void);
sem_status kn_ctx_create(const kn_ctx_params *p, kn_ctx **out, sem_err *err);
void kn_ctx_destroy(kn_ctx *kc); /* NULL ok */
/* "ref", "avx2" or "avx512" (+ "-exact" with q_exact, "-int8" with
 * q_int8_act): the path chosen. */
const char *kn_ctx_isa(const kn_ctx *kc);
kn_cpu_features kn_ctx_features(const kn_ctx *kc);
tp_pool *kn_ctx_pool(const kn_ctx *kc);

/* ===================================================================== */
/* Matmul                                                                 */
/* ===================================================================== */

/* Y[t][r] = sum_c X[t][c] * W[r][c]   for t < n_tokens, r < w->rows.
 * X rows are ldx floats apart, Y rows ldy floats apart. n_tokens == 1 is
 * the decode (matrix-vector) form; larger n the prefill (matrix-matrix)
 * form, which reads each weight row once per tile of tokens.
 * Requires w->cols <= max_cols of the ctx for Q4/Q8 (asserted); any
 * n_tokens. Pointers need no alignment.
 * Precision: a token's result never depends on the other tokens of the
 * call (batch-invariant, bit for bit). Float formats, the reference and
 * params.q_exact match the reference within f32 summation error. The
 * default SIMD Q4/Q8 kernels quantize X per 32-element block to int16
 * (the bias term uses exact f32 sums), which streams Q4 about 1.8x faster
 * per core than f32 activations and adds at most
 *   sum_c |scale * q_c| * (max|X over c's block| / 65534 + 2^-22 |X_c|)
 * to |Y - Y_ref| (f32 rounding's order). params.q_int8_act quantizes to
 * int8 instead: about 2.8x faster than f32, at most
 *   sum_c |scale * q_c| * max|X over c's block| / 254.
 * tests/kernels/test_matmul.c derives the bounds.
 * Runs on the pool. */
void kn_matmul(kn_ctx *kc, const kn_weight *w, const float *x, size_t ldx, float *y, size_t ldy,
               size_t n_tokens);

/* One matmul of a group: Y[t][r] = sum_c X[t][c] * W[r][c] as kn_matmul. */
typedef struct kn_mm_item {
    const kn_weight *w;
    const float *x;
    size_t ldx;
    float *y;      /* items' outputs must not overlap */
    size_t ldy;
    size_t n_tokens;
} kn_mm_item;

#define KN_GROUP_MAX 64

/* Runs n <= KN_GROUP_MAX independent matmuls with the results kn_matmul
 * gives each, in one pass over the pool (one fork-join instead of n): for
 * many small matrices (MoE experts, per-head projections) the barrier
 * costs as much as the arithmetic. Falls back to n kn_matmul calls when
 * the items' quantized activations do not fit the context's scratch
 * together.
 * Runs on the pool (kernels/matmul_group.c). */
void kn_matmul_group(kn_ctx *kc, const kn_mm_item *items, size_t n);

/* Bytes of w repacked for this context's packed Q4/Q8 kernel (16-row
 * tiles, kernels/pack.c), or 0 when the table has no packed kernel for
 * w's format or w does not qualify (F16/BF16 scales, rows a multiple of
 * 16, cols <= max_cols). Same size as the weight's data, scales and
 * biases. */
size_t kn_packed_bytes(const kn_ctx *kc, const kn_weight *w);
/* Writes w's tiles to dst (64-byte aligned, kn_packed_bytes bytes), on
 * the pool; the caller then sets w->packed = dst and owns dst. A packed
 * weight gives the results of the table's packed kernel, which may differ
 * from the unpacked kernel's in rounding only (kernels/pack.c). */
void kn_pack(kn_ctx *kc, const kn_weight *w, void *dst);

/* Dequantizes/converts row r of w into out[w->cols] (embedding lookup). */
void kn_weight_row(const kn_weight *w, size_t r, float *out);

/* Converts n elements of src (KN_F32/F16/BF16) to f32. */
void kn_to_f32(kn_dtype t, const void *src, float *dst, size_t n);
float kn_f16_to_f32(uint16_t h);
uint16_t kn_f32_to_f16(float f); /* round to nearest even */
/* The n halves kn_f32_to_f16(x[i]) at out (any alignment), bit for bit;
 * F16C where the CPU has it. */
void kn_f32_to_f16_row(const float *x, void *out, size_t n);
float kn_bf16_to_f32(uint16_t h);
uint16_t kn_f32_to_bf16(float f); /* round to nearest even */

/* ===================================================================== */
/* Elementwise ops (calling thread)                                       */
/* ===================================================================== */

/* out[i] = x[i] / sqrt(mean(x^2) + eps) * (w_offset + w[i]); w is f32.
 * w_offset is 0 for Llama/Qwen2 and 1 for Gemma's (1 + weight) norm.
 * out may alias x. */
void kn_rmsnorm(float *out, const float *x, const float *w, size_t n, float eps, float w_offset);

/* Rotate-half RoPE (the HF Llama convention) on n_heads heads of head_dim
 * at x[h * head_dim], rotating the first rot_dim dims of each head:
 *   for i < rot_dim/2: (x[i], x[i+rot_dim/2]) rotated by angle pos*inv_freq[i]
 * inv_freq has rot_dim/2 entries (rope scaling is folded into it by the
 * caller); attn_factor scales cos and sin (YaRN mscale; 1 otherwise). */
void kn_rope(float *x, size_t n_heads, size_t head_dim, size_t rot_dim, int32_t pos,
             const float *inv_freq, float attn_factor);
/* kn_rope in two steps, for a rotation that many heads and layers share:
 * cs[rot_dim] = cos (first half) and sin (second half) of pos *
 * inv_freq[i], times attn_factor; then the rotation of n_heads heads of x
 * by cs (bit for bit kn_rope). */
enum { KN_ROPE_MAX_DIM = 1024 }; /* rot_dim at most */
void kn_rope_table(float *cs, int32_t pos, const float *inv_freq, size_t rot_dim, float attn_factor);
void kn_rope_apply(float *x, size_t n_heads, size_t head_dim, size_t rot_dim, const float *cs);

/* out[i] = silu(gate[i]) * up[i]. out may alias gate. The reference. */
void kn_silu_mul(float *out, const float *gate, const float *up, size_t n);
/* The same through the context: its table's SIMD gate, split over the
 * pool for prefill-sized n. What the forward passes call. */
void kn_swiglu(kn_ctx *kc, float *out, const float *gate, const float *up, size_t n);
/* out[i] = gelu_tanh(gate[i]) * up[i]. out may alias gate. */
void kn_gelu_tanh_mul(float *out, const float *gate, const float *up, size_t n);
/* In-place softmax over n values. */
void kn_softmax(float *x, size_t n);
/* y[i] += x[i] */
void kn_add(float *y, const float *x, size_t n);

/* ===================================================================== */
/* Paged KV and attention                                                 */
/* ===================================================================== */

/* Element formats of the KV cache. The q8/q4 formats are MLX affine with
 * group KN_KV_GROUP along head_dim and F16 scale and bias per group. */
typedef enum kn_kv_dtype {
    KN_KV_F16 = 0, /* the default */
    KN_KV_BF16,
    KN_KV_Q8,
    KN_KV_Q4,
    KN_KV_F32, /* exact; used by reference tests */
} kn_kv_dtype;

#define KN_KV_GROUP 64

const char *kn_kv_dtype_name(kn_kv_dtype t);
/* Bytes of one row of `dim` elements in format t: the data, then (for
 * q8/q4) the F16 scales, then the F16 biases of its groups. dim must be a
 * multiple of KN_KV_GROUP for q8/q4 (callers check at model load). */
size_t kn_kv_row_bytes(kn_kv_dtype t, size_t dim);

/* One sequence's view of one layer's K and V in a block pool.
 * Block b of the pool starts at base + b * block_stride. Within a block,
 * this layer's K rows start at k_offset and V rows at v_offset; row
 * (token t of the block, kv head h) is at
 *   k_offset + (h * block_tokens + t) * k_row_bytes
 * and likewise for V: head-major, so a KV head's rows of a block are one
 * contiguous run (attention streams each head's rows in order). Logical
 * position p lives in block block_ids[p / block_tokens] at token
 * p % block_tokens.
 * Pools that store each layer in its own unit (sliding-window layers kept
 * as a ring, kv/kv.h) add one indirection: with unit_ids set, logical
 * block i's rows for this layer are in arena block
 *   unit_ids[block_ids[i] * unit_stride]
 * (unit_ids already points at this layer's column; -1 = not held, never
 * read). */
typedef struct kn_kv_view {
    kn_kv_dtype dtype;
    uint8_t *base;             /* borrowed: the pool arena */
    size_t block_stride;       /* bytes per block */
    size_t k_offset, v_offset; /* this layer's K and V within a block */
    size_t k_row_bytes;        /* kn_kv_row_bytes(dtype, head_dim) */
    size_t v_row_bytes;        /* kn_kv_row_bytes(dtype, v_head_dim) */
    int32_t n_kv_heads, head_dim, v_head_dim, block_tokens;
    const int32_t *block_ids;  /* borrowed: the sequence's block table */
    const int32_t *unit_ids;   /* borrowed: NULL, or the pool's [block][layer] unit table
                                  offset to this layer */
    int32_t unit_stride;       /* entries per block in unit_ids (the pool's layers) */
} kn_kv_view;

/* Layer l's view, given layer 0's: the K/V offsets move by l *
 * layer_stride (a block holds every layer), or, with unit_ids, the unit
 * column moves by l (layer_stride unused). */
kn_kv_view kn_kv_view_layer(const kn_kv_view *layer0, size_t layer_stride, int32_t l);

/* Writes K and V of one token at logical position pos:
 * k[n_kv_heads][head_dim], v[n_kv_heads][v_head_dim], quantizing as the
 * view's dtype requires. */
void kn_kv_store(const kn_kv_view *kv, int32_t pos, const float *k, const float *v);
/* Start of the row (position pos, kv head h) of K (or V, if is_v). */
const uint8_t *kn_kv_row_ptr(const kn_kv_view *kv, int32_t pos, int32_t h, bool is_v);
/* Reads back one token's K (or V, if is_v) for head h into out (tests,
 * cache files). */
void kn_kv_load_row(const kn_kv_view *kv, int32_t pos, int32_t h, bool is_v, float *out);

/* Causal attention for n_q query tokens of one sequence.
 *   q    [n_q][n_heads][head_dim] (RoPE already applied)
 *   out  [n_q][n_heads][v_head_dim]
 * Query i sits at position q_pos[i] and attends to the positions
 * max(0, q_pos[i] - window + 1) .. q_pos[i] (window <= 0: no window),
 * which must already be stored. Head h reads KV head h / (n_heads /
 * n_kv_heads) (GQA). scores = q.k * scale, then, when softcap > 0,
 * softcap * tanh(scores / softcap); softmax; weighted sum of V.
 * Streams positions with an online softmax, so it needs no scratch and
 * any context length works; Q8/Q4 KV need head dims <= 4096.
 * Runs on the pool (split over query tokens and heads). */
void kn_attention(kn_ctx *kc, const kn_kv_view *kv, const float *q, const int32_t *q_pos,
                  size_t n_q, int32_t n_heads, float scale, int32_t window, float softcap,
                  float *out);

#endif /* SEM_KERNELS_H */
