/* spec.c - config.json -> model_spec, the one place where a model's facts
 * are derived: architecture, dimensions, rope, norms, quantization, and
 * from those the KV geometry and the rope frequencies.
 *
 * Every field is range-checked against the MODEL_MAX_* limits, and cross
 * checks (heads divide evenly, head_dim even for rope, supported bits and
 * group sizes) happen here, so later code can assert instead of check.
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
    return sem_errf(err, SEM_EUNSUPPORTED, "%s: unsupported architecture \"%.64s\" (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)", what, name);
}

static sem_status parse_dims(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    sem_status st;
    if ((st = get_int(cfg, what, "num_hidden_layers", 1, MODEL_MAX_LAYERS, -1, &s->n_layers, err)) ||
        (st = get_int(cfg, what, "hidden_size", 1, MODEL_MAX_HIDDEN, -1, &s->hidden, err)) ||
        (st = get_int(cfg, what, "num_attention_heads", 1, MODEL_MAX_HEADS, -1, &s->n_heads, err)) ||
        (st = get_int(cfg, what, "num_key_value_heads", 1, MODEL_MAX_HEADS, s->n_heads, &s->n_kv_heads, err)) ||
        (st = get_int(cfg, what, "intermediate_size", 1, 16 * MODEL_MAX_HIDDEN, -1, &s->intermediate, err)) ||
        (st = get_int(cfg, what, "vocab_size", 1, MODEL_MAX_VOCAB, -1, &s->vocab, err)) ||
        (st = get_int(cfg, what, "max_position_embeddings", 1, 1 << 24, 2048, &s->max_pos, err)))
        return st;
    if (s->n_heads % s->n_kv_heads != 0)
        return sem_errf(err, SEM_ECORRUPT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", what, s->n_heads, s->n_kv_heads);
    int64_t dflt_hd = s->hidden % s->n_heads == 0 ? s->hidden / s->n_heads : -1;
    if ((st = get_int(cfg, what, "head_dim", 2, MODEL_MAX_HEAD_DIM, dflt_hd, &s->head_dim, err))) return st;
    if (s->head_dim % 2 != 0) return sem_errf(err, SEM_ECORRUPT, "%s: head_dim %d must be even for rope", what, s->head_dim);
    s->v_head_dim = s->head_dim;
    const char *act = json_string_value(json_object_get(cfg, "hidden_act"));
    if (act && strcmp(act, "silu") != 0)
        return sem_errf(err, SEM_EUNSUPPORTED, "%s: hidden_act \"%.32s\" is not supported for %s (only silu)", what, act, s->arch_name);
    return SEM_OK;
}

static sem_status parse_rope(const json_t *cfg, const char *what, model_spec *s, sem_err *err)
{
    sem_status st;
    if ((st = get_float(cfg, what, "rope_theta", 1.0, 1e12, 10000.0, &s->rope_theta, err)) ||
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
    if (strcmp(type, "llama3") != 0)
        return sem_errf(err, SEM_EUNSUPPORTED, "%s: rope_scaling type \"%.32s\" is not supported (default, linear, llama3)", what, type);
    s->rope_scaling = MODEL_ROPE_LLAMA3;
    if ((st = get_float(rs, what, "low_freq_factor", 1e-6, 1e6, 1.0, &s->rope_low_freq_factor, err)) ||
        (st = get_float(rs, what, "high_freq_factor", 1e-6, 1e6, 4.0, &s->rope_high_freq_factor, err)) ||
        (st = get_int(rs, what, "original_max_position_embeddings", 1, 1 << 24, 8192, &s->rope_orig_max_pos, err)))
        return st;
    if (s->rope_high_freq_factor <= s->rope_low_freq_factor)
        return sem_errf(err, SEM_ECORRUPT, "%s: rope_scaling high_freq_factor must exceed low_freq_factor", what);
    return SEM_OK;
}

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

sem_status model_spec_parse(const json_t *cfg, const char *what, model_spec *out, sem_err *err)
{
    if (!json_is_object(cfg)) return sem_errf(err, SEM_ECORRUPT, "%s: not a JSON object", what);
    model_spec s = {0};
    sem_status st;
    if ((st = parse_arch(cfg, what, &s, err)) || (st = parse_dims(cfg, what, &s, err)) ||
        (st = parse_rope(cfg, what, &s, err)) || (st = parse_quant(cfg, what, &s, err)) ||
        (st = parse_special_ids(cfg, what, &s, err)))
        goto fail;
    bool attn_bias = false;
    if ((st = get_bool(cfg, what, "tie_word_embeddings", false, &s.tied_embeddings, err)) ||
        (st = get_bool(cfg, what, "attention_bias", false, &attn_bias, err)))
        goto fail;
    if (attn_bias && s.arch == MODEL_ARCH_LLAMA) {
        st = sem_errf(err, SEM_EUNSUPPORTED, "%s: attention_bias = true is not supported for %s", what, s.arch_name);
        goto fail;
    }
    s.qkv_bias = s.arch == MODEL_ARCH_QWEN2;
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

void model_spec_rope_inv_freq(const model_spec *s, float *out)
{
    int half = s->head_dim / 2;
    for (int i = 0; i < half; i++) {
        double f = 1.0 / pow((double)s->rope_theta, (2.0 * i) / s->head_dim);
        if (s->rope_scaling == MODEL_ROPE_LINEAR) f /= s->rope_factor;
        else if (s->rope_scaling == MODEL_ROPE_LLAMA3) f = llama3_scale(s, f);
        out[i] = (float)f;
    }
}

model_kv_geometry model_spec_kv_geometry(const model_spec *s)
{
    return (model_kv_geometry){s->n_layers, s->n_kv_heads, s->head_dim, s->v_head_dim};
}
