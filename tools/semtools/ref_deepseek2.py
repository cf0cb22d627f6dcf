"""ref_deepseek2: the numpy reference forward pass of DeepseekV2ForCausalLM
(DeepSeek-V2, DeepSeek-Coder-V2-Lite), float64, written from DeepSeek's
modeling_deepseek.py (the code the checkpoints' config.json names in
auto_map) and Hugging Face transformers' modeling_deepseek_v2:

  x = embed_tokens[ids]
  per layer:
    h = rmsnorm(x) * input_layernorm
    q = h Wq^T, or rmsnorm(h Wq_a^T) * q_a_layernorm . Wq_b^T  (q_lora_rank)
    q -> [T, heads, qk_nope + qk_rope]: q_nope, q_pe
    [c, k_pe] = h Wkv_a^T                    (kv_lora_rank, qk_rope)
    kv = rmsnorm(c) * kv_a_layernorm . Wkv_b^T -> [T, heads, qk_nope + v]
    q_pe, k_pe rotated in interleaved pairs (2i, 2i+1) by pos * inv_freq[i]
      (complex multiplication, as the remote code's view/transpose and the
      native apply_rotary_emb both amount to), cos and sin scaled by the
      YaRN factor mscale(f, mscale) / mscale(f, mscale_all_dim)
    K = [k_nope, k_pe (same for every head)], V = v
    x += attention(Q, K, V) Wo^T, scale (qk dims)^-1/2 * mscale(f, mscale_all_dim)^2
    h = rmsnorm(x) * post_attention_layernorm
    dense layer: x += (silu(h Wg^T) * h Wu^T) Wd^T
    MoE layer (l >= first_k_dense_replace, l % moe_layer_freq == 0):
      p = softmax(h Wgate^T); group_limited_greedy keeps the topk_group
      groups with the largest max p (others' p set to 0); top k by p (ties:
      lower expert id); w = p / (sum + 1e-20) if k > 1 and norm_topk_prob,
      else p * routed_scaling_factor
      x += sum_k w_k expert_k(h) + shared_experts(h)
  logits = rmsnorm(x) * norm . lm_head^T

YaRN inverse frequencies (dim = qk_rope_head_dim): extrapolated
base^(-2i/dim) and interpolated base^(-2i/dim) / factor, blended with
mask = 1 - clamp((i - low) / (high - low), 0, 1), low/high =
floor/ceil(dim * ln(orig_max / (beta * 2 pi)) / (2 ln base)) for beta_fast,
beta_slow, clamped to [0, dim - 1].

Routed experts are read from Hugging Face's per-expert tensors
(mlp.experts.E.{gate,up,down}_proj) or mlx-lm's stacked
mlp.switch_mlp.{gate,up,down}_proj [n_experts, rows, cols] (quantized or not).
q_a_layernorm / kv_a_layernorm use eps 1e-6 (DeepseekV2RMSNorm's default).

Single-threaded; weights dequantized once (float64, or float32 over 300M
parameters).
"""

import math

import numpy as np

from . import mlx_quant
from . import safetensors_np as stn
from .reference import (F64_PARAM_LIMIT, KVCache, Model, ModelError, attend, read_config,
                        rmsnorm, silu)

MLA_NORM_EPS = 1e-6


def yarn_mscale(factor, mscale):
    return 1.0 if factor <= 1 else 0.1 * mscale * math.log(factor) + 1.0


def yarn_inv_freq(dim, base, rs):
    factor = float(rs["factor"])
    orig = float(rs.get("original_max_position_embeddings", 4096))
    fast, slow = float(rs.get("beta_fast", 32)), float(rs.get("beta_slow", 1))

    def corr(n_rot):
        return dim * math.log(orig / (n_rot * 2 * math.pi)) / (2 * math.log(base))

    low, high = max(math.floor(corr(fast)), 0), min(math.ceil(corr(slow)), dim - 1)
    if low == high:
        high += 0.001
    extra = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    inter = extra / factor
    mask = 1.0 - np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
    return inter * (1 - mask) + extra * mask


def rope_interleaved(x, positions, inv_freq, factor):
    """x [T, n, dim]: pair (2i, 2i+1) rotated by angle pos * inv_freq[i]."""
    ang = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq[None, :]
    c, s = np.cos(ang)[:, None, :] * factor, np.sin(ang)[:, None, :] * factor
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


class DeepseekV2(Model):
    def __init__(self, path, dtype=None):  # noqa: super().__init__ is Llama's
        self.path = str(path)
        self.cfg = cfg = read_config(path)
        self.arch = "deepseek2"
        g = lambda k, d=None: cfg.get(k) if cfg.get(k) is not None else d  # noqa: E731
        self.hidden, self.layers = int(cfg["hidden_size"]), int(cfg["num_hidden_layers"])
        self.heads, self.vocab = int(cfg["num_attention_heads"]), int(cfg["vocab_size"])
        self.intermediate = int(cfg["intermediate_size"])
        self.q_lora, self.kv_lora = int(g("q_lora_rank", 0)), int(cfg["kv_lora_rank"])
        self.nope, self.rope = int(cfg["qk_nope_head_dim"]), int(cfg["qk_rope_head_dim"])
        self.v_dim = int(cfg["v_head_dim"])
        self.n_exp, self.k = int(g("n_routed_experts", 0)), int(g("num_experts_per_tok", 0))
        self.shared, self.moe_inter = int(g("n_shared_experts", 0)), int(g("moe_intermediate_size", 0))
        self.first_dense, self.moe_freq = int(g("first_k_dense_replace", 0)), int(g("moe_layer_freq", 1))
        self.scaling, self.norm_topk = float(g("routed_scaling_factor", 1.0)), bool(g("norm_topk_prob", False))
        self.grouped = g("topk_method", "greedy") == "group_limited_greedy"
        self.n_group, self.topk_group = int(g("n_group", 1)), int(g("topk_group", 1))
        self.eps, self.tied = float(g("rms_norm_eps", 1e-6)), bool(g("tie_word_embeddings", False))
        if g("hidden_act", "silu") != "silu" or g("scoring_func", "softmax") != "softmax":
            raise ModelError("unsupported activation or scoring function")
        self.qk_dim = self.nope + self.rope
        self.softmax_scale = self.qk_dim ** -0.5
        base = float(g("rope_theta", 10000.0))
        rs = cfg.get("rope_scaling")
        self.rope_factor = 1.0
        if rs and rs.get("type", rs.get("rope_type")) == "yarn":
            f = float(rs["factor"])
            self.inv_freq = yarn_inv_freq(self.rope, base, rs)
            self.rope_factor = yarn_mscale(f, float(rs.get("mscale", 1))) / yarn_mscale(f, float(rs.get("mscale_all_dim", 0)))
            if rs.get("mscale_all_dim"):
                self.softmax_scale *= yarn_mscale(f, float(rs["mscale_all_dim"])) ** 2
        elif rs:
            raise ModelError("rope_scaling %r unsupported for DeepSeek-V2" % rs)
        else:
            self.inv_freq = 1.0 / (base ** (np.arange(0, self.rope, 2, dtype=np.float64) / self.rope))
        self.quant = cfg.get("quantization")
        self.weights = stn.open_weights(self.path)
        n = sum(int(np.prod(self.weights.shape(t))) for t in self.weights.names())
        self.dtype = dtype or (np.float64 if n <= F64_PARAM_LIMIT else np.float32)
        self._load()
        self.weights.close()

    def is_moe(self, i):
        return self.n_exp > 0 and i >= self.first_dense and i % self.moe_freq == 0

    # ---------------------------------------------------------- loading --

    def experts(self, mlp, proj, rows, cols):
        """[n_experts, rows, cols] from the stacked or the per-expert layout."""
        mod = mlp + "switch_mlp." + proj
        if mod + ".weight" not in self.weights:
            return np.stack([self.matrix(mlp + "experts.%d.%s" % (e, proj), rows, cols)
                             for e in range(self.n_exp)])
        E, w = self.n_exp, self.weights
        q = self._module_quant(mod)
        if q is None:
            if w.shape(mod + ".weight") != (E, rows, cols):
                raise ModelError("%s.weight shape %s" % (mod, w.shape(mod + ".weight")))
            return w.get_float(mod + ".weight", self.dtype)
        bits, group = q
        if w.shape(mod + ".weight") != (E, rows, cols * bits // 32):
            raise ModelError("%s.weight shape %s" % (mod, w.shape(mod + ".weight")))
        wq = w.get(mod + ".weight").reshape(E * rows, -1)
        sc = w.get_float(mod + ".scales", np.float64).reshape(E * rows, -1)
        bi = w.get_float(mod + ".biases", np.float64).reshape(E * rows, -1)
        out = mlx_quant.dequantize(wq, sc, bi, group, bits, np.float64)
        return out.reshape(E, rows, cols).astype(self.dtype)

    def _load(self):
        H, V, nh = self.hidden, self.vocab, self.heads
        self.embed = self.matrix("model.embed_tokens", V, H)
        self.lm_head = self.embed if self.tied else self.matrix("lm_head", V, H)
        self.norm = self.vector("model.norm.weight", H)
        self.L = []
        for i in range(self.layers):
            p = "model.layers.%d." % i
            a, m = p + "self_attn.", p + "mlp."
            L = {"in_norm": self.vector(p + "input_layernorm.weight", H),
                 "post_norm": self.vector(p + "post_attention_layernorm.weight", H),
                 "wkv_a": self.matrix(a + "kv_a_proj_with_mqa", self.kv_lora + self.rope, H),
                 "kv_norm": self.vector(a + "kv_a_layernorm.weight", self.kv_lora),
                 "wkv_b": self.matrix(a + "kv_b_proj", nh * (self.nope + self.v_dim), self.kv_lora),
                 "wo": self.matrix(a + "o_proj", H, nh * self.v_dim)}
            if self.q_lora:
                L["wq_a"] = self.matrix(a + "q_a_proj", self.q_lora, H)
                L["q_norm"] = self.vector(a + "q_a_layernorm.weight", self.q_lora)
                L["wq"] = self.matrix(a + "q_b_proj", nh * self.qk_dim, self.q_lora)
            else:
                L["wq"] = self.matrix(a + "q_proj", nh * self.qk_dim, H)
            if self.is_moe(i):
                mi = self.moe_inter
                L["router"] = self.matrix(m + "gate", self.n_exp, H)
                L["eg"] = self.experts(m, "gate_proj", mi, H)
                L["eu"] = self.experts(m, "up_proj", mi, H)
                L["ed"] = self.experts(m, "down_proj", H, mi)
                if self.shared:
                    sh = mi * self.shared
                    L["shared"] = (self.matrix(m + "shared_experts.gate_proj", sh, H),
                                   self.matrix(m + "shared_experts.up_proj", sh, H),
                                   self.matrix(m + "shared_experts.down_proj", H, sh))
            else:
                I = self.intermediate
                L["mlp"] = (self.matrix(m + "gate_proj", I, H), self.matrix(m + "up_proj", I, H),
                            self.matrix(m + "down_proj", H, I))
            self.L.append(L)

    # ---------------------------------------------------------- forward --

    @staticmethod
    def _mlp(h, wg, wu, wd):
        return (silu(h @ wg.T) * (h @ wu.T)) @ wd.T

    def route(self, h, router):
        """(ids [T, k], weights [T, k]) for normed hidden states h [T, H]."""
        logits = h @ router.T
        p = np.exp(logits - logits.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        sel = p
        if self.grouped:
            gs = p.reshape(len(p), self.n_group, -1).max(axis=-1)
            keep = np.argsort(-gs, axis=-1, kind="stable")[:, : self.topk_group]
            gmask = np.zeros_like(gs, dtype=bool)
            np.put_along_axis(gmask, keep, True, axis=-1)
            sel = np.where(np.repeat(gmask, self.n_exp // self.n_group, axis=-1), p, 0.0)
        ids = np.argsort(-sel, axis=-1, kind="stable")[:, : self.k]
        w = np.take_along_axis(p, ids, axis=-1)
        if self.k > 1 and self.norm_topk:
            w = w / (w.sum(axis=-1, keepdims=True) + 1e-20)
        else:
            w = w * self.scaling
        return ids, w

    def _moe(self, h, L):
        ids, w = self.route(h, L["router"])
        y = np.zeros_like(h)
        for e in range(self.n_exp):
            tok, slot = np.nonzero(ids == e)
            if tok.size:
                y[tok] += w[tok, slot][:, None] * self._mlp(h[tok], L["eg"][e], L["eu"][e], L["ed"][e])
        if self.shared:
            y += self._mlp(h, *L["shared"])
        return y

    def _attention_layer(self, x, L, li, cache, pos):
        T, nh = x.shape[0], self.heads
        h = rmsnorm(x, L["in_norm"], self.eps)
        if self.q_lora:
            q = rmsnorm(h @ L["wq_a"].T, L["q_norm"], MLA_NORM_EPS) @ L["wq"].T
        else:
            q = h @ L["wq"].T
        q = q.reshape(T, nh, self.qk_dim)
        ckv = h @ L["wkv_a"].T
        c, k_pe = ckv[:, : self.kv_lora], ckv[:, self.kv_lora:]
        kv = (rmsnorm(c, L["kv_norm"], MLA_NORM_EPS) @ L["wkv_b"].T).reshape(T, nh, self.nope + self.v_dim)
        q_pe = rope_interleaved(q[..., self.nope:], pos, self.inv_freq, self.rope_factor)
        k_pe = rope_interleaved(k_pe[:, None, :], pos, self.inv_freq, self.rope_factor)
        qq = np.concatenate([q[..., : self.nope], q_pe], axis=-1)
        k = np.concatenate([kv[..., : self.nope], np.broadcast_to(k_pe, (T, nh, self.rope))], axis=-1)
        K, Vv = cache.append(li, k, kv[..., self.nope:])
        return attend(qq, K, Vv, int(pos[0]), self.softmax_scale) @ L["wo"].T

    def forward(self, tokens, cache, last_only=False):
        ids = np.asarray(tokens, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0 or ids.min() < 0 or ids.max() >= self.vocab:
            raise ModelError("need a non-empty 1-D list of token ids below %d" % self.vocab)
        T, pos0 = ids.size, cache.length
        pos = np.arange(pos0, pos0 + T)
        x = self.embed[ids].astype(np.float64)
        for li, L in enumerate(self.L):
            x = x + self._attention_layer(x, L, li, cache, pos)
            h = rmsnorm(x, L["post_norm"], self.eps)
            x = x + (self._moe(h, L) if "router" in L else self._mlp(h, *L["mlp"]))
        cache.length += T
        if last_only:
            x = x[-1:]
        return self._logits(rmsnorm(x, self.norm, self.eps))

    def new_cache(self):
        return KVCache(self.layers)
