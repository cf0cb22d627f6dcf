"""ref_gemma3: the numpy reference forward pass of Gemma 3's text model
(Gemma3ForCausalLM, or the language model of a Gemma3ForConditionalGeneration
checkpoint), float64, written from Hugging Face transformers'
modeling_gemma3 / configuration_gemma3:

  x = embed_tokens[ids] * sqrt(hidden), the scale cast to the checkpoint
      dtype (config torch_dtype: bf16 turns sqrt(3072) into 55.5)
  norm(x, w) = x / sqrt(mean(x^2) + eps) * (1 + w)
  per layer (sliding when layer_types says so, else when
             (i + 1) % sliding_window_pattern != 0):
    h = norm(x, input_layernorm)
    q, k, v = h Wq^T, h Wk^T, h Wv^T  -> heads of head_dim
    q, k = norm(q, q_norm), norm(k, k_norm)          (per head)
    rotate-half rope: sliding layers base rope_local_base_freq, unscaled;
                      global layers base rope_theta with rope_scaling
                      (linear: inv_freq / factor)
    scores = q.k * query_pre_attn_scalar^-1/2, softcapped by
             attn_logit_softcapping when set; causal, and sliding layers
             only see keys j > i - sliding_window
    x += norm(attn Wo^T, post_attention_layernorm)
    h = norm(x, pre_feedforward_layernorm)
    x += norm((gelu_tanh(h Wg^T) * h Wu^T) Wd^T, post_feedforward_layernorm)
  logits = norm(x, norm) . embed_tokens^T (tied), then
           final_logit_softcapping * tanh(logits / cap) when set

Missing text fields take Gemma3TextConfig's defaults.

Single-threaded; weights dequantized once.
"""

import math

import numpy as np

from . import safetensors_np as stn
from .reference import (F64_PARAM_LIMIT, KVCache, Model, ModelError, apply_rope, attend,
                        read_config, rope_cos_sin)

TEXT_DEFAULTS = dict(vocab_size=262208, hidden_size=2304, intermediate_size=9216,
                     num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4,
                     head_dim=256, max_position_embeddings=131072, rms_norm_eps=1e-6,
                     rope_theta=1000000.0, query_pre_attn_scalar=256, sliding_window=4096,
                     final_logit_softcapping=None, attn_logit_softcapping=None,
                     rope_scaling=None, rope_local_base_freq=10000.0, sliding_window_pattern=6,
                     tie_word_embeddings=True, hidden_activation="gelu_pytorch_tanh")


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def norm1(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * (1.0 + w)


def round_scalar(x, dtype):
    if dtype == "bfloat16":
        return float(stn.bf16_to_f32(stn.f32_to_bf16(np.array([x], dtype=np.float32)))[0])
    if dtype == "float16":
        return float(np.float16(x))
    return x


class Gemma3(Model):
    def __init__(self, path, dtype=None):  # noqa: super().__init__ is Llama's
        self.path = str(path)
        top = read_config(path)
        multi = "Gemma3ForConditionalGeneration" in (top.get("architectures") or [])
        tc = top.get("text_config", {}) if multi else top
        c = dict(TEXT_DEFAULTS)
        c.update({k: v for k, v in tc.items() if v is not None or k.endswith("softcapping")})
        self.cfg = c
        self.arch = "gemma3"
        self.prefix = "language_model.model." if multi else "model."
        self.hidden, self.layers = int(c["hidden_size"]), int(c["num_hidden_layers"])
        self.heads, self.kv_heads = int(c["num_attention_heads"]), int(c["num_key_value_heads"])
        self.head_dim, self.vocab = int(c["head_dim"]), int(c["vocab_size"])
        self.intermediate, self.eps = int(c["intermediate_size"]), float(c["rms_norm_eps"])
        self.tied = bool(c["tie_word_embeddings"])
        act = c.get("hidden_activation") or c.get("hidden_act")
        if act != "gelu_pytorch_tanh":
            raise ModelError("hidden_activation %r unsupported" % act)
        self.scale = float(c["query_pre_attn_scalar"]) ** -0.5
        self.window = int(c["sliding_window"])
        self.attn_cap = c.get("attn_logit_softcapping")
        self.final_cap = c.get("final_logit_softcapping")
        if c.get("layer_types"):
            self.sliding = [t == "sliding_attention" for t in c["layer_types"]]
        else:
            pat = int(c["sliding_window_pattern"])
            self.sliding = [(i + 1) % pat != 0 for i in range(self.layers)]
        hd = self.head_dim
        idx = np.arange(0, hd, 2, dtype=np.float64) / hd
        self.inv_local = 1.0 / (float(c["rope_local_base_freq"]) ** idx)
        self.inv_global = 1.0 / (float(c["rope_theta"]) ** idx)
        rs = c.get("rope_scaling")
        if rs:
            kind = rs.get("rope_type", rs.get("type"))
            if kind == "linear":
                self.inv_global = self.inv_global / float(rs["factor"])
            elif kind != "default":
                raise ModelError("rope_scaling %r unsupported for Gemma 3" % kind)
        dt = tc.get("torch_dtype") or tc.get("dtype") or top.get("torch_dtype") or top.get("dtype")
        self.embed_scale = round_scalar(float(np.float32(math.sqrt(self.hidden))), dt)
        self.quant = top.get("quantization")
        self.weights = stn.open_weights(self.path)
        n = sum(int(np.prod(self.weights.shape(t))) for t in self.weights.names())
        self.dtype = dtype or (np.float64 if n <= F64_PARAM_LIMIT else np.float32)
        self._load()
        self.weights.close()

    def _load(self):
        H, V, hd, I = self.hidden, self.vocab, self.head_dim, self.intermediate
        q, kv, pre = self.heads * hd, self.kv_heads * hd, self.prefix
        self.embed = self.matrix(pre + "embed_tokens", V, H)
        self.lm_head = self.embed if self.tied else self.matrix("lm_head", V, H)
        self.norm = self.vector(pre + "norm.weight", H)
        self.L = []
        for i in range(self.layers):
            p = pre + "layers.%d." % i
            a, m = p + "self_attn.", p + "mlp."
            self.L.append({
                "in_norm": self.vector(p + "input_layernorm.weight", H),
                "post_attn": self.vector(p + "post_attention_layernorm.weight", H),
                "pre_ff": self.vector(p + "pre_feedforward_layernorm.weight", H),
                "post_ff": self.vector(p + "post_feedforward_layernorm.weight", H),
                "q_norm": self.vector(a + "q_norm.weight", hd),
                "k_norm": self.vector(a + "k_norm.weight", hd),
                "wq": self.matrix(a + "q_proj", q, H), "wk": self.matrix(a + "k_proj", kv, H),
                "wv": self.matrix(a + "v_proj", kv, H), "wo": self.matrix(a + "o_proj", H, q),
                "wg": self.matrix(m + "gate_proj", I, H), "wu": self.matrix(m + "up_proj", I, H),
                "wd": self.matrix(m + "down_proj", H, I)})

    def forward(self, tokens, cache, last_only=False):
        ids = np.asarray(tokens, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0 or ids.min() < 0 or ids.max() >= self.vocab:
            raise ModelError("need a non-empty 1-D list of token ids below %d" % self.vocab)
        T, pos0, hd, eps = ids.size, cache.length, self.head_dim, self.eps
        pos = np.arange(pos0, pos0 + T)
        rope = {True: rope_cos_sin(self.inv_local, pos), False: rope_cos_sin(self.inv_global, pos)}
        x = self.embed[ids].astype(np.float64) * self.embed_scale
        for li, L in enumerate(self.L):
            sl = self.sliding[li]
            h = norm1(x, L["in_norm"], eps)
            q = norm1((h @ L["wq"].T).reshape(T, self.heads, hd), L["q_norm"], eps)
            k = norm1((h @ L["wk"].T).reshape(T, self.kv_heads, hd), L["k_norm"], eps)
            v = (h @ L["wv"].T).reshape(T, self.kv_heads, hd)
            q, k = apply_rope(q, *rope[sl]), apply_rope(k, *rope[sl])
            K, Vv = cache.append(li, k, v)
            a = attend(q, K, Vv, pos0, self.scale, self.window if sl else None, self.attn_cap)
            x = x + norm1(a @ L["wo"].T, L["post_attn"], eps)
            h = norm1(x, L["pre_ff"], eps)
            y = (gelu_tanh(h @ L["wg"].T) * (h @ L["wu"].T)) @ L["wd"].T
            x = x + norm1(y, L["post_ff"], eps)
        cache.length += T
        if last_only:
            x = x[-1:]
        logits = self._logits(norm1(x, self.norm, eps))
        if self.final_cap:
            logits = self.final_cap * np.tanh(logits / self.final_cap)
        return logits

    def new_cache(self):
        return KVCache(self.layers)
