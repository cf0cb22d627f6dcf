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
    float *rope_inv_freq;      /* owned [head_dim / 2], scaling folded in */
    const model_arch_ops *ops; /* the family's bind and forward */
    uint64_t n_params;
    uint64_t weight_bytes;     /* bytes of bound tensor data */
    uint64_t matrix_bytes;     /* bytes of all matrices, embedding included */
    uint64_t embed_bytes;      /* bytes of the embedding matrix */
    size_t max_cols;
    size_t n_quantized;        /* matrices bound as MLX-quantized */
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

/* Shared pieces of the Llama-family forward pass (arch/llama.c). */
void model_llama_forward(const model *m, kn_ctx *kc, model_run *run, model_seq *seqs, size_t n_seqs);
sem_status model_llama_bind(model *m, sem_err *err);

#endif /* SEM_MODEL_INT_H */
