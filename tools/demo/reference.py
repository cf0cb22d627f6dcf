#!/usr/bin/python3
"""Reference numbers of the exported demo model, for checking the C engine.

What it is for: step 5 of tools/demo/retrain.sh. For each exported model
directory (models/NAME, NAME-q8, NAME-q4) it writes reference.json:

  perplexity   validation perplexity computed by PyTorch in float32 on the
               directory's own weights (BF16 decoded exactly, MLX affine
               dequantized as scale*q+bias), with the protocol spelled out
               (see llama_torch.eval_windows: windows of 256 tokens,
               stride 256, each from an empty cache, all tokens but the
               first of each window scored, ppl = exp(total NLL / count));
  head         the first HEAD_WINDOWS windows of the validation stream as
               token ids, their per-window mean NLL and perplexity from
               PyTorch float32 and from the independent numpy float64
               forward pass (tools/semtools/reference.py), so a checker
               needs no corpus;
  greedy       20 fixed prompts: prompt ids (<s> + HF tokenizer), 32 greedy
               ids (argmax, lowest id on ties, no stop at </s>), their text,
               and the numpy top-1 minus top-2 logit gap of every step (a
               checker should stop comparing after a step with a tiny gap);
  tokenizer    texts with their Hugging Face `tokenizers` ids (node binding,
               add_special_tokens=true): the first validation passages and
               a few edge cases (byte fallback, spaces, newlines), plus
               decodes of ids.

The script fails (exit 1) if PyTorch and numpy disagree: head perplexity
relative difference over 1e-4, or a greedy id differing before any step
whose gap is under GAP_TRUST. That makes it a check that the trainer's
model is the Hugging Face Llama the engine implements.

Needs python3-torch (Debian) and node with node_modules/tokenizers.
Single process; deterministic output for given weights.
"""

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tools"))
import llama_torch as lt  # noqa: E402
from semtools import reference as npref  # noqa: E402

HEAD_WINDOWS = 16
GREEDY_STEPS = 32
GAP_TRUST = 1e-3
PROMPTS = [
    "It is a truth universally acknowledged, that",
    "Call me Ishmael.",
    "In the beginning God created",
    "Mr. Darcy",
    "The whale",
    "She was",
    "And the LORD said unto Moses,",
    "My dear Emma,",
    "The weather was",
    "Captain Ahab",
    "Elizabeth looked at her sister and",
    "Once upon a time",
    "The ship sailed",
    "Marianne",
    "Blessed are the",
    "The sea was",
    "Anne Elliot",
    "It was a dark and stormy night;",
    "User: Tell me about the sea.\n\nAssistant:",
    "User: Who is Mr. Knightley?\n\nAssistant:",
]
EDGE_TEXTS = [
    "Hello world",
    "  two leading spaces and  double  spaces ",
    "Line one.\n\nLine two.\nLine three.",
    "Price: \u00a320,000 -- caf\u00e9 na\u00efve \u00e6ther",
    "\u65e5\u672c\u8a9e and emoji \U0001F600!",
    "tab\there",
    "",
]

NODE_ENCODE = r"""
const path = require('path');
const tk = require(path.join(process.argv[1], 'node_modules', 'tokenizers'));
let input = '';
process.stdin.on('data', (d) => { input += d; });
process.stdin.on('end', async () => {
  const req = JSON.parse(input);
  const tok = tk.Tokenizer.fromFile(req.tokenizer);
  const out = { encode: [], decode: [] };
  for (const t of req.encode) {
    const e = await tok.encode(t, null, { addSpecialTokens: true });
    out.encode.push(e.getIds());
  }
  for (const ids of req.decode) out.decode.push(await tok.decode(ids, false));
  process.stdout.write(JSON.stringify(out));
});
"""


def hf_tokenize(tokenizer, texts, decodes=()):
    req = {"tokenizer": tokenizer, "encode": list(texts),
           "decode": [list(d) for d in decodes]}
    res = subprocess.run(["node", "-e", NODE_ENCODE, REPO],
                         input=json.dumps(req), capture_output=True,
                         text=True, check=True)
    out = json.loads(res.stdout)
    return out["encode"], out["decode"]


def torch_model(np_model):
    """A llama_torch model holding the numpy reference's float32 weights."""
    c = np_model.cfg
    cfg = {k: c[k] for k in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
        "num_attention_heads", "num_key_value_heads", "head_dim",
        "max_position_embeddings", "rms_norm_eps", "rope_theta",
        "tie_word_embeddings")}
    model = lt.LlamaForCausalLM(cfg)
    sd = {"model.embed_tokens.weight": np_model.embed,
          "model.norm.weight": np_model.norm}
    names = {"in_norm": "input_layernorm.weight",
             "post_norm": "post_attention_layernorm.weight",
             "wq": "self_attn.q_proj.weight", "wk": "self_attn.k_proj.weight",
             "wv": "self_attn.v_proj.weight", "wo": "self_attn.o_proj.weight",
             "wg": "mlp.gate_proj.weight", "wu": "mlp.up_proj.weight",
             "wd": "mlp.down_proj.weight"}
    for i, layer in enumerate(np_model.L):
        for key, name in names.items():
            sd["model.layers.%d.%s" % (i, name)] = layer[key]
    model.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32))
                           for k, v in sd.items()})
    model.eval()
    return model


def numpy_window_nll(np_model, ids):
    logits = np_model.forward(ids[:-1], np_model.new_cache())
    logits = logits - logits.max(axis=-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return float(-logp[np.arange(len(ids) - 1), ids[1:]].sum())


def check(cond, msg):
    if not cond:
        sys.exit("reference: CHECK FAILED: " + msg)


def variant_of(cfg):
    q = cfg.get("quantization")
    return "bf16" if not q else "q%d" % q["bits"]


def reference_for(model_dir, valid, valid_sha, cases):
    np_model = npref.Model(model_dir, dtype=np.float32)
    model = torch_model(np_model)
    ctx = np_model.cfg["max_position_embeddings"]
    stream = torch.from_numpy(valid.astype(np.int64))
    windows = lt.eval_windows(len(stream), ctx)
    per = lt.window_nll(model, stream, windows)
    ppl, mean_nll, count = lt.perplexity(per)

    np64 = npref.Model(model_dir)  # float64 weights and arithmetic
    head = windows[:HEAD_WINDOWS]
    head_ids = valid[:head[-1][1]].astype(int).tolist()
    head_torch = per[:HEAD_WINDOWS]
    head_np = [(numpy_window_nll(np64, valid[s:e].astype(np.int64)), e - s - 1)
               for s, e in head]
    ppl_t = lt.perplexity(head_torch)[0]
    ppl_n = lt.perplexity(head_np)[0]
    check(abs(ppl_t - ppl_n) / ppl_n < 1e-4,
          "%s: head perplexity torch %.6f vs numpy %.6f" % (model_dir, ppl_t,
                                                           ppl_n))
    greedy = []
    for prompt, ids in zip(PROMPTS, cases["prompt_ids"]):
        out_t = lt.greedy(model, ids, GREEDY_STEPS)
        out_n, step_logits = np64.greedy(ids, GREEDY_STEPS)
        gaps = npref.top2_gap(step_logits).tolist()
        for k, (a, b) in enumerate(zip(out_t, out_n)):
            if a != b:
                check(min(gaps[:k + 1]) < GAP_TRUST,
                      "%s: greedy differs at step %d for %r" % (
                          model_dir, k, prompt))
                break
        greedy.append({"prompt": prompt, "prompt_ids": ids, "ids": out_n,
                       "gaps": [round(g, 6) for g in gaps],
                       "min_gap": round(min(gaps), 6),
                       "torch_ids_agree": out_t == out_n})
    _, decoded = hf_tokenize(cases["tokenizer"], [],
                             [g["ids"] for g in greedy])
    for g, text in zip(greedy, decoded):
        g["text"] = text
    protocol = (
        "Validation stream: the validation passages in corpus order, each "
        "tokenized as <s> text </s> (HF tokenizer with its post-processor, "
        "then id 2 appended), concatenated. Cut into consecutive windows of "
        "%d tokens starting at token 0 (stride %d; a final shorter window is "
        "kept if it has >= 2 tokens). Each window is run from an empty "
        "cache with positions 0..len-1; every token of the window except "
        "the first is scored by -log softmax(logits of the previous "
        "position). ppl = exp(sum NLL / number of scored tokens)." % (ctx,
                                                                     ctx))
    return {
        "model": os.path.basename(os.path.normpath(model_dir)),
        "variant": variant_of(np_model.cfg),
        "perplexity": {
            "engine": "PyTorch %s float32" % torch.__version__,
            "ppl": round(ppl, 6), "mean_nll": round(mean_nll, 8),
            "tokens_scored": count, "windows": len(windows),
            "window": ctx, "stride": ctx, "valid_tokens": int(len(valid)),
            "valid_bin_sha256": valid_sha, "protocol": protocol,
        },
        "head": {
            "windows": len(head), "ids": head_ids,
            "window_mean_nll_torch_f32": [round(n / c, 8)
                                          for n, c in head_torch],
            "window_mean_nll_numpy_f64": [round(n / c, 8)
                                          for n, c in head_np],
            "ppl_torch_f32": round(ppl_t, 6), "ppl_numpy_f64": round(ppl_n, 6),
        },
        "greedy": {"steps": GREEDY_STEPS, "stop_at_eos": False,
                   "ties": "lowest id", "ids_from": "numpy float64",
                   "cases": greedy},
        "tokenizer": cases["tokenizer_cases"],
    }


def tokenizer_cases(tokenizer, valid_jsonl, valid):
    docs = [json.loads(line)["text"] for line in
            open(valid_jsonl, encoding="utf-8")][:8]
    texts = docs + EDGE_TEXTS
    enc, _ = hf_tokenize(tokenizer, texts + PROMPTS)
    # The stored stream must agree with a fresh encoding of the same text.
    pos = 0
    for text, ids in zip(docs, enc[:len(docs)]):
        want = valid[pos:pos + len(ids)].astype(int).tolist()
        check(want == ids and int(valid[pos + len(ids)]) == 2,
              "valid.bin does not match a fresh encoding")
        pos += len(ids) + 1
    cases = [{"text": t, "ids": i} for t, i in zip(texts, enc[:len(texts)])]
    return cases, enc[len(texts):]


def main():
    cache = os.path.join(REPO, ".cache/demo")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dirs", nargs="+", help="exported model directories")
    ap.add_argument("--tok-dir", default=os.path.join(cache, "tok"))
    ap.add_argument("--corpus-dir", default=os.path.join(cache, "corpus"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    valid_path = os.path.join(args.tok_dir, "valid.bin")
    valid = np.fromfile(valid_path, dtype="<u2")
    valid_sha = hashlib.sha256(open(valid_path, "rb").read()).hexdigest()
    tok_file = os.path.join(args.dirs[0], "tokenizer.json")
    tcases, prompt_ids = tokenizer_cases(
        tok_file, os.path.join(args.corpus_dir, "valid.jsonl"), valid)
    cases = {"tokenizer": tok_file, "prompt_ids": prompt_ids,
             "tokenizer_cases": tcases}
    for d in args.dirs:
        ref = reference_for(d, valid, valid_sha, cases)
        path = os.path.join(d, "reference.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(ref, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        os.replace(path + ".tmp", path)
        ok = sum(g["torch_ids_agree"] for g in ref["greedy"]["cases"])
        print("reference: %s [%s] ppl %.3f (head %d windows: torch %.4f, "
              "numpy %.4f); greedy torch==numpy on %d/%d prompts; %s" % (
                  ref["model"], ref["variant"], ref["perplexity"]["ppl"],
                  HEAD_WINDOWS, ref["head"]["ppl_torch_f32"],
                  ref["head"]["ppl_numpy_f64"], ok, len(PROMPTS), path))
        print("  e.g. %r -> %r" % (ref["greedy"]["cases"][0]["prompt"],
                                   ref["greedy"]["cases"][0]["text"]))


if __name__ == "__main__":
    main()
