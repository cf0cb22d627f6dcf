/* model_int.h - inside the model room only: the loaded model's structs
 * (llama2.c's TransformerWeights and RunState), the weight binder used by
 * the architecture files, and the architecture table.
 */
#ifndef SEM_MODEL_INT_H
#define SEM_MODEL_INT_H

#include "formats/formats.h"
#include "model/model.h"

/* One transformer block's weights. Matrices are views into the mapping;
 * vectors (norms, biases) are converted to f32 at load and owned. */
typedef struct model_layer {
    float *attn_norm;                 /* owned [hidden] input_layernorm */
    float *ffn_norm;                  /* owned [hidden] post_attention_layernorm */
    kn_weight wq;                     /* [n_heads * head_dim][hidden] */
    kn_weight wk;                     /* [n_kv_heads * head_dim][hidden] */
    kn_weight wv;                     /* [n_kv_heads * v_head_dim][hidden] */
    kn_weight wo;                     /* [hidden][n_heads * v_head_dim] */
    float *bq, *bk, *bv;              /* owned q/k/v biases (Qwen2), else NULL */
    kn_weight w_gate;                 /* [intermediate][hidden] */
    kn_weight w_up;                   /* [intermediate][hidden] */
    kn_weight w_down;                 /* [hidden][intermediate] */
    /* Gemma 3 */
    bool sliding;                     /* attends to the last sliding_window positions */
    float *q_norm, *k_norm;           /* owned [head_dim] per-head norms */
    float *attn_post_norm;            /* owned [hidden] post_attention_layernorm */
    float *ffn_post_norm;             /* owned [hidden] post_feedforward_layernorm
                                         (ffn_norm is pre_feedforward_layernorm) */
    /* DeepSeek-V2 multi-head latent attention (wq is q_proj, or q_b_proj
     * after wq_a when q_lora_rank > 0) */
    kn_weight wq_a;                   /* [q_lora_rank][hidden] */
    float *q_a_norm;                  /* owned [q_lora_rank] */
    kn_weight wkv_a;                  /* [kv_lora_rank + qk_rope][hidden] kv_a_proj_with_mqa */
    float *kv_a_norm;                 /* owned [kv_lora_rank] */
    kn_weight wkv_b;                  /* [n_heads * (qk_nope + v_head_dim)][kv_lora_rank] */
    float *uk_t;                      /* owned [n_heads][kv_lora_rank][qk_nope]: kv_b_proj's
                                         K half transposed (f32, exact), for absorbing q */
    kn_weight *w_uk_t;                /* owned [n_heads] views of uk_t */
    kn_weight *w_uv;                  /* owned [n_heads] views of kv_b_proj's V rows
                                         [v_head_dim][kv_lora_rank] */
    /* DeepSeek-V2 mixture of experts (w_gate/w_up/w_down: the dense MLP) */
    bool moe;
    kn_weight router;                 /* [n_experts][hidden] mlp.gate (float) */
    kn_weight *exp_gate, *exp_up;     /* owned arrays [n_experts] of views, [moe_inter][hidden] */
    kn_weight *exp_down;              /* owned array [n_experts], [hidden][moe_inter] */
    kn_weight sh_gate, sh_up;         /* shared experts [moe_inter * n_shared][hidden] */
    kn_weight sh_down;                /* [hidden][moe_inter * n_shared] */
} model_layer;

typedef struct model_arch_ops model_arch_ops;

struct model {
    char *dir;                 /* owned */
    model_spec spec;           /* owned (overrides) */
    st_set *tensors;           /* owned: the mapped safetensors files */
    bool *bound;               /* owned [n tensors]: which tensors a slot took */
    kn_weight embed;           /* [vocab][hidden] */
    kn_weight lm_head;         /* [vocab][hidden]; == embed when tied */
    float *final_norm;         /* owned [hidden] */
    model_layer *layers;       /* owned [n_layers] */
    float *rope_inv_freq;      /* owned [rope_dim / 2], scaling folded in */
    float *rope_inv_freq_local;/* owned [rope_dim / 2]: sliding layers (Gemma 3) */
    char prefix[32];           /* decoder tensors: prefix + "layers.N..." */
    const model_arch_ops *ops; /* the family's bind and forward */
    uint64_t n_params;
    uint64_t weight_bytes;     /* bytes of bound tensor data */
    uint64_t matrix_bytes;     /* bytes of all matrices, embedding included */
    uint64_t embed_bytes;      /* bytes of the embedding matrix */
    size_t max_cols;
    size_t n_quantized;        /* matrices bound as MLX-quantized */
    uint64_t expert_bytes;     /* bytes of all routed experts (MoE) */
    void *packed;              /* owned mapping of repacked Q4 tiles (model_pack_for) */
    size_t packed_bytes;
};

/* Scratch activations for up to max_tokens tokens per forward call.
 * Shapes use T = max_tokens. */
struct model_run {
    size_t max_tokens;
    size_t logit_rows;    /* rows per lm_head matmul chunk */
    float *x;             /* [T][hidden] residual stream */
    float *xb;            /* [T][hidden] normed input */
    float *q;             /* [T][n_heads * head_dim] */
    float *k;             /* [T][n_kv_heads * head_dim] */
    float *v;             /* [T][n_kv_heads * v_head_dim] */
    float *att;           /* [T][n_heads * v_head_dim] */
    float *gate;          /* [T][intermediate] */
    float *up;            /* [T][intermediate] */
    float *logits;        /* [logit_rows][vocab] */
    int32_t *pos;         /* [T] position of each token */
    float *rope;          /* [T][head_dim] each token's rope cos/sin (kn_rope_table), once per forward */
    /* DeepSeek-V2 only (NULL otherwise) */
    float *lat;           /* [T][kv_lora + qk_rope] the latent [c | k_pe] = the KV row */
    float *q_lat;         /* [T][n_heads][kv_lora + qk_rope] absorbed queries */
    float *o_lat;         /* [T][n_heads][kv_lora] attention over the latent */
    float *latn;          /* [T][q_lora] compressed q (normed in place) */
    float *router;        /* [T][n_experts] router scores */
    int32_t *route_ids;   /* [T][n_experts_used] chosen experts */
    float *route_w;       /* [T][n_experts_used] their weights */
    int32_t *exp_rows;    /* [T * n_experts_used] (token, slot) lists by expert */
    int32_t *exp_count;   /* [n_experts + 1] list offsets */
    int32_t *exp_cursor;  /* [n_experts] fill positions */
    float *ex_x;          /* [T * n_experts_used][hidden] routed rows, by expert */
    float *ex_gate;       /* [T * n_experts_used][moe_intermediate] */
    float *ex_up;         /* [T * n_experts_used][moe_intermediate] */
    float *moe_out;       /* [T][hidden] routed sum */
};

/* A family's hooks: bind every tensor into the structs above, then run a
 * batch through the model. */
struct model_arch_ops {
    model_arch arch;
    sem_status (*bind)(model *m, sem_err *err);
    void (*forward)(const model *m, kn_ctx *kc, model_run *run, model_seq *seqs, size_t n_seqs);
};

const model_arch_ops *model_arch_ops_find(model_arch arch);

/* ---- binding helpers (model.c), used by the arch files ---------------- */

/* Binds module `name` (e.g. "model.layers.0.mlp.up_proj") as a [rows][cols]
 * matrix: F32/F16/BF16 `name.weight`, or MLX-quantized `name.weight` (U32)
 * + `name.scales` + `name.biases` per the spec's quantization. */
sem_status model_bind_matrix(model *m, const char *name, size_t rows, size_t cols, kn_weight *out,
                             sem_err *err);
/* Binds tensor `name` as an [n] vector converted to owned f32. */
sem_status model_bind_vector(model *m, const char *name, size_t n, float **out, sem_err *err);
/* Binds n_experts [rows][cols] expert matrices of projection `proj`
 * ("gate_proj") under `mlp` ("model.layers.3.mlp"): either MLX's stacked
 * `mlp.switch_mlp.proj` ([n_experts][rows][cols], float or quantized) or
 * Hugging Face's `mlp.experts.E.proj`, one per expert. out[n_experts]. */
sem_status model_bind_experts(model *m, const char *mlp, const char *proj, size_t n_experts, size_t rows,
                              size_t cols, kn_weight *out, sem_err *err);
/* Rows r0 .. r0 + n - 1 of w as a view (any format). */
kn_weight model_weight_rows(const kn_weight *w, size_t r0, size_t n);
/* True when the model files hold tensor `name`. */
bool model_has_tensor(const model *m, const char *name);

/* Shared pieces of the forward pass (arch/common.c). */
/* Looks up every sequence's tokens into r->x (times spec embed_scale),
 * filling r->pos; returns the total token count T. */
size_t model_embed_batch(const model *m, model_run *r, const model_seq *seqs, size_t n_seqs);
/* Final norm, lm_head and (when configured) final softcapping for the rows
 * that want logits. */
void model_logits_batch(const model *m, kn_ctx *kc, model_run *r, model_seq *seqs, size_t n_seqs);
/* Layer l's KV view for sequence sq. */
kn_kv_view model_seq_layer_kv(const model_seq *sq, int32_t l);
/* rmsnorm over T rows of n. */
void model_rmsnorm_rows(float *out, const float *x, const float *w, size_t T, size_t n, float eps,
                        float w_offset);

sem_status model_deepseek2_bind(model *m, sem_err *err);
void model_deepseek2_forward(const model *m, kn_ctx *kc, model_run *run, model_seq *seqs, size_t n_seqs);
sem_status model_gemma3_bind(model *m, sem_err *err);
void model_gemma3_forward(const model *m, kn_ctx *kc, model_run *run, model_seq *seqs, size_t n_seqs);

/* Shared pieces of the Llama-family forward pass (arch/llama.c). */
void model_llama_forward(const model *m, kn_ctx *kc, model_run *run, model_seq *seqs, size_t n_seqs);
sem_status model_llama_bind(model *m, sem_err *err);

#endif /* SEM_MODEL_INT_H */
