/* model.h - the door of the model room: config.json -> one model_spec, a
 * model directory loaded and bound to weight views, and the forward pass
 * over a batch of sequences.
 *
 * Each fact is derived once: the spec is parsed from config.json here, and
 * the KV geometry is computed from it here (model_spec_kv_geometry), nowhere
 * else. The weights are views into the mmapped safetensors files; loading
 * validates every tensor's presence, dtype and shape against the spec, so
 * the forward pass cannot fail.
 *
 * model/ sees KV storage only as kernel-level views (kn_kv_view): it never
 * includes kv/ or engine/.
 *
 * Thread: model_load on any thread; a loaded model is immutable. The
 * forward pass runs on the engine thread with its own model_run scratch.
 */
#ifndef SEM_MODEL_H
#define SEM_MODEL_H

#include "base/base.h"
#include "kernels/kernels.h"

#define MODEL_MAX_LAYERS 512
#define MODEL_MAX_HIDDEN 65536
#define MODEL_MAX_HEADS 1024
#define MODEL_MAX_HEAD_DIM 1024
#define MODEL_MAX_VOCAB 4194304
#define MODEL_MAX_EOS 16
#define MODEL_MAX_QUANT_OVERRIDES 4096
#define MODEL_MAX_EXPERTS 1024      /* n_routed_experts */
#define MODEL_MAX_EXPERTS_USED 64   /* num_experts_per_tok */
#define MODEL_CONFIG_MAX_BYTES (4u * 1024u * 1024u)

typedef enum model_arch {
    MODEL_ARCH_LLAMA = 0, /* LlamaForCausalLM, MistralForCausalLM */
    MODEL_ARCH_QWEN2,     /* Qwen2ForCausalLM: Llama + q/k/v biases */
    MODEL_ARCH_DEEPSEEK2, /* DeepseekV2ForCausalLM: MLA attention + MoE */
    MODEL_ARCH_GEMMA3,    /* Gemma3ForCausalLM, and the text model of
                             Gemma3ForConditionalGeneration */
} model_arch;

typedef enum model_rope_scaling {
    MODEL_ROPE_NONE = 0,
    MODEL_ROPE_LINEAR,
    MODEL_ROPE_LLAMA3,
    MODEL_ROPE_YARN, /* DeepSeek-V2: YaRN with mscale / mscale_all_dim */
} model_rope_scaling;

typedef enum model_act {
    MODEL_ACT_SILU = 0,  /* silu(gate) * up */
    MODEL_ACT_GELU_TANH, /* gelu_pytorch_tanh(gate) * up (Gemma) */
} model_act;

/* One MLX per-module quantization override ("model.layers.0.mlp.down_proj":
 * {"bits": 8, "group_size": 64}, or false for an unquantized module). */
typedef struct model_quant_override {
    char *module; /* owned */
    int bits;     /* 0 = not quantized */
    int group_size;
} model_quant_override;

typedef struct model_spec {
    model_arch arch;
    char arch_name[64];     /* architectures[0], e.g. "LlamaForCausalLM" */
    char model_type[32];    /* "llama", "qwen2", ... */
    int32_t n_layers;
    int32_t hidden;         /* hidden_size */
    int32_t n_heads;
    int32_t n_kv_heads;     /* DeepSeek-V2: 1 (the shared latent) */
    int32_t head_dim;       /* explicit head_dim, or hidden / n_heads;
                               DeepSeek-V2: qk_nope + qk_rope (K heads) */
    int32_t v_head_dim;     /* = head_dim except DeepSeek-V2 (V heads) */
    int32_t intermediate;   /* intermediate_size */
    int32_t vocab;
    int32_t max_pos;        /* max_position_embeddings */
    float rms_eps;
    float rope_theta;
    model_rope_scaling rope_scaling;
    float rope_factor;           /* linear / llama3 */
    float rope_low_freq_factor;  /* llama3 */
    float rope_high_freq_factor; /* llama3 */
    int32_t rope_orig_max_pos;   /* llama3: original_max_position_embeddings */
    bool tied_embeddings;
    bool qkv_bias;               /* Qwen2 */
    /* MLX quantization: bits 0 = float weights. */
    int quant_bits;
    int quant_group_size;
    model_quant_override *quant_overrides; /* owned; n_quant_overrides entries */
    size_t n_quant_overrides;
    model_act act;               /* MLP activation */
    int32_t rope_dim;            /* dims rotated per head: head_dim, or
                                    qk_rope_head_dim for DeepSeek-V2 */
    bool rope_interleaved;       /* pairs (2i, 2i+1) rotate (DeepSeek-V2);
                                    else rotate-half (i, i + rope_dim/2) */
    float attn_scale;            /* softmax scale of q.k (derived) */
    float rope_attn_factor;      /* cos/sin factor (YaRN mscale; else 1) */
    /* YaRN (rope_scaling type "yarn"); rope_orig_max_pos is shared. */
    float rope_beta_fast, rope_beta_slow, rope_mscale, rope_mscale_all_dim;
    /* DeepSeek-V2: multi-head latent attention (0 elsewhere). Its query and
     * key heads are [qk_nope | qk_rope] = head_dim, value heads v_head_dim;
     * the cache holds the latent (model_spec_kv_geometry). */
    int32_t q_lora_rank;         /* 0 = q_proj straight from hidden */
    int32_t kv_lora_rank;
    int32_t qk_nope_dim;         /* qk_nope_head_dim */
    int32_t qk_rope_dim;         /* qk_rope_head_dim (= rope_dim) */
    /* DeepSeek-V2: mixture of experts (n_experts 0 = dense model). Layer l
     * is MoE when l >= first_dense and l % moe_layer_freq == 0. */
    int32_t n_experts;           /* n_routed_experts */
    int32_t n_experts_used;      /* num_experts_per_tok (top k) */
    int32_t n_shared_experts;    /* their MLP is moe_intermediate * n_shared */
    int32_t moe_intermediate;    /* moe_intermediate_size */
    int32_t first_dense;         /* first_k_dense_replace */
    int32_t moe_layer_freq;
    int32_t n_expert_groups;     /* group_limited_greedy: n_group (else 1) */
    int32_t n_groups_used;       /* topk_group (else 1) */
    bool norm_topk_prob;         /* renormalize the top-k weights (k > 1) */
    float routed_scaling;        /* routed_scaling_factor (when not normalized) */
    /* Gemma 3: hybrid attention, norms and scalings (defaults elsewhere). */
    float norm_offset;           /* RMSNorm multiplies by (norm_offset + w):
                                    1 for Gemma, 0 otherwise */
    float embed_scale;           /* embeddings are multiplied by this (1 or
                                    sqrt(hidden) rounded as the checkpoint does) */
    float rope_local_theta;      /* rope base of sliding layers (rope_local_base_freq) */
    int32_t sliding_window;      /* window of sliding layers, tokens (0: none) */
    bool layer_sliding[MODEL_MAX_LAYERS]; /* layer l uses the window */
    bool qk_norm;                /* per-head RMSNorm of q and k (Gemma 3) */
    bool sandwich_norms;         /* post-attention and post-feedforward norms */
    float attn_softcap;          /* attn_logit_softcapping (0 = none) */
    float final_softcap;         /* final_logit_softcapping (0 = none) */
    int32_t bos_id;                 /* -1 if none */
    int32_t eos_ids[MODEL_MAX_EOS]; /* from config.json eos_token_id */
    int n_eos;
} model_spec;

/* Parses config.json of a model directory (path for messages). Range-checks
 * every field; unknown architectures get SEM_EUNSUPPORTED. */
sem_status model_spec_load(const char *dir, model_spec *out, sem_err *err);
/* From an already parsed config object; `what` names it in errors. */
sem_status model_spec_parse(const struct json_t *cfg, const char *what, model_spec *out,
                            sem_err *err);
void model_spec_fini(model_spec *s); /* frees overrides */
/* The bits/group of one module ("model.layers.3.mlp.up_proj"). */
void model_spec_module_quant(const model_spec *s, const char *module, int *bits, int *group_size);
/* RoPE inverse frequencies with rope scaling folded in: rope_dim/2 floats.
 * local: the frequencies of sliding-window layers (Gemma 3: base
 * rope_local_theta, no scaling); otherwise those of global layers. */
void model_spec_rope_inv_freq(const model_spec *s, bool local, float *out);
/* Whether layer l is a MoE layer (DeepSeek-V2). */
bool model_spec_layer_is_moe(const model_spec *s, int32_t l);

/* What the KV cache of this model looks like; the cache tag derives from it
 * (through the fingerprint, which hashes the architecture and this).
 * DeepSeek-V2 stores the compressed latent of multi-head latent attention,
 * not per-head K and V: one KV "head" per position whose K row is
 * [normed c (kv_lora_rank) | roped k_pe (qk_rope, de-interleaved)] and whose
 * V row is c again: n_kv_heads 1, head_dim kv_lora + qk_rope, v_head_dim
 * kv_lora (Lite: 576 / 512 against 16 x (192 + 128) for full K/V, 4.7x
 * less). Attention runs "absorbed" (q_nope folded through kv_b_proj's K
 * half, the output unfolded through its V half), which is the same math.
 * Gemma 3's sliding layers attend to the last sliding_window positions
 * only: window says so (0 when no layer slides, or when every layer does:
 * then nothing is gained by keeping a ring), and layer_sliding which
 * layers; the KV pool keeps just their window (kv/kv.h, ring pools). */
typedef struct model_kv_geometry {
    int32_t n_layers, n_kv_heads, head_dim, v_head_dim;
    int32_t window;              /* tokens a sliding layer attends to; 0 = none */
    const bool *layer_sliding;   /* borrowed from the spec: [n_layers] */
} model_kv_geometry;
model_kv_geometry model_spec_kv_geometry(const model_spec *s);

/* ---- a loaded model --------------------------------------------------- */

typedef struct model model; /* opaque; immutable after load but for model_pack_for */

sem_status model_load(const char *dir, model **out, sem_err *err);
void model_destroy(model *m); /* NULL ok; unmaps everything */
const model_spec *model_get_spec(const model *m);
const char *model_dir(const model *m);
uint64_t model_n_params(const model *m);      /* logical parameters (dequantized count) */
uint64_t model_weight_bytes(const model *m);  /* bytes of tensor data */
uint64_t model_file_bytes(const model *m);    /* bytes of safetensors files */
/* Bytes of weight data one decode step reads (every matrix once, plus one
 * embedding row): the denominator of the decode roofline. */
uint64_t model_decode_bytes_per_token(const model *m);
/* The largest `cols` of any matmul (for kn_ctx_params.max_cols). */
size_t model_max_matmul_cols(const model *m);
/* A 64-bit hash (16 hex digits + NUL into out[17]) of what makes two
 * checkpoints interchangeable for a KV cache: the architecture, the
 * geometry, every tensor's name, dtype and shape, and a sample of each
 * tensor's bytes (so a fine-tune differs from its base); extra_hash (e.g.
 * of tokenizer.json) is mixed in. */
void model_fingerprint(const model *m, uint64_t extra_hash, char out[17]);
/* Repacks the Q4/Q8 matrices the forward multiplies into the tiles kc's
 * table streams fastest (kn_pack; AVX-512 today), once per model: a
 * no-op when the table has no packed kernel or m is packed already. The
 * one change to a loaded model; call it before the first forward. The
 * tiles take as many bytes as the matrices, in one anonymous mapping
 * (transparent huge pages where the kernel gives them) that
 * model_destroy unmaps; the embedding rows stay in the file's mapping.
 * The caller logs the time it took. */
sem_status model_pack_for(model *m, kn_ctx *kc, sem_err *err);
/* Bytes of packed tiles (0 when unpacked). */
size_t model_packed_bytes(const model *m);
/* Prints the spec, formats, parameter count and bytes (model inspect). */
void model_describe(const model *m, FILE *f);

/* ---- the forward pass ------------------------------------------------- */

/* One sequence's part of a batch. Its KV for positions 0 .. pos0-1 is
 * already stored; the forward stores K/V for its new tokens. */
typedef struct model_seq {
    const int32_t *tokens;   /* [n_tokens] token ids, each < vocab (checked by caller) */
    size_t n_tokens;
    int32_t pos0;            /* position of tokens[0] */
    kn_kv_view kv;           /* layer 0's view; blocks must cover pos0 + n_tokens (a
                                sliding layer needs only its window before pos0) */
    size_t kv_layer_stride;  /* bytes between consecutive layers' K (and V) regions
                                (kn_kv_view_layer; unused by views with unit_ids) */
    bool all_logits;         /* logits for every new token, else only the last */
    float *logits;           /* out: [all_logits ? n_tokens : 1][vocab] (borrowed);
                                NULL = no logits (an intermediate prefill chunk) */
} model_seq;

/* Scratch activations ("RunState"), sized once for the largest batch. */
typedef struct model_run model_run; /* opaque; Thread: engine */

sem_status model_run_create(const model *m, size_t max_tokens, model_run **out, sem_err *err);
void model_run_destroy(model_run *r); /* NULL ok */

/* Runs every sequence's new tokens through the model in one pass (each
 * weight matrix is read once per call) and writes their logits. The total
 * of n_tokens must not exceed the run's max_tokens. */
void model_forward(const model *m, kn_ctx *kc, model_run *run, model_seq *seqs, size_t n_seqs);

#endif /* SEM_MODEL_H */
