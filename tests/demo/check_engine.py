#!/usr/bin/python3
"""check_engine.py - the C engine against the demo model's reference.json.

What it is for: the issue's "the engine matches the trainer" and "KV
quantization is bounded" checks, run by tests/demo/demo_model.test.sh on
the committed models/semantic-demo-5m{,-q8,-q4} (and by
demo_engine.test.sh on a generated stand-in, so the checker itself is
tested before the model exists). For each directory:

  perplexity  `semantic perplexity --reference --kv-bits all --save-restore`
              over reference.json's head windows: the C engine's ppl at
              16-bit KV within 0.5% of PyTorch float32's on the same
              windows (head.window_mean_nll_torch_f32); 8-bit KV within
              0.5% and 4-bit KV within 3% of the 16-bit C ppl; the
              mid-window save/restore through a cache file identical to
              the run without it at 16 bits (and at 8 and 4);
  greedy      `semantic generate --tokens <prompt ids> -n 32` (greedy, the
              default f16 KV, no stop) equals reference.json's ids, except
              that a difference is accepted after a step whose numpy top-2
              gap is under GAP_TRUST (tools/demo/reference.py's rule: a
              near-tie that rounding may decide either way), and reported.

Usage: check_engine.py [--base DIR] [--windows N] [--prompts N]
  --base DIR     the bf16 directory; DIR-q8 and DIR-q4 beside it
                 (default models/semantic-demo-5m, or $SEM_DEMO_MODEL)
  --windows N    score only the first N head windows (ASan runs)
  --prompts N    only the first N greedy prompts
Exit status 0 when every check passes; one line per check.
"""
import argparse
import json
import math
import os
import subprocess
import sys

SRC = os.environ.get("SEM_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SEM_BIN") or os.path.join(SRC, "build", "release", "semantic")
GAP_TRUST = 1e-3       # tools/demo/reference.py
PPL_VS_TORCH = 0.005   # C 16-bit KV against PyTorch float32
KV_BOUNDS = {8: 0.005, 4: 0.03}  # against the C 16-bit KV ppl
FAILS = []


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        FAILS.append(what)


def run(args):
    p = subprocess.run([BIN] + args, capture_output=True, text=True)
    if p.returncode != 0:
        check(False, "semantic %s exits 0 (%d): %s" % (" ".join(args[:3]), p.returncode,
                                                        p.stderr.strip()[-300:]))
        return None
    return p.stdout


def torch_head_ppl(ref, n_windows):
    """PyTorch's ppl over the first n head windows, from its per-window
    mean NLLs (eval_windows: windows of `window` tokens; a window of len
    tokens scores len - 1)."""
    head, window = ref["head"], ref["perplexity"]["window"]
    n_ids = len(head["ids"])
    total = count = 0
    for w, mean in enumerate(head["window_mean_nll_torch_f32"][:n_windows]):
        scored = min(window, n_ids - w * window) - 1
        total += mean * scored
        count += scored
    return math.exp(total / count)


def check_perplexity(d, ref, windows):
    args = ["perplexity", "--model", d, "--reference", "--kv-bits", "all", "--save-restore", "--json"]
    if windows:
        args += ["--windows", str(windows)]
    out = run(args)
    if out is None:
        return
    res = json.loads(out)
    runs = {r["bits"]: r for r in res["runs"]}
    c16 = runs[16]["ppl"]
    want = torch_head_ppl(ref, res["windows"])
    rel = (c16 - want) / want
    check(abs(rel) <= PPL_VS_TORCH,
          "%s: C ppl %.4f (KV 16, %d windows) vs PyTorch f32 %.4f: %+.3f%% (bound %.1f%%)"
          % (d, c16, res["windows"], want, 100 * rel, 100 * PPL_VS_TORCH))
    for bits, bound in KV_BOUNDS.items():
        rel = (runs[bits]["ppl"] - c16) / c16
        check(math.isfinite(runs[bits]["ppl"]) and abs(rel) <= bound,
              "%s: KV %d bits ppl %.4f: %+.3f%% vs 16 bits (bound %.1f%%)"
              % (d, bits, runs[bits]["ppl"], 100 * rel, 100 * bound))
    for bits in (16, 8, 4):
        sr = runs[bits]["save_restore"]
        check(sr["identical"] and sr["ppl"] == runs[bits]["ppl"],
              "%s: KV %d bits: save/restore mid-window ppl %.6f == %.6f without"
              % (d, bits, sr["ppl"], runs[bits]["ppl"]))


def first_difference(got, want):
    for k, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return k
    return None if len(got) == len(want) else min(len(got), len(want))


def check_greedy(d, ref, n_prompts):
    cases = ref["greedy"]["cases"][:n_prompts] if n_prompts else ref["greedy"]["cases"]
    steps = ref["greedy"]["steps"]
    exact = 0
    for case in cases:
        ids = ",".join(str(i) for i in case["prompt_ids"])
        out = run(["generate", "--model", d, "--tokens", ids, "-n", str(steps)])
        if out is None:
            continue
        line = out.splitlines()[0]
        got = [int(x) for x in line.split(":", 1)[1].split(",")] if line.startswith("tokens:") else []
        k = first_difference(got, case["ids"])
        if k is None:
            exact += 1
            continue
        gaps = case["gaps"][:k + 1]
        near_tie = len(got) == len(case["ids"]) and min(gaps) < GAP_TRUST
        check(near_tie, "%s: greedy %r differs at step %d (smallest gap before it %.6f; trusted above %g)"
              % (d, case["prompt"], k, min(gaps), GAP_TRUST))
    check(exact > 0, "%s: greedy: %d/%d prompts identical for all %d steps, the rest after a near-tie"
          % (d, exact, len(cases), steps))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", default=os.environ.get("SEM_DEMO_MODEL") or
                    os.path.join(SRC, "models", "semantic-demo-5m"))
    ap.add_argument("--windows", type=int, default=0)
    ap.add_argument("--prompts", type=int, default=0)
    a = ap.parse_args()
    for suffix in ("", "-q8", "-q4"):
        d = a.base + suffix
        path = os.path.join(d, "reference.json")
        if not os.path.isfile(path):
            check(False, "%s exists" % path)
            continue
        with open(path, encoding="utf-8") as f:
            ref = json.load(f)
        check_perplexity(d, ref, a.windows)
        check_greedy(d, ref, a.prompts)
    if FAILS:
        print("%d engine check(s) failed" % len(FAILS))
        sys.exit(1)
    print("all engine checks passed")


if __name__ == "__main__":
    main()
