"""reference: an independent numpy forward pass for LlamaForCausalLM and
Qwen2ForCausalLM, following Hugging Face transformers' semantics, used to
check Semantic's C engine. open_model() also serves DeepseekV2ForCausalLM
(ref_deepseek2.py) and Gemma 3 (ref_gemma3.py), which reuse this file's
weight loading, attend() and greedy decoding.

What it computes (all in float64):
  x = embed_tokens[ids]
  per layer:  h = rmsnorm(x) * input_layernorm
              q, k, v = h Wq^T (+bq), h Wk^T (+bk), h Wv^T (+bv)
              rotate-half RoPE on q, k (rope_theta; rope_scaling llama3)
              causal GQA attention, q head i reads kv head i // (heads/kv_heads),
              scores scaled by 1/sqrt(head_dim)
              x += attn Wo^T;  h = rmsnorm(x) * post_attention_layernorm
              x += (silu(h Wg^T) * (h Wu^T)) Wd^T
  logits = rmsnorm(x) * norm . (lm_head or embed_tokens when tied)^T
  rmsnorm(x) = x / sqrt(mean(x^2) + eps).

Weights are read with safetensors_np (single file or sharded dir); F16 and
BF16 are converted exactly; MLX-quantized modules (X.weight U32 + X.scales
+ X.biases) are dequantized as scale * q + bias, with bits/group_size from
config "quantization" (per-module entries override the default; a module
without X.scales is float). Biases are used whenever the tensors exist
(qwen2 q/k/v; llama only with attention_bias / mlp_bias).

The KV cache lets greedy decoding run one token at a time; positions are
implicit (cache length). Single-threaded; a Model holds the dequantized
weights (float64, or float32 for models over ~300M parameters to bound
memory) for its whole life.
"""

import json
import math
import os

import numpy as np

from . import mlx_quant
from . import safetensors_np as stn

F64_PARAM_LIMIT = 300_000_000
Q_BLOCK = 256  # query rows per attention block (bounds score memory)


class ModelError(ValueError):
    pass


def llama3_inv_freq(inv_freq, rs):
    """HF _compute_llama3_parameters: keep high frequencies, divide low
    frequencies by `factor`, blend smoothly in between (by wavelength)."""
    factor = float(rs["factor"])
    low = float(rs.get("low_freq_factor", 1.0))
    high = float(rs.get("high_freq_factor", 4.0))
    old_ctx = float(rs["original_max_position_embeddings"])
    low_wavelen = old_ctx / low
    high_wavelen = old_ctx / high
    wavelen = 2 * math.pi / inv_freq
    out = np.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_ctx / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
    return np.where(medium, smoothed, out)


def rope_inv_freq(head_dim, theta, rope_scaling):
    inv = 1.0 / (float(theta) ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if not rope_scaling:
        return inv
    kind = rope_scaling.get("rope_type", rope_scaling.get("type"))
    if kind == "llama3":
        return llama3_inv_freq(inv, rope_scaling)
    if kind == "default":
        return inv
    raise ModelError("unsupported rope_scaling type %r" % kind)


def rope_cos_sin(inv_freq, positions):
    """cos, sin [T, head_dim] with the two halves repeated (HF layout)."""
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    ang = np.concatenate([ang, ang], axis=-1)
    return np.cos(ang), np.sin(ang)


def apply_rope(x, cos, sin):
    """x [T, n_heads, head_dim]; rotate_half(x) = cat(-x2, x1)."""
    half = x.shape[-1] // 2
    rot = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, None, :] + rot * sin[:, None, :]


def rmsnorm(x, w, eps):
    var = np.mean(x * x, axis=-1, keepdims=True)
    return x / np.sqrt(var + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


class KVCache:
    def __init__(self, n_layers):
        self.k = [None] * n_layers  # [S, kv_heads, head_dim]
        self.v = [None] * n_layers
        self.length = 0

    def append(self, layer, k, v):
        if self.k[layer] is None:
            self.k[layer], self.v[layer] = k, v
        else:
            self.k[layer] = np.concatenate([self.k[layer], k], axis=0)
            self.v[layer] = np.concatenate([self.v[layer], v], axis=0)
        return self.k[layer], self.v[layer]


class Model:
    def __init__(self, path, dtype=None):
        self.path = str(path)
        with open(os.path.join(self.path, "config.json"), encoding="utf-8") as f:
            self.cfg = cfg = json.load(f)
        archs = cfg.get("architectures") or []
        mt = cfg.get("model_type")
        if mt not in ("llama", "qwen2") and not set(archs) & {"LlamaForCausalLM",
                                                             "Qwen2ForCausalLM"}:
            raise ModelError("unsupported model_type %r / architectures %r" % (mt, archs))
        self.arch = mt if mt in ("llama", "qwen2") else (
            "qwen2" if "Qwen2ForCausalLM" in archs else "llama")
        self.hidden = int(cfg["hidden_size"])
        self.layers = int(cfg["num_hidden_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.kv_heads = int(cfg.get("num_key_value_heads") or self.heads)
        self.head_dim = int(cfg.get("head_dim") or self.hidden // self.heads)
        self.intermediate = int(cfg["intermediate_size"])
        self.vocab = int(cfg["vocab_size"])
        self.eps = float(cfg.get("rms_norm_eps", 1e-6))
        self.tied = bool(cfg.get("tie_word_embeddings", False))
        if cfg.get("hidden_act", "silu") != "silu":
            raise ModelError("hidden_act %r unsupported" % cfg.get("hidden_act"))
        if self.heads % self.kv_heads:
            raise ModelError("heads not a multiple of kv heads")
        self.inv_freq = rope_inv_freq(self.head_dim, cfg.get("rope_theta", 10000.0),
                                      cfg.get("rope_scaling"))
        self.quant = cfg.get("quantization")
        if self.quant is None:
            qc = cfg.get("quantization_config")
            if isinstance(qc, dict) and "bits" in qc and "quant_method" not in qc:
                self.quant = qc
        self.weights = stn.open_weights(self.path)
        n_params = self._count_params()
        self.dtype = dtype or (np.float64 if n_params <= F64_PARAM_LIMIT else np.float32)
        self._load()
        self.weights.close()

    def _count_params(self):
        return (self.vocab * self.hidden * (1 if self.tied else 2) + self.layers * (
            self.hidden * (2 * self.heads + 2 * self.kv_heads) * self.head_dim
            + 3 * self.hidden * self.intermediate))

    # ---------------------------------------------------------- loading --

    def _module_quant(self, mod):
        if mod + ".scales" not in self.weights:
            return None
        if not self.quant:
            raise ModelError("%s.scales present but config has no quantization block" % mod)
        ent = self.quant.get(mod)
        if ent is False:
            raise ModelError("%s is marked unquantized but has scales" % mod)
        if isinstance(ent, dict):
            return int(ent["bits"]), int(ent["group_size"])
        return int(self.quant["bits"]), int(self.quant["group_size"])

    def matrix(self, mod, rows, cols):
        """Dequantized / decoded weight of module `mod` as [rows, cols]."""
        w = self.weights
        name = mod + ".weight"
        if name not in w:
            raise ModelError("missing tensor %s" % name)
        q = self._module_quant(mod)
        if q is None:
            if w.shape(name) != (rows, cols):
                raise ModelError("%s shape %s, expected %s" % (name, w.shape(name), (rows, cols)))
            return w.get_float(name, self.dtype)
        bits, group = q
        if w.dtype(name) != "U32" or w.shape(name) != (rows, cols * bits // 32):
            raise ModelError("%s: %s%s, expected U32%s for %d-bit"
                             % (name, w.dtype(name), w.shape(name), (rows, cols * bits // 32), bits))
        for part in ("scales", "biases"):
            if w.shape(mod + "." + part) != (rows, cols // group):
                raise ModelError("%s.%s shape %s, expected %s"
                                 % (mod, part, w.shape(mod + "." + part), (rows, cols // group)))
        sc = w.get_float(mod + ".scales", np.float64)
        bi = w.get_float(mod + ".biases", np.float64)
        out = np.empty((rows, cols), dtype=self.dtype)
        step = max(1, (1 << 22) // cols)
        wq = w.get(name)
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            out[r0:r1] = mlx_quant.dequantize(wq[r0:r1], sc[r0:r1], bi[r0:r1], group, bits,
                                              np.float64)
        return out

    def vector(self, name, n, required=True):
        if name not in self.weights:
            if required:
                raise ModelError("missing tensor %s" % name)
            return None
        if self.weights.shape(name) != (n,):
            raise ModelError("%s shape %s, expected (%d,)" % (name, self.weights.shape(name), n))
        return self.weights.get_float(name, np.float64)

    def _load(self):
        H, hd, I, V = self.hidden, self.head_dim, self.intermediate, self.vocab
        nq, nkv = self.heads * hd, self.kv_heads * hd
        self.embed = self.matrix("model.embed_tokens", V, H)
        self.lm_head = self.embed if self.tied else self.matrix("lm_head", V, H)
        self.norm = self.vector("model.norm.weight", H)
        need_bias = self.arch == "qwen2"
        self.L = []
        for i in range(self.layers):
            p = "model.layers.%d." % i
            a, m = p + "self_attn.", p + "mlp."
            self.L.append({
                "in_norm": self.vector(p + "input_layernorm.weight", H),
                "post_norm": self.vector(p + "post_attention_layernorm.weight", H),
                "wq": self.matrix(a + "q_proj", nq, H),
                "wk": self.matrix(a + "k_proj", nkv, H),
                "wv": self.matrix(a + "v_proj", nkv, H),
                "wo": self.matrix(a + "o_proj", H, nq),
                "bq": self.vector(a + "q_proj.bias", nq, need_bias),
                "bk": self.vector(a + "k_proj.bias", nkv, need_bias),
                "bv": self.vector(a + "v_proj.bias", nkv, need_bias),
                "bo": self.vector(a + "o_proj.bias", H, False),
                "wg": self.matrix(m + "gate_proj", I, H),
                "wu": self.matrix(m + "up_proj", I, H),
                "wd": self.matrix(m + "down_proj", H, I),
                "bg": self.vector(m + "gate_proj.bias", I, False),
                "bu": self.vector(m + "up_proj.bias", I, False),
                "bd": self.vector(m + "down_proj.bias", H, False),
            })

    # ---------------------------------------------------------- forward --

    @staticmethod
    def _lin(x, w, b=None):
        y = x @ w.T  # float32 weights are promoted to float64
        return y + b if b is not None else y

    def _attention(self, q, k, v, pos0):
        """q [T, nh, hd] at positions pos0.., k/v [S, nkv, hd] (S = pos0+T)."""
        T = q.shape[0]
        S = k.shape[0]
        rep = self.heads // self.kv_heads
        scale = 1.0 / math.sqrt(self.head_dim)
        qg = q.reshape(T, self.kv_heads, rep, self.head_dim)
        out = np.empty((T, self.kv_heads, rep, self.head_dim))
        for t0 in range(0, T, Q_BLOCK):
            t1 = min(T, t0 + Q_BLOCK)
            sc = np.einsum("tgrd,sgd->grts", qg[t0:t1], k) * scale
            qpos = pos0 + np.arange(t0, t1)
            mask = np.arange(S)[None, :] > qpos[:, None]
            sc = np.where(mask[None, None], -np.inf, sc)
            sc = sc - sc.max(axis=-1, keepdims=True)
            p = np.exp(sc)
            p /= p.sum(axis=-1, keepdims=True)
            out[t0:t1] = np.einsum("grts,sgd->tgrd", p, v)
        return out.reshape(T, self.heads * self.head_dim)

    def forward(self, tokens, cache, last_only=False):
        """Run `tokens` after what `cache` holds; returns logits [T, V]
        (or [1, V] with last_only) in float64 and extends the cache."""
        ids = np.asarray(tokens, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0:
            raise ModelError("need a non-empty 1-D token list")
        if ids.min() < 0 or ids.max() >= self.vocab:
            raise ModelError("token id out of range [0, %d)" % self.vocab)
        T, pos0 = ids.size, cache.length
        hd = self.head_dim
        cos, sin = rope_cos_sin(self.inv_freq, np.arange(pos0, pos0 + T))
        x = self.embed[ids].astype(np.float64)
        for li, L in enumerate(self.L):
            h = rmsnorm(x, L["in_norm"], self.eps)
            q = self._lin(h, L["wq"], L["bq"]).reshape(T, self.heads, hd)
            k = self._lin(h, L["wk"], L["bk"]).reshape(T, self.kv_heads, hd)
            v = self._lin(h, L["wv"], L["bv"]).reshape(T, self.kv_heads, hd)
            q = apply_rope(q, cos, sin)
            k = apply_rope(k, cos, sin)
            K, V = cache.append(li, k, v)
            x = x + self._lin(self._attention(q, K, V, pos0), L["wo"], L["bo"])
            h = rmsnorm(x, L["post_norm"], self.eps)
            g = self._lin(h, L["wg"], L["bg"])
            u = self._lin(h, L["wu"], L["bu"])
            x = x + self._lin(silu(g) * u, L["wd"], L["bd"])
        cache.length += T
        if last_only:
            x = x[-1:]
        x = rmsnorm(x, self.norm, self.eps)
        return self._logits(x)

    def _logits(self, x):
        V = self.vocab
        out = np.empty((x.shape[0], V))
        step = max(1, (1 << 24) // self.hidden)
        for r0 in range(0, V, step):
            r1 = min(V, r0 + step)
            out[:, r0:r1] = x @ self.lm_head[r0:r1].T
        return out

    def new_cache(self):
        return KVCache(self.layers)

    def greedy(self, prompt, n_steps, cache=None, prompt_logits=None):
        """Greedy decode n_steps tokens after `prompt` (argmax, ties to the
        lowest id). Returns (ids, step_logits [n_steps, V])."""
        if cache is None:
            cache = self.new_cache()
        if prompt_logits is None:
            prompt_logits = self.forward(prompt, cache, last_only=True)
        logit = prompt_logits[-1]
        ids, steps = [], []
        for i in range(n_steps):
            steps.append(logit)
            t = int(np.argmax(logit))
            ids.append(t)
            if i + 1 < n_steps:
                logit = self.forward([t], cache, last_only=True)[-1]
        return ids, np.array(steps).reshape(n_steps, self.vocab)


def attend(q, k, v, pos0, scale, window=None, softcap=None):
    """Causal attention, HF eager semantics. q [T, nh, dk] at positions
    pos0.., k [S, nkv, dk], v [S, nkv, dv] (S = pos0 + T); head i reads kv
    head i // (nh / nkv). scores = q.k * scale, then softcap * tanh(s /
    softcap) when softcap, then the mask: key j is visible to query i when
    j <= i and, with a window, j > i - window. Returns [T, nh * dv]."""
    T, nh, dk = q.shape
    S, nkv, dv = v.shape
    rep = nh // nkv
    qg = q.reshape(T, nkv, rep, dk)
    out = np.empty((T, nkv, rep, dv))
    for t0 in range(0, T, Q_BLOCK):
        t1 = min(T, t0 + Q_BLOCK)
        sc = np.einsum("tgrd,sgd->grts", qg[t0:t1], k) * scale
        if softcap:
            sc = softcap * np.tanh(sc / softcap)
        qpos = pos0 + np.arange(t0, t1)
        kpos = np.arange(S)[None, :]
        mask = kpos > qpos[:, None]
        if window:
            mask |= kpos <= qpos[:, None] - window
        sc = np.where(mask[None, None], -np.inf, sc)
        sc = sc - sc.max(axis=-1, keepdims=True)
        p = np.exp(sc)
        p /= p.sum(axis=-1, keepdims=True)
        out[t0:t1] = np.einsum("grts,sgd->tgrd", p, v)
    return out.reshape(T, nh * dv)


def read_config(path):
    with open(os.path.join(str(path), "config.json"), encoding="utf-8") as f:
        return json.load(f)


def open_model(path, dtype=None):
    """The reference model for any supported family (by config.json)."""
    archs = read_config(path).get("architectures") or []
    if "DeepseekV2ForCausalLM" in archs:
        from . import ref_deepseek2
        return ref_deepseek2.DeepseekV2(path, dtype)
    if set(archs) & {"Gemma3ForCausalLM", "Gemma3ForConditionalGeneration"}:
        from . import ref_gemma3
        return ref_gemma3.Gemma3(path, dtype)
    return Model(path, dtype)


def top2_gap(logits):
    """top-1 minus top-2 logit per row."""
    part = np.partition(logits, -2, axis=-1)
    return part[..., -1] - part[..., -2]
