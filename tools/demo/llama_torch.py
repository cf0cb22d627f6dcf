"""A small PyTorch Llama with Hugging Face LlamaForCausalLM semantics.

What it is for: the demo model's trainer (tools/demo/train.py) and its
reference-number generator (tools/demo/reference.py). Parameter names are
exactly the Hugging Face ones (model.embed_tokens.weight,
model.layers.N.self_attn.q_proj.weight, ...), so a state dict maps 1:1 onto
a Hugging Face checkpoint.

Semantics (as transformers' modeling_llama.py):
  - RMSNorm: x * rsqrt(mean(x^2) + eps) * weight, computed in float32;
  - rotary embedding, "rotate half" layout: inv_freq = theta^(-2i/d),
    cos/sin = cat(freqs, freqs), x*cos + rotate_half(x)*sin with
    rotate_half(x) = cat(-x[d/2:], x[:d/2]); positions count from 0;
  - grouped-query attention: KV head j serves query heads
    j*g .. j*g+g-1 (g = heads / kv_heads, HF repeat_kv), scale 1/sqrt(d),
    causal mask;
  - MLP: down(silu(gate(x)) * up(x)); no biases anywhere;
  - tied embeddings: logits = norm(h) @ embed_tokens.weight^T.

Also here: the evaluation protocol (perplexity over fixed windows) and
greedy decoding, so train.py and reference.py measure the same way.
Requires Debian's python3-torch (1.13, CPU). Single-threaded use from the
caller's thread; torch's own intra-op threads only.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_cos_sin(n_pos, head_dim, theta, device=None):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2,
                                             dtype=torch.int64).float()
                                / head_dim))
    pos = torch.arange(n_pos, dtype=torch.int64).float()
    freqs = torch.outer(pos, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(device), emb.sin().to(device)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, d = cfg["hidden_size"], cfg["head_dim"]
        self.n_heads = cfg["num_attention_heads"]
        self.n_kv = cfg["num_key_value_heads"]
        self.head_dim = d
        self.q_proj = nn.Linear(h, self.n_heads * d, bias=False)
        self.k_proj = nn.Linear(h, self.n_kv * d, bias=False)
        self.v_proj = nn.Linear(h, self.n_kv * d, bias=False)
        self.o_proj = nn.Linear(self.n_heads * d, h, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim)
        k = self.k_proj(x).view(b, t, self.n_kv, self.head_dim)
        v = self.v_proj(x).view(b, t, self.n_kv, self.head_dim)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.n_heads // self.n_kv
        if group > 1:
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
        att = att.masked_fill(mask, float("-inf"))
        att = F.softmax(att.float(), dim=-1).to(q.dtype)
        y = (att @ v).transpose(1, 2).reshape(b, t, self.n_heads *
                                              self.head_dim)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        h, f = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(h, f, bias=False)
        self.up_proj = nn.Linear(h, f, bias=False)
        self.down_proj = nn.Linear(f, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg["rms_norm_eps"]
        self.input_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg["hidden_size"], eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"],
                                         cfg["hidden_size"])
        self.layers = nn.ModuleList(Block(cfg)
                                    for _ in range(cfg["num_hidden_layers"]))
        self.norm = RMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])


class LlamaForCausalLM(nn.Module):
    """state_dict() keys are the Hugging Face names (lm_head is tied)."""

    def __init__(self, cfg):
        super().__init__()
        if not cfg.get("tie_word_embeddings", True):
            raise ValueError("only tied embeddings are supported")
        self.cfg = cfg
        self.model = Backbone(cfg)
        cos, sin = rope_cos_sin(cfg["max_position_embeddings"],
                                cfg["head_dim"], cfg["rope_theta"])
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    def init_weights(self, generator, std):
        """HF-style init: N(0, std) for every matrix, ones for norms."""
        for name, p in self.named_parameters():
            with torch.no_grad():
                if name.endswith("layernorm.weight") or name == \
                        "model.norm.weight":
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=generator) * std)

    def forward(self, ids):
        t = ids.shape[1]
        if t > self.rope_cos.shape[0]:
            raise ValueError("sequence longer than max_position_embeddings")
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        mask = torch.ones(t, t, dtype=torch.bool,
                          device=ids.device).triu(1)
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask)
        x = self.model.norm(x)
        return x @ self.model.embed_tokens.weight.t()


def eval_windows(n_tokens, window):
    """The evaluation windows: [start, end) pairs.

    Protocol: the token stream is cut into consecutive non-overlapping
    windows of `window` tokens starting at 0 (stride = window); a final
    shorter window is kept if it has at least 2 tokens. Each window is run
    from an empty context, and every token of the window except its first
    is scored (predicted from the tokens before it in the same window).
    """
    out = []
    for start in range(0, n_tokens, window):
        end = min(start + window, n_tokens)
        if end - start >= 2:
            out.append((start, end))
    return out


@torch.no_grad()
def window_nll(model, stream, windows, batch=16):
    """Sum of NLL (nats) and scored-token count for each window."""
    model.eval()
    res = []
    for i in range(0, len(windows), batch):
        chunk = windows[i:i + batch]
        same = len({e - s for s, e in chunk}) == 1
        groups = [chunk] if same else [[w] for w in chunk]
        for group in groups:
            ids = torch.stack([stream[s:e] for s, e in group]).long()
            logits = model(ids[:, :-1]).float()
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                  ids[:, 1:].reshape(-1), reduction="none")
            nll = nll.view(len(group), -1).double().sum(dim=1)
            res += [(float(n), e - s - 1) for n, (s, e) in zip(nll, group)]
    return res


def perplexity(per_window):
    total = sum(n for n, _ in per_window)
    count = sum(c for _, c in per_window)
    return math.exp(total / count), total / count, count


@torch.no_grad()
def greedy(model, prompt, n_new):
    """Greedy continuation: argmax at each step, no stop; lowest id wins
    ties (torch.argmax returns the first maximum)."""
    model.eval()
    ids = list(prompt)
    out = []
    for _ in range(n_new):
        logits = model(torch.tensor([ids]))[0, -1]
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        ids.append(nxt)
    return out
