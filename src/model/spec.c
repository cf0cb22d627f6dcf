/* spec.c - config.json -> model_spec, the one place where a model's facts
 * are derived: architecture, dimensions, rope, norms, quantization, and
 * from those the KV geometry and the rope frequencies.
 *
 * Every field is range-checked against the MODEL_MAX_* limits, and cross
 * checks (heads divide evenly, head_dim even for rope, supported bits and
 * group sizes) happen here, so later code can assert instead of check.
 *
 * Families: Llama/Mistral/Qwen2 (the base fields), DeepSeek-V2 (MLA and
 * MoE fields, YaRN rope) and Gemma 3 (Gemma3ForCausalLM, or the
 * "text_config" of Gemma3ForConditionalGeneration, with the defaults of
 * transformers' Gemma3TextConfig for fields a checkpoint leaves out).
 *
 * Thread: any.
 */
#include "model/model.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct arch_name_map {
    const char *hf_name;
    model_arch arch;
} arch_name_map;

static const arch_name_map arch_names[] = {
    {"LlamaForCausalLM", MODEL_ARCH_LLAMA},
    {"MistralForCausalLM", MODEL_ARCH_LLAMA},
    {"Qwen2ForCausalLM", MODEL_ARCH_QWEN2},
    {"DeepseekV2ForCausalLM", MODEL_ARCH_DEEPSEEK2},
    {"Gemma3ForCausalLM", MODEL_ARCH_GEMMA3},
    {"Gemma3ForConditionalGeneration", MODEL_ARCH_GEMMA3},
};

/* transformers' Gemma3TextConfig defaults: a Gemma3ForConditionalGeneration
 * text_config lists only the fields that differ from these. */
enum {
    GEMMA3_LAYERS = 26, GEMMA3_HIDDEN = 2304, GEMMA3_INTERMEDIATE = 9216, GEMMA3_HEADS = 8,
    GEMMA3_KV_HEADS = 4, GEMMA3_HEAD_DIM = 256, GEMMA3_VOCAB = 262208, GEMMA3_MAX_POS = 131072,
    GEMMA3_SLIDING_WINDOW = 4096, GEMMA3_SLIDING_PATTERN = 6,
};

/* Reads cfg[key] as an integer in [lo, hi]. Absent or null: dflt, or an
 * error when required (dflt < lo). */
static sem_status get_int(const json_t *cfg, const char *what, const char *key, int64_t lo,
                          int64_t hi, int64_t dflt, int32_t *out, sem_err *err)
{
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (dflt < lo) return sem_errf(err, SEM_ECORRUPT, "%s: missing required field \"%s\"", what, key);
        *out = (int32_t)dflt;
        return SEM_OK;
    }
    if (!json_is_integer(v)) return sem_errf(err, SEM_ECORRUPT, "%s: \"%s\" must be an integer", what, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return sem_errf(err, SEM_ECORRUPT, "%s: \"%s\" = %lld is outside [%lld, %lld]", what, key, (long long)x, (long long)lo, (long long)hi);
    *out = (int32_t)x;
    return SEM_OK;
}

static sem_status get_float(const json_t *cfg, const char *what, const char *key, double lo,
                            double hi, double dflt, float *out, sem_err *err)
{
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        *out = (float)dflt;
        return SEM_OK;
    }
    if (!json_is_number(v)) return sem_errf(err, SEM_ECORRUPT, "%s: \"%s\" must be a number", what, key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return sem_errf(err, SEM_ECORRUPT, "%s: \"%s\" = %g is outside [%g, %g]", what, key, x, lo, hi);
    *out = (float)x;
    return SEM_OK;
}

static sem_status get_bool(const json_t *cfg, const char *what, const char *key, bool dflt,
                           bool *out, sem_err *err)
{
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return SEM_OK;
    }
    if (!json_is_boolean(v)) return sem_errf(err, SEM_ECORRUPT, "%s: \"%s\" must be true or false", what, key);
    *out = json_is_true(v);
    return SEM_OK;
}

static sem_status parse_arch(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    json_t *a = json_object_get(cfg, "architectures");
    const char *name = json_string_value(json_array_get(a, 0));
    if (!json_is_array(a) || !name) return sem_errf(err, SEM_ECORRUPT, "%s: \"architectures\" must be a non-empty list of strings", what);
    snprintf(s->arch_name, sizeof s->arch_name, "%s", name);
    const char *mt = json_string_value(json_object_get(cfg, "model_type"));
    snprintf(s->model_type, sizeof s->model_type, "%s", mt ? mt : "");
    for (size_t i = 0; i < sizeof arch_names / sizeof arch_names[0]; i++) {
        if (!strcmp(name, arch_names[i].hf_name)) {
            s->arch = arch_names[i].arch;
            return SEM_OK;
        }
    }
    return sem_errf(err, SEM_EUNSUPPORTED, "%s: unsupported architecture \"%.64s\" (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, DeepseekV2ForCausalLM, Gemma3ForCausalLM, Gemma3ForConditionalGeneration)", what, name);
}

static sem_status parse_dims(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    bool g = s->arch == MODEL_ARCH_GEMMA3; /* Gemma3TextConfig has defaults for everything */
    sem_status st;
    if ((st = get_int(cfg, what, "num_hidden_layers", 1, MODEL_MAX_LAYERS, g ? GEMMA3_LAYERS : -1, &s->n_layers, err)) ||
        (st = get_int(cfg, what, "hidden_size", 1, MODEL_MAX_HIDDEN, g ? GEMMA3_HIDDEN : -1, &s->hidden, err)) ||
        (st = get_int(cfg, what, "num_attention_heads", 1, MODEL_MAX_HEADS, g ? GEMMA3_HEADS : -1, &s->n_heads, err)) ||
        (st = get_int(cfg, what, "num_key_value_heads", 1, MODEL_MAX_HEADS, g ? GEMMA3_KV_HEADS : s->n_heads, &s->n_kv_heads, err)) ||
        (st = get_int(cfg, what, "intermediate_size", 1, 16 * MODEL_MAX_HIDDEN, g ? GEMMA3_INTERMEDIATE : -1, &s->intermediate, err)) ||
        (st = get_int(cfg, what, "vocab_size", 1, MODEL_MAX_VOCAB, g ? GEMMA3_VOCAB : -1, &s->vocab, err)) ||
        (st = get_int(cfg, what, "max_position_embeddings", 1, 1 << 24, g ? GEMMA3_MAX_POS : 2048, &s->max_pos, err)))
        return st;
    if (s->n_heads % s->n_kv_heads != 0)
        return sem_errf(err, SEM_ECORRUPT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what, s->n_heads, s->n_kv_heads);
    int64_t dflt_hd = g ? GEMMA3_HEAD_DIM : s->hidden % s->n_heads == 0 ? s->hidden / s->n_heads : -1;
    if (s->arch == MODEL_ARCH_DEEPSEEK2) dflt_hd = 2; /* replaced by qk_nope + qk_rope (parse_mla) */
    if ((st = get_int(cfg, what, "head_dim", 2, MODEL_MAX_HEAD_DIM, dflt_hd, &s->head_dim, err))) return st;
    if (s->head_dim % 2 != 0) return sem_errf(err, SEM_ECORRUPT, "%s: head_dim %d must be even for rope", what, s->head_dim);
    s->v_head_dim = s->head_dim;
    s->rope_dim = s->head_dim;
    s->rope_attn_factor = 1.0f;
    s->embed_scale = 1.0f;
    return SEM_OK;
}

/* hidden_act (or Gemma's hidden_activation) must be `want`. */
static sem_status check_act(const json_t *cfg, const char *what, const model_spec *s, const char *key,
                            const char *want, sem_err *err)
{
    const char *act = json_string_value(json_object_get(cfg, key));
    if (act && strcmp(act, want) != 0)
        return sem_errf(err, SEM_EUNSUPPORTED, "%s: %s \"%.32s\" is not supported for %s (only %s)", what, key, act, s->arch_name, want);
    return SEM_OK;
}

/* yarn_get_mscale of the DeepSeek-V2 code: the attention temperature
 * correction for a context stretched by `factor`. */
static double yarn_mscale(double factor, double mscale)
{
    return factor <= 1.0 ? 1.0 : 0.1 * mscale * log(factor) + 1.0;
}

/* YaRN as DeepSeek-V2 configures it. The cos/sin factor and the extra
 * softmax scale follow DeepSeek's own modeling_deepseek.py (the code its
 * checkpoints name in auto_map) and mlx-lm: cos and sin are multiplied by
 * mscale(factor, mscale) / mscale(factor, mscale_all_dim), and the softmax
 * scale by mscale(factor, mscale_all_dim)^2 when mscale_all_dim is set. */
static sem_status parse_yarn(const json_t *rs, const char *what, model_spec *s, sem_err *err)
{
    sem_status st;
    s->rope_scaling = MODEL_ROPE_YARN;
    if ((st = get_int(rs, what, "original_max_position_embeddings", 1, 1 << 24, 4096, &s->rope_orig_max_pos, err)) ||
        (st = get_float(rs, what, "beta_fast", 1e-3, 1e4, 32.0, &s->rope_beta_fast, err)) ||
        (st = get_float(rs, what, "beta_slow", 1e-3, 1e4, 1.0, &s->rope_beta_slow, err)) ||
        (st = get_float(rs, what, "mscale", 0.0, 100.0, 1.0, &s->rope_mscale, err)) ||
        (st = get_float(rs, what, "mscale_all_dim", 0.0, 100.0, 0.0, &s->rope_mscale_all_dim, err)))
        return st;
    if (s->rope_beta_slow >= s->rope_beta_fast)
        return sem_errf(err, SEM_ECORRUPT, "%s: rope_scaling beta_fast must exceed beta_slow", what);
    return SEM_OK;
}

static sem_status parse_rope(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    sem_status st;
    double theta = s->arch == MODEL_ARCH_GEMMA3 ? 1e6 : 10000.0; /* Gemma3TextConfig's default */
    if ((st = get_float(cfg, what, "rope_theta", 1.0, 1e12, theta, &s->rope_theta, err)) ||
        (st = get_float(cfg, what, "rms_norm_eps", 1e-12, 1.0, 1e-6, &s->rms_eps, err)))
        return st;
    json_t *rs = json_object_get(cfg, "rope_scaling");
    if (!rs || json_is_null(rs)) return SEM_OK;
    if (!json_is_object(rs)) return sem_errf(err, SEM_ECORRUPT, "%s: \"rope_scaling\" must be an object or null", what);
    const char *type = json_string_value(json_object_get(rs, "rope_type"));
    if (!type) type = json_string_value(json_object_get(rs, "type"));
    if (!type) return sem_errf(err, SEM_ECORRUPT, "%s: rope_scaling has no \"rope_type\"", what);
    if (!strcmp(type, "default")) return SEM_OK;
    if ((st = get_float(rs, what, "factor", 1e-3, 1e6, 1.0, &s->rope_factor, err))) return st;
    if (!strcmp(type, "linear")) {
        s->rope_scaling = MODEL_ROPE_LINEAR;
        return SEM_OK;
    }
    if (!strcmp(type, "yarn") && s->arch == MODEL_ARCH_DEEPSEEK2) return parse_yarn(rs, what, s, err);
    if (strcmp(type, "llama3") != 0)
        return sem_errf(err, SEM_EUNSUPPORTED, "%s: rope_scaling type \"%.32s\" is not supported for %s (default, linear, llama3%s)", what, type, s->arch_name, s->arch == MODEL_ARCH_DEEPSEEK2 ? ", yarn" : "");
    s->rope_scaling = MODEL_ROPE_LLAMA3;
    if ((st = get_float(rs, what, "low_freq_factor", 1e-6, 1e6, 1.0, &s->rope_low_freq_factor, err)) ||
        (st = get_float(rs, what, "high_freq_factor", 1e-6, 1e6, 4.0, &s->rope_high_freq_factor, err)) ||
        (st = get_int(rs, what, "original_max_position_embeddings", 1, 1 << 24, 8192, &s->rope_orig_max_pos, err)))
        return st;
    if (s->rope_high_freq_factor <= s->rope_low_freq_factor)
        return sem_errf(err, SEM_ECORRUPT, "%s: rope_scaling high_freq_factor must exceed low_freq_factor", what);
    return SEM_OK;
}

/* ===================================================================== */
/* DeepSeek-V2                                                            */
/* ===================================================================== */

static sem_status parse_mla(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    sem_status st;
    if ((st = get_int(cfg, what, "q_lora_rank", 0, MODEL_MAX_HIDDEN, 0, &s->q_lora_rank, err)) ||
        (st = get_int(cfg, what, "kv_lora_rank", 1, MODEL_MAX_HIDDEN, -1, &s->kv_lora_rank, err)) ||
        (st = get_int(cfg, what, "qk_nope_head_dim", 1, MODEL_MAX_HEAD_DIM, -1, &s->qk_nope_dim, err)) ||
        (st = get_int(cfg, what, "qk_rope_head_dim", 2, MODEL_MAX_HEAD_DIM, -1, &s->qk_rope_dim, err)) ||
        (st = get_int(cfg, what, "v_head_dim", 1, MODEL_MAX_HEAD_DIM, -1, &s->v_head_dim, err)))
        return st;
    if (s->qk_rope_dim % 2 != 0) return sem_errf(err, SEM_ECORRUPT, "%s: qk_rope_head_dim %d must be even for rope", what, s->qk_rope_dim);
    if (s->qk_nope_dim + s->qk_rope_dim > MODEL_MAX_HEAD_DIM)
        return sem_errf(err, SEM_ECORRUPT, "%s: qk_nope_head_dim + qk_rope_head_dim = %d exceeds %d", what, s->qk_nope_dim + s->qk_rope_dim, MODEL_MAX_HEAD_DIM);
    /* Every query head reads the one shared latent (the KV cache). */
    s->head_dim = s->qk_nope_dim + s->qk_rope_dim;
    s->n_kv_heads = 1;
    s->rope_dim = s->qk_rope_dim;
    s->rope_interleaved = true;
    return SEM_OK;
}

static sem_status check_string(const json_t *cfg, const char *what, const char *key, const char *const *ok,
                               size_t n_ok, const char **out, sem_err *err)
{
    json_t *v = json_object_get(cfg, key);
    *out = ok[0];
    if (!v || json_is_null(v)) return SEM_OK;
    const char *str = json_string_value(v);
    for (size_t i = 0; str && i < n_ok; i++)
        if (!strcmp(str, ok[i])) {
            *out = ok[i];
            return SEM_OK;
        }
    return sem_errf(err, SEM_EUNSUPPORTED, "%s: \"%s\" must be one of the supported values (first: \"%s\")", what, key, ok[0]);
}

static sem_status parse_moe(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    sem_status st;
    if ((st = get_int(cfg, what, "n_routed_experts", 0, MODEL_MAX_EXPERTS, 0, &s->n_experts, err))) return st;
    if (s->n_experts == 0) return SEM_OK; /* a dense model */
    static const char *const methods[] = {"greedy", "gready" /* mlx-lm's default spelling */, "group_limited_greedy"};
    static const char *const scoring[] = {"softmax"};
    const char *method, *score;
    if ((st = get_int(cfg, what, "num_experts_per_tok", 1, MODEL_MAX_EXPERTS_USED, -1, &s->n_experts_used, err)) ||
        (st = get_int(cfg, what, "n_shared_experts", 0, MODEL_MAX_EXPERTS, 0, &s->n_shared_experts, err)) ||
        (st = get_int(cfg, what, "moe_intermediate_size", 1, 16 * MODEL_MAX_HIDDEN, -1, &s->moe_intermediate, err)) ||
        (st = get_int(cfg, what, "first_k_dense_replace", 0, MODEL_MAX_LAYERS, 0, &s->first_dense, err)) ||
        (st = get_int(cfg, what, "moe_layer_freq", 1, MODEL_MAX_LAYERS, 1, &s->moe_layer_freq, err)) ||
        (st = get_float(cfg, what, "routed_scaling_factor", 0.0, 1e6, 1.0, &s->routed_scaling, err)) ||
        (st = get_bool(cfg, what, "norm_topk_prob", false, &s->norm_topk_prob, err)) ||
        (st = check_string(cfg, what, "topk_method", methods, 3, &method, err)) ||
        (st = check_string(cfg, what, "scoring_func", scoring, 1, &score, err)))
        return st;
    if (s->n_experts_used > s->n_experts)
        return sem_errf(err, SEM_ECORRUPT, "%s: num_experts_per_tok %d exceeds n_routed_experts %d", what, s->n_experts_used, s->n_experts);
    s->n_expert_groups = s->n_groups_used = 1;
    if (strcmp(method, "group_limited_greedy") != 0) return SEM_OK;
    if ((st = get_int(cfg, what, "n_group", 1, MODEL_MAX_EXPERTS, -1, &s->n_expert_groups, err)) ||
        (st = get_int(cfg, what, "topk_group", 1, MODEL_MAX_EXPERTS, -1, &s->n_groups_used, err)))
        return st;
    if (s->n_experts % s->n_expert_groups != 0 || s->n_groups_used > s->n_expert_groups ||
        s->n_experts_used > s->n_groups_used * (s->n_experts / s->n_expert_groups))
        return sem_errf(err, SEM_ECORRUPT, "%s: n_group %d / topk_group %d do not fit %d experts with %d per token", what,
                        s->n_expert_groups, s->n_groups_used, s->n_experts, s->n_experts_used);
    return SEM_OK;
}

static sem_status parse_deepseek2(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    sem_status st;
    bool bias = false;
    if ((st = check_act(cfg, what, s, "hidden_act", "silu", err)) || (st = parse_mla(cfg, what, s, err)) ||
        (st = parse_moe(cfg, what, s, err)) || (st = get_bool(cfg, what, "attention_bias", false, &bias, err)))
        return st;
    if (bias) return sem_errf(err, SEM_EUNSUPPORTED, "%s: attention_bias = true is not supported for %s", what, s->arch_name);
    return SEM_OK;
}

/* Derived after the rope block: the softmax scale and the YaRN factors. */
static void derive_deepseek2(model_spec *s)
{
    double scale = 1.0 / sqrt((double)s->head_dim);
    if (s->rope_scaling == MODEL_ROPE_YARN) {
        double f = s->rope_factor;
        s->rope_attn_factor = (float)(yarn_mscale(f, s->rope_mscale) / yarn_mscale(f, s->rope_mscale_all_dim));
        if (s->rope_mscale_all_dim != 0.0f) {
            double m = yarn_mscale(f, s->rope_mscale_all_dim);
            scale *= m * m;
        }
    }
    s->attn_scale = (float)scale;
}

/* ===================================================================== */
/* Gemma 3                                                                */
/* ===================================================================== */

/* Sliding layers from "layer_types" when present, else from
 * sliding_window_pattern: layer l slides unless (l + 1) % pattern == 0. */
static sem_status parse_layer_types(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    json_t *lt = json_object_get(cfg, "layer_types");
    if (!lt || json_is_null(lt)) {
        int32_t pattern;
        sem_status st = get_int(cfg, what, "sliding_window_pattern", 1, MODEL_MAX_LAYERS, GEMMA3_SLIDING_PATTERN, &pattern, err);
        if (st) return st;
        for (int32_t l = 0; l < s->n_layers; l++) s->layer_sliding[l] = (l + 1) % pattern != 0;
        return SEM_OK;
    }
    if (!json_is_array(lt) || json_array_size(lt) != (size_t)s->n_layers)
        return sem_errf(err, SEM_ECORRUPT, "%s: \"layer_types\" must be a list of num_hidden_layers (%d) strings", what, s->n_layers);
    for (int32_t l = 0; l < s->n_layers; l++) {
        const char *t = json_string_value(json_array_get(lt, (size_t)l));
        if (t && !strcmp(t, "sliding_attention")) s->layer_sliding[l] = true;
        else if (t && !strcmp(t, "full_attention")) s->layer_sliding[l] = false;
        else return sem_errf(err, SEM_ECORRUPT, "%s: layer_types[%d] must be \"sliding_attention\" or \"full_attention\"", what, l);
    }
    return SEM_OK;
}

/* sqrt(hidden) as the checkpoint's dtype holds it: transformers casts the
 * embedding scale to the weights' dtype (bf16 turns sqrt(3072) = 55.43
 * into 55.5), and mlx-lm always uses bf16. */
static float gemma_embed_scale(const json_t *cfg, const json_t *top, int32_t hidden)
{
    float x = sqrtf((float)hidden);
    const char *dt = json_string_value(json_object_get(cfg, "torch_dtype"));
    if (!dt) dt = json_string_value(json_object_get(cfg, "dtype"));
    if (!dt) dt = json_string_value(json_object_get(top, "torch_dtype"));
    if (!dt) dt = json_string_value(json_object_get(top, "dtype"));
    if (dt && !strcmp(dt, "bfloat16")) return kn_bf16_to_f32(kn_f32_to_bf16(x));
    if (dt && !strcmp(dt, "float16")) return kn_f16_to_f32(kn_f32_to_f16(x));
    return x;
}

static sem_status parse_gemma3(const json_t *cfg, const json_t *top, const char *what, model_spec *s, sem_err *err)
{
    sem_status st;
    bool bidir = false, bias = false;
    float qpas;
    if ((st = check_act(cfg, what, s, "hidden_activation", "gelu_pytorch_tanh", err)) ||
        (st = check_act(cfg, what, s, "hidden_act", "gelu_pytorch_tanh", err)) ||
        (st = get_float(cfg, what, "query_pre_attn_scalar", 1e-6, 1e9, 256.0, &qpas, err)) ||
        (st = get_int(cfg, what, "sliding_window", 1, 1 << 24, GEMMA3_SLIDING_WINDOW, &s->sliding_window, err)) ||
        (st = get_float(cfg, what, "rope_local_base_freq", 1.0, 1e12, 10000.0, &s->rope_local_theta, err)) ||
        (st = get_float(cfg, what, "attn_logit_softcapping", 1e-6, 1e9, 0.0, &s->attn_softcap, err)) ||
        (st = get_float(cfg, what, "final_logit_softcapping", 1e-6, 1e9, 0.0, &s->final_softcap, err)) ||
        (st = get_bool(cfg, what, "use_bidirectional_attention", false, &bidir, err)) ||
        (st = get_bool(cfg, what, "attention_bias", false, &bias, err)) || (st = parse_layer_types(cfg, what, s, err)))
        return st;
    if (bidir || bias)
        return sem_errf(err, SEM_EUNSUPPORTED, "%s: %s = true is not supported for %s", what, bidir ? "use_bidirectional_attention" : "attention_bias", s->arch_name);
    s->act = MODEL_ACT_GELU_TANH;
    s->attn_scale = (float)(1.0 / sqrt((double)qpas));
    s->norm_offset = 1.0f;
    s->qk_norm = s->sandwich_norms = true;
    s->embed_scale = gemma_embed_scale(cfg, top, s->hidden);
    return SEM_OK;
}

/* ===================================================================== */
/* The spec                                                               */
/* ===================================================================== */

static sem_status check_quant(const char *what, const char *module, int bits, int gs, sem_err *err)
{
    if (bits != 4 && bits != 8)
        return sem_errf(err, SEM_EUNSUPPORTED, "%s: quantization%s%s bits %d is not supported (4 or 8)", what, module ? " of " : "", module ? module : "", bits);
    if (gs != 32 && gs != 64 && gs != 128)
        return sem_errf(err, SEM_EUNSUPPORTED, "%s: quantization%s%s group_size %d is not supported (32, 64, 128)", what, module ? " of " : "", module ? module : "", gs);
    return SEM_OK;
}

static sem_status parse_override(const char *what, const char *key, const json_t *v, model_spec *s,
                                 sem_err *err)
{
    if (s->n_quant_overrides >= MODEL_MAX_QUANT_OVERRIDES) return sem_errf(err, SEM_ELIMIT, "%s: too many quantization overrides", what);
    model_quant_override o = {0};
    if (json_is_object(v)) {
        int32_t b, g;
        sem_status st;
        if ((st = get_int(v, what, "bits", 1, 16, -1, &b, err)) || (st = get_int(v, what, "group_size", 1, 4096, -1, &g, err)) ||
            (st = check_quant(what, key, b, g, err)))
            return st;
        o.bits = b;
        o.group_size = g;
    } else if (!json_is_false(v)) {
        return sem_errf(err, SEM_ECORRUPT, "%s: quantization override \"%.64s\" must be an object or false", what, key);
    }
    if (!(o.module = sem_strdup(key))) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", what);
    s->quant_overrides[s->n_quant_overrides++] = o;
    return SEM_OK;
}

static sem_status parse_quant(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    json_t *q = json_object_get(cfg, "quantization");
    if (!q) q = json_object_get(cfg, "quantization_config");
    if (!q || json_is_null(q)) return SEM_OK;
    if (!json_is_object(q)) return sem_errf(err, SEM_ECORRUPT, "%s: \"quantization\" must be an object", what);
    int32_t bits, gs;
    sem_status st;
    if ((st = get_int(q, what, "bits", 1, 16, -1, &bits, err)) || (st = get_int(q, what, "group_size", 1, 4096, -1, &gs, err)) ||
        (st = check_quant(what, NULL, bits, gs, err)))
        return st;
    const char *mode = json_string_value(json_object_get(q, "mode"));
    if (mode && strcmp(mode, "affine") != 0)
        return sem_errf(err, SEM_EUNSUPPORTED, "%s: quantization mode \"%.32s\" is not supported (affine)", what, mode);
    s->quant_bits = bits;
    s->quant_group_size = gs;
    s->quant_overrides = sem_calloc(json_object_size(q), sizeof *s->quant_overrides);
    if (!s->quant_overrides) return sem_errf(err, SEM_ENOMEM, "%s: out of memory", what);
    const char *key;
    json_t *v;
    json_object_foreach(q, key, v) {
        if (!strcmp(key, "bits") || !strcmp(key, "group_size") || !strcmp(key, "mode")) continue;
        if ((st = parse_override(what, key, v, s, err))) return st;
    }
    return SEM_OK;
}

static sem_status parse_special_ids(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    sem_status st = get_int(cfg, what, "bos_token_id", -1, MODEL_MAX_VOCAB, -1, &s->bos_id, err);
    if (st) return st;
    json_t *e = json_object_get(cfg, "eos_token_id");
    if (json_is_integer(e)) e = json_pack("[O]", e);
    else json_incref(e);
    if (e && !json_is_array(e) && !json_is_null(e)) {
        json_decref(e);
        return sem_errf(err, SEM_ECORRUPT, "%s: \"eos_token_id\" must be an integer or a list", what);
    }
    size_t i;
    json_t *v;
    json_array_foreach(e, i, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= s->vocab || s->n_eos >= MODEL_MAX_EOS) {
            json_decref(e);
            return sem_errf(err, SEM_ECORRUPT, "%s: eos_token_id entry %zu is not a token id below vocab_size", what, i);
        }
        s->eos_ids[s->n_eos++] = (int32_t)id;
    }
    json_decref(e);
    return SEM_OK;
}

static sem_status parse_llama(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    bool attn_bias = false;
    sem_status st;
    if ((st = check_act(cfg, what, s, "hidden_act", "silu", err)) ||
        (st = get_bool(cfg, what, "attention_bias", false, &attn_bias, err)))
        return st;
    if (attn_bias && s->arch == MODEL_ARCH_LLAMA)
        return sem_errf(err, SEM_EUNSUPPORTED, "%s: attention_bias = true is not supported for %s", what, s->arch_name);
    s->qkv_bias = s->arch == MODEL_ARCH_QWEN2;
    s->attn_scale = (float)(1.0 / sqrt((double)s->head_dim));
    return SEM_OK;
}

static sem_status parse_family(const json_t *text, const json_t *top, const char *what, model_spec *s, sem_err *err)
{
    switch (s->arch) {
    case MODEL_ARCH_DEEPSEEK2: return parse_deepseek2(text, what, s, err);
    case MODEL_ARCH_GEMMA3: return parse_gemma3(text, top, what, s, err);
    default: return parse_llama(text, what, s, err);
    }
}

/* The object that holds the language model's fields: the config itself, or
 * its "text_config" (Gemma3ForConditionalGeneration). */
static sem_status text_config(const json_t *cfg, const char *what, const model_spec *s, const json_t **out,
                              sem_err *err)
{
    *out = cfg;
    if (strcmp(s->arch_name, "Gemma3ForConditionalGeneration") != 0) return SEM_OK;
    *out = json_object_get(cfg, "text_config");
    if (!json_is_object(*out)) return sem_errf(err, SEM_ECORRUPT, "%s: \"text_config\" must be an object for %s", what, s->arch_name);
    return SEM_OK;
}

sem_status model_spec_parse(const json_t *cfg, const char *what, model_spec *out, sem_err *err)
{
    if (!json_is_object(cfg)) return sem_errf(err, SEM_ECORRUPT, "%s: not a JSON object", what);
    model_spec s = {0};
    const json_t *text = cfg;
    sem_status st;
    if ((st = parse_arch(cfg, what, &s, err)) || (st = text_config(cfg, what, &s, &text, err)) ||
        (st = parse_dims(text, what, &s, err)) || (st = parse_family(text, cfg, what, &s, err)) ||
        (st = parse_rope(text, what, &s, err)) || (st = parse_quant(cfg, what, &s, err)))
        goto fail;
    /* token ids sit at the top of a multimodal config, else in text_config */
    bool top_ids = json_object_get(cfg, "eos_token_id") || json_object_get(cfg, "bos_token_id");
    if ((st = parse_special_ids(top_ids ? cfg : text, what, &s, err)) ||
        (st = get_bool(text, what, "tie_word_embeddings", s.arch == MODEL_ARCH_GEMMA3, &s.tied_embeddings, err)))
        goto fail;
    if (s.arch == MODEL_ARCH_DEEPSEEK2) derive_deepseek2(&s);
    *out = s;
    return SEM_OK;
fail:
    model_spec_fini(&s);
    return st;
}

sem_status model_spec_load(const char *dir, model_spec *out, sem_err *err)
{
    char path[4096];
    if (!fs_join(path, sizeof path, dir, "config.json")) return sem_errf(err, SEM_EINVAL, "%s: path too long", dir);
    json_t *cfg;
    sem_status st = js_load_file(path, MODEL_CONFIG_MAX_BYTES, &cfg, err);
    if (st == SEM_ENOTFOUND) return sem_errf(err, st, "%s: no config.json (is this a Hugging Face model directory?)", dir);
    if (st != SEM_OK) return st;
    st = model_spec_parse(cfg, path, out, err);
    json_decref(cfg);
    return st;
}

void model_spec_fini(model_spec *s)
{
    for (size_t i = 0; i < s->n_quant_overrides; i++) free(s->quant_overrides[i].module);
    free(s->quant_overrides);
    s->quant_overrides = NULL;
    s->n_quant_overrides = 0;
}

void model_spec_module_quant(const model_spec *s, const char *module, int *bits, int *group_size)
{
    *bits = s->quant_bits;
    *group_size = s->quant_group_size;
    for (size_t i = 0; i < s->n_quant_overrides; i++) {
        if (!strcmp(s->quant_overrides[i].module, module)) {
            *bits = s->quant_overrides[i].bits;
            *group_size = s->quant_overrides[i].group_size;
        }
    }
}

/* Llama 3.1's scaling keeps high frequencies, divides low ones by `factor`,
 * and blends linearly in between (by wavelength against the original
 * context length). */
static double llama3_scale(const model_spec *s, double inv_freq)
{
    double old = s->rope_orig_max_pos, lo = s->rope_low_freq_factor, hi = s->rope_high_freq_factor;
    double wavelen = 2.0 * M_PI / inv_freq;
    if (wavelen < old / hi) return inv_freq;
    if (wavelen > old / lo) return inv_freq / s->rope_factor;
    double smooth = (old / wavelen - lo) / (hi - lo);
    return (1.0 - smooth) * inv_freq / s->rope_factor + smooth * inv_freq;
}

/* YaRN (DeepSeek-V2): dims whose wavelength fits the original context many
 * times (fast, beyond beta_fast rotations) keep their frequency, slow ones
 * (below beta_slow rotations) are interpolated (divided by factor), with a
 * linear ramp over the dims in between. */
static double yarn_dim(const model_spec *s, double n_rot)
{
    return s->rope_dim * log(s->rope_orig_max_pos / (n_rot * 2.0 * M_PI)) / (2.0 * log((double)s->rope_theta));
}

static void yarn_inv_freq(const model_spec *s, float *out)
{
    int half = s->rope_dim / 2;
    double lo = floor(yarn_dim(s, s->rope_beta_fast)), hi = ceil(yarn_dim(s, s->rope_beta_slow));
    lo = lo < 0 ? 0 : lo;
    hi = hi > s->rope_dim - 1 ? s->rope_dim - 1 : hi;
    if (lo == hi) hi += 0.001;
    for (int i = 0; i < half; i++) {
        double extra = 1.0 / pow((double)s->rope_theta, (2.0 * i) / s->rope_dim);
        double inter = extra / s->rope_factor;
        double ramp = (i - lo) / (hi - lo);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double keep = 1.0 - ramp; /* weight of the unscaled frequency */
        out[i] = (float)(inter * (1.0 - keep) + extra * keep);
    }
}

void model_spec_rope_inv_freq(const model_spec *s, bool local, float *out)
{
    if (!local && s->rope_scaling == MODEL_ROPE_YARN) {
        yarn_inv_freq(s, out);
        return;
    }
    int half = s->rope_dim / 2;
    double theta = local ? s->rope_local_theta : s->rope_theta;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow(theta, (2.0 * i) / s->rope_dim);
        if (!local && s->rope_scaling == MODEL_ROPE_LINEAR) f /= s->rope_factor;
        else if (!local && s->rope_scaling == MODEL_ROPE_LLAMA3) f = llama3_scale(s, f);
        out[i] = (float)f;
    }
}

bool model_spec_layer_is_moe(const model_spec *s, int32_t l)
{
    return s->n_experts > 0 && l >= s->first_dense && l % s->moe_layer_freq == 0;
}

model_kv_geometry model_spec_kv_geometry(const model_spec *s)
{
    if (s->kv_lora_rank > 0) /* MLA: the latent [c | k_pe], and c as V */
        return (model_kv_geometry){s->n_layers, 1, s->kv_lora_rank + s->qk_rope_dim, s->kv_lora_rank, 0, s->layer_sliding};
    int32_t n_sliding = 0;
    for (int32_t l = 0; l < s->n_layers; l++) n_sliding += s->layer_sliding[l];
    int32_t window = s->sliding_window > 0 && n_sliding > 0 && n_sliding < s->n_layers ? s->sliding_window : 0;
    return (model_kv_geometry){s->n_layers, s->n_kv_heads, s->head_dim, s->v_head_dim, window, s->layer_sliding};
}
