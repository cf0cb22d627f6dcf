#!/usr/bin/python3
"""Export the trained demo model as Hugging Face and MLX model directories.

What it is for: step 4 of tools/demo/retrain.sh. Reads the trainer's output
(weights.npz in float32 with Hugging Face tensor names, config.json,
train_log.json), the tokenizer (tokenizer.json, tokenizer_stats.json) and
the corpus statistics, and writes
  models/NAME/      config.json (LlamaForCausalLM, bfloat16, tied
                    embeddings), model.safetensors (BF16), tokenizer.json,
                    tokenizer_config.json (with a chat template),
                    generation_config.json, README.md (model card);
  models/NAME-q8/   the same model MLX-quantized, affine, 8 bits, group 64;
  models/NAME-q4/   4 bits, group 64.
Quantized dirs follow mlx-lm: every Linear and the (tied) embedding become
X.weight (U32 packed) + X.scales + X.biases in BF16, the norms stay BF16,
config.json gains "quantization" (and "quantization_config") =
{"group_size": 64, "bits": B}. Quantization is tools/semtools/mlx_quant
(bit-compatible with mlx.core.quantize as run on Apple GPUs).

Invariants: numpy only (/usr/bin/python3); output is a pure function of the
inputs (no timestamps), so re-exporting the same training gives identical
files; each file is written to a temporary name and renamed. The BF16 model
is the rounding of the trained float32 weights (round to nearest even).
"""

import argparse
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))
from semtools import mlx_quant  # noqa: E402
from semtools import safetensors_np as stn  # noqa: E402

GROUP = 64
BOS, EOS = "<s>", "</s>"

# A plain "User:/Assistant:" transcript; the model was trained on prose
# only, so this just frames the prompt. Uses only {{ }}, if/elif, for,
# string concatenation and the loop over messages.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ 'Assistant: ' + message['content'] + eos_token + '\\n\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


def write_text(path, text):
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def hf_config(train_cfg, quant_bits=None):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": train_cfg["vocab_size"],
        "hidden_size": train_cfg["hidden_size"],
        "intermediate_size": train_cfg["intermediate_size"],
        "num_hidden_layers": train_cfg["num_hidden_layers"],
        "num_attention_heads": train_cfg["num_attention_heads"],
        "num_key_value_heads": train_cfg["num_key_value_heads"],
        "head_dim": train_cfg["head_dim"],
        "hidden_act": "silu",
        "max_position_embeddings": train_cfg["max_position_embeddings"],
        "rms_norm_eps": train_cfg["rms_norm_eps"],
        "rope_theta": train_cfg["rope_theta"],
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "bos_token_id": train_cfg["bos_token_id"],
        "eos_token_id": train_cfg["eos_token_id"],
        "pad_token_id": None,
        "use_cache": True,
    }
    if quant_bits:
        q = {"group_size": GROUP, "bits": quant_bits}
        cfg["quantization"] = dict(q)
        cfg["quantization_config"] = dict(q)
    return cfg


def tokenizer_config():
    def special(content):
        return {"content": content, "lstrip": False, "normalized": False,
                "rstrip": False, "single_word": False, "special": True}
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "added_tokens_decoder": {"0": special("<unk>"), "1": special(BOS),
                                 "2": special(EOS)},
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": "<unk>",
        "pad_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "legacy": True,
        "model_max_length": 256,
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizerFast",
    }


def generation_config(cfg):
    return {"bos_token_id": cfg["bos_token_id"],
            "eos_token_id": cfg["eos_token_id"],
            "do_sample": True, "temperature": 0.8, "top_p": 0.95,
            "max_length": cfg["max_position_embeddings"]}


def tensor_order(names):
    """HF-like order: embeddings, layers by index, then the final norm."""
    def key(n):
        parts = n.split(".")
        if parts[1] == "layers":
            return (1, int(parts[2]), ".".join(parts[3:]))
        return (0 if parts[1] == "embed_tokens" else 2, 0, n)
    return sorted(names, key=key)


def bf16_tensors(weights):
    out = {}
    for name in tensor_order(weights.files):
        if name == "lm_head.weight":
            continue  # tied: not stored
        out[name] = ("BF16", stn.f32_to_bf16(weights[name]))
    return out


def quant_tensors(weights, bits):
    out = {}
    for name in tensor_order(weights.files):
        w = weights[name]
        if w.ndim == 2:
            mod = name[:-len(".weight")]
            wq, scales, biases = mlx_quant.quantize(w, GROUP, bits, "BF16")
            out[mod + ".weight"] = ("U32", wq)
            out[mod + ".scales"] = ("BF16", stn.f32_to_bf16(scales))
            out[mod + ".biases"] = ("BF16", stn.f32_to_bf16(biases))
        else:
            out[name] = ("BF16", stn.f32_to_bf16(w))
    return out


def model_card(name, variant, cfg, info, corpus, tok_stats, metrics):
    """README.md with the recipe and measured numbers."""
    h = info["hyper"]
    valid = info["valid"]
    src = corpus["splits"]["train"]["chars_by_source"]
    austen = sum(v for k, v in src.items() if k.startswith("austen/"))
    q = "" if not variant else (
        "\nThis directory is the MLX affine %d-bit quantization (group size %d,"
        " BF16 scales and biases) of `models/%s`.\n" % (variant, GROUP, name))
    lines = [
        "---",
        "language: en",
        "library_name: transformers",
        "pipeline_tag: text-generation",
        "tags: [llama, tiny, demo, public-domain-data]",
        "---",
        "",
        "# %s%s" % (name, "" if not variant else "-q%d" % variant),
        "",
        "Semantic's built-in demo model: a %.1fM-parameter Llama trained from "
        "scratch on public-domain English books. It writes period English "
        "(Austen, Melville, the King James Bible), knows nothing of the world "
        "and does not follow instructions. It exists so that the server runs, "
        "streams and stops with a real model and no download." % (
            info["parameters"] / 1e6),
        q,
        "## Architecture",
        "",
        "`LlamaForCausalLM`: %d layers, hidden %d, %d attention heads of %d, "
        "%d key/value heads (GQA), SiLU-gated MLP of %d, RMSNorm eps %g, "
        "RoPE theta %g (rotate-half), context %d, tied embeddings, no biases, "
        "vocabulary %d. Weights in BF16." % (
            cfg["num_hidden_layers"], cfg["hidden_size"],
            cfg["num_attention_heads"], cfg["head_dim"],
            cfg["num_key_value_heads"], cfg["intermediate_size"],
            cfg["rms_norm_eps"], cfg["rope_theta"],
            cfg["max_position_embeddings"], cfg["vocab_size"]),
        "",
        "## Data",
        "",
        "From Debian bookworm packages, all public domain:",
        "",
        "- Jane Austen's six novels (`r-cran-janeaustenr` %s): %.2f MB" % (
            corpus["packages"]["r-cran-janeaustenr"], austen / 1e6),
        "- Herman Melville, *Moby Dick* (`r-cran-tokenizers` %s, Project "
        "Gutenberg #2701 without the Gutenberg header and licence): %.2f MB"
        % (corpus["packages"]["r-cran-tokenizers"],
           src["melville/mobydick"] / 1e6),
        "- The King James Bible (`bible-kjv-text` %s): %.2f MB" % (
            corpus["packages"]["bible-kjv-text"], src["kjv"] / 1e6),
        "",
        "Cut into passages of up to %d characters (whole paragraphs of one "
        "chapter); every %dth passage is held out for validation "
        "(%d training passages, %.2f MB; %d validation passages, %.2f MB). "
        "Each passage is one document `<s> text </s>`." % (
            corpus["passage_chars"], corpus["valid_every"],
            corpus["splits"]["train"]["documents"],
            corpus["splits"]["train"]["chars"] / 1e6,
            corpus["splits"]["valid"]["documents"],
            corpus["splits"]["valid"]["chars"] / 1e6),
        "",
        "## Tokenizer",
        "",
        "Llama-2-style byte-fallback BPE (`▁` for spaces, `<0x00>`..`<0xFF>`),"
        " %d tokens, trained with Hugging Face `tokenizers`: %.2f characters "
        "per token on the training text. `<s>` = 1 starts a document, `</s>` "
        "= 2 ends it (the model stops by emitting it)." % (
            tok_stats["vocab_size"], tok_stats["train"]["chars_per_token"]),
        "",
        "## Training",
        "",
        "PyTorch %s on CPU (%s), float32, %d thread(s), seed %d: %d steps of "
        "%d x %d tokens (%.1fM tokens, %.1f epochs), AdamW (0.9, 0.95, weight "
        "decay 0.1), learning rate %g with %d warm-up steps, constant, then "
        "cosine decay to 10%% over the last %d%% of the steps, gradient "
        "clipping 1.0. Wall time %.1f h." % (
            info["torch"], info["machine"], info["threads"], info["seed"],
            h["steps"], h["batch"], h["ctx"],
            h["steps"] * h["batch"] * h["ctx"] / 1e6,
            h["steps"] * h["batch"] * h["ctx"] / info["train_tokens"],
            h["lr"], h["warmup"], round(100 * h["decay_frac"]),
            info["wall_s"] / 3600),
        "",
        "## Metrics",
        "",
        "- final training loss (mean of the last 50 steps): %.4f" % (
            info["final_train_loss"]),
        "- validation perplexity (float32 weights, PyTorch): %.3f over %d "
        "tokens" % (valid["ppl"], valid["tokens_scored"]),
    ]
    for label, m in metrics:
        lines.append("- validation perplexity, %s: %.3f" % (label, m))
    lines += [
        "",
        "Protocol: the validation stream (documents `<s> text </s>` back to "
        "back) is cut into consecutive windows of %d tokens (stride %d); each "
        "window starts from an empty cache and every token but the first of "
        "the window is scored. `reference.json` holds these numbers, greedy "
        "continuations of fixed prompts and tokenizer cases for checking an "
        "inference engine." % (h["ctx"], h["ctx"]),
        "",
        "## Reproduce",
        "",
        "`tools/demo/retrain.sh` in the Semantic repository (corpus, "
        "tokenizer, training, export, reference numbers); see "
        "`docs/DEMO_MODEL.md`.",
        "",
        "## Licence",
        "",
        "The training texts are in the public domain. The weights were "
        "produced by the Semantic project from those texts alone and are "
        "distributed with Semantic under its terms.",
        "",
    ]
    return "\n".join(lines)


def export_dir(out, cfg, tensors, metadata, tok_file, card):
    tmp = out + ".tmp"
    if os.path.isdir(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    stn.save_file(os.path.join(tmp, "model.safetensors"), tensors, metadata)
    write_json(os.path.join(tmp, "config.json"), cfg)
    write_json(os.path.join(tmp, "generation_config.json"),
               generation_config(cfg))
    write_json(os.path.join(tmp, "tokenizer_config.json"), tokenizer_config())
    shutil.copyfile(tok_file, os.path.join(tmp, "tokenizer.json"))
    write_text(os.path.join(tmp, "README.md"), card)
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.rename(tmp, out)
    size = os.path.getsize(os.path.join(out, "model.safetensors"))
    print("export: %s (model.safetensors %.2f MB)" % (out, size / 1e6))


def main():
    cache = os.path.join(REPO, ".cache/demo")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train-dir", default=os.path.join(cache, "train-full"))
    ap.add_argument("--tok-dir", default=os.path.join(cache, "tok"))
    ap.add_argument("--corpus-dir", default=os.path.join(cache, "corpus"))
    ap.add_argument("--name", default="semantic-demo-5m")
    ap.add_argument("--models", default=os.path.join(REPO, "models"))
    ap.add_argument("--cards-only", action="store_true",
                    help="only rewrite README.md, with the perplexity from "
                    "each directory's reference.json (run after reference.py)")
    args = ap.parse_args()
    weights = np.load(os.path.join(args.train_dir, "weights.npz"))
    train_cfg = json.load(open(os.path.join(args.train_dir, "config.json")))
    info = json.load(open(os.path.join(args.train_dir, "train_log.json")))
    tok_stats = json.load(open(os.path.join(args.tok_dir,
                                            "tokenizer_stats.json")))
    corpus = json.load(open(os.path.join(args.corpus_dir, "corpus.json")))
    tok_file = os.path.join(args.tok_dir, "tokenizer.json")
    for bits in (None, 8, 4):
        cfg = hf_config(train_cfg, bits)
        out = os.path.join(args.models, args.name + ("-q%d" % bits
                                                     if bits else ""))
        ref = os.path.join(out, "reference.json")
        metrics = []
        if args.cards_only and os.path.exists(ref):
            r = json.load(open(ref))["perplexity"]
            metrics = [("%s weights (%s)" % (
                "BF16" if not bits else "%d-bit" % bits, r["engine"]),
                r["ppl"])]
        card = model_card(args.name, bits, cfg, info, corpus, tok_stats,
                          metrics)
        if args.cards_only:
            write_text(os.path.join(out, "README.md"), card)
            continue
        if bits:
            tensors = quant_tensors(weights, bits)
            meta = {"format": "mlx"}
        else:
            tensors = bf16_tensors(weights)
            meta = {"format": "pt"}
        export_dir(out, cfg, tensors, meta, tok_file, card)


if __name__ == "__main__":
    main()
