#!/usr/bin/python3
"""check_engine_fake.py - tests check_engine.py before the demo model exists.

What it is for: tests/demo/demo_engine.test.sh. It builds a stand-in for
models/semantic-demo-5m{,-q8,-q4} in a temporary directory: a random
Llama shaped like the demo model (tools/gen_model.py: 3 layers, hidden
256, 4 heads of 64, 2 KV heads, vocab 4096, 256 positions; bf16, and MLX
q8/q4 of the same weights with bf16 scales) whose final norm is scaled by
SOFTEN, so its logits are soft (ppl near the vocabulary size) and KV
rounding moves its ppl by about what it moves a trained model's (a raw
random model has ppl ~1e11 and moves by percents; soft logits also give
near-ties, which exercises the greedy rule's exemption),
and a reference.json computed here with the independent numpy forward
pass (tools/semtools/reference.py): the head windows and their mean NLL in
float32 (standing in for PyTorch float32) and float64, and greedy
continuations with their top-2 gaps (float64), in the fields and the
protocol of tools/demo/reference.py.

Then it runs check_engine.py twice: on the stand-in, where every check
must pass, and on a copy whose reference.json is tampered with (the
PyTorch head NLLs raised by 1%, one greedy id changed at a step with a
clear gap), where exactly those checks must fail. numpy only; seconds.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np

SRC = os.environ.get("SEM_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
PY = "/usr/bin/python3"
sys.path.insert(0, os.path.join(SRC, "tools"))
from semtools import reference as npref  # noqa: E402
from semtools import safetensors_np as stn  # noqa: E402

SOFTEN = 0.1
WINDOW = 64
HEAD_WINDOWS = 4
STEPS = 32
N_PROMPTS = 6
FAILS = []


def check(cond, what):
    print("%s %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        FAILS.append(what)


def generate(out, dtype):
    args = [PY, os.path.join(SRC, "tools/gen_model.py"), "--shape", "tiny", "--vocab", "4096",
            "--max-pos", "256", "--dtype", dtype, "--seed", "21", "--quiet", "--out", out]
    if dtype != "bf16":
        args += ["--group-size", "64", "--scale-dtype", "bf16"]
    subprocess.run(args, check=True)
    path = os.path.join(out, "model.safetensors")
    with stn.SafetensorsFile(path) as f:
        tensors = {n: (f.dtype(n), np.array(f.get(n))) for n in f.names()}
    dt, w = tensors["model.norm.weight"]
    tensors["model.norm.weight"] = (dt, stn.encode_float(stn.decode_float(w, dt) * SOFTEN, dt))
    stn.save_file(path, tensors)


def window_mean_nll(model, ids):
    lg = model.forward(ids[:-1], model.new_cache()).astype(np.float64)
    lg = lg - lg.max(axis=-1, keepdims=True)
    lp = lg - np.log(np.exp(lg).sum(axis=-1, keepdims=True))
    return float(-lp[np.arange(len(ids) - 1), ids[1:]].mean())


def reference(d, stream, prompts):
    m32, m64 = npref.Model(d, dtype=np.float32), npref.Model(d)
    head = [stream[s:s + WINDOW] for s in range(0, HEAD_WINDOWS * WINDOW, WINDOW)]
    t32 = [window_mean_nll(m32, w) for w in head]
    n64 = [window_mean_nll(m64, w) for w in head]
    cases = []
    for p in prompts:
        ids, logits = m64.greedy(p, STEPS)
        gaps = npref.top2_gap(logits).tolist()
        cases.append({"prompt": "prompt %d" % len(cases), "prompt_ids": p, "ids": ids,
                      "gaps": [round(g, 6) for g in gaps], "min_gap": round(min(gaps), 6)})
    return {
        "model": os.path.basename(d),
        "perplexity": {"engine": "numpy float32 (stand-in for PyTorch)", "window": WINDOW,
                       "stride": WINDOW, "ppl": math.exp(float(np.mean(t32)))},
        "head": {"windows": HEAD_WINDOWS, "ids": [int(i) for i in stream[:HEAD_WINDOWS * WINDOW]],
                 "window_mean_nll_torch_f32": t32, "window_mean_nll_numpy_f64": n64,
                 "ppl_torch_f32": math.exp(float(np.mean(t32))),
                 "ppl_numpy_f64": math.exp(float(np.mean(n64)))},
        "greedy": {"steps": STEPS, "stop_at_eos": False, "ties": "lowest id",
                   "ids_from": "numpy float64", "cases": cases},
    }


def build(base):
    rng = np.random.default_rng(8)
    # A stream shaped like the demo's: passages <s> ... </s> back to back.
    stream = []
    while len(stream) < HEAD_WINDOWS * WINDOW:
        stream += [1] + rng.integers(3, 4096, size=int(rng.integers(20, 90))).tolist() + [2]
    stream = np.array(stream, dtype=np.int64)
    prompts = [[1] + rng.integers(3, 4096, size=n).tolist() for n in (1, 3, 5, 8, 12, 20)][:N_PROMPTS]
    for dtype, suffix in (("bf16", ""), ("q8", "-q8"), ("q4", "-q4")):
        d = base + suffix
        generate(d, dtype)
        ref = reference(d, stream, prompts)
        with open(os.path.join(d, "reference.json"), "w", encoding="utf-8") as f:
            json.dump(ref, f)
        print("stand-in %s: head ppl f32 %.3f, f64 %.3f; greedy min gap %.4f" % (
            os.path.basename(d), ref["head"]["ppl_torch_f32"], ref["head"]["ppl_numpy_f64"],
            min(c["min_gap"] for c in ref["greedy"]["cases"])))


def tamper(base, out):
    """A copy of the stand-in whose bf16 reference.json is wrong twice."""
    for suffix in ("", "-q8", "-q4"):
        os.mkdir(out + suffix)
        for f in os.listdir(base + suffix):
            if suffix or f != "reference.json":
                os.symlink(os.path.join(base + suffix, f), os.path.join(out + suffix, f))
    with open(os.path.join(base, "reference.json"), encoding="utf-8") as f:
        ref = json.load(f)
    ref["head"]["window_mean_nll_torch_f32"] = [x + 0.01 for x in ref["head"]["window_mean_nll_torch_f32"]]
    case = ref["greedy"]["cases"][0]
    k = next(k for k, g in enumerate(case["gaps"]) if min(case["gaps"][:k + 1]) > 0.1)
    case["ids"][k] = (case["ids"][k] + 1) % 4096
    with open(os.path.join(out, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f)
    return k


def run_checker(base, extra):
    p = subprocess.run([PY, os.path.join(SRC, "tests/demo/check_engine.py"), "--base", base] + extra,
                       capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


def main():
    extra = sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "fake-demo")
        build(base)
        rc, out = run_checker(base, extra)
        print(out.rstrip())
        check(rc == 0, "check_engine.py passes on the stand-in")
        k = tamper(base, os.path.join(tmp, "tampered"))
        rc, out = run_checker(os.path.join(tmp, "tampered"), extra)
        fails = [line for line in out.splitlines() if line.startswith("FAIL")]
        check(rc == 1 and len(fails) == 2 and "vs PyTorch" in fails[0] and
              ("differs at step %d" % k) in fails[1] and "tampered:" in fails[0],
              "check_engine.py fails on a tampered reference.json, naming the ppl and "
              "the greedy step %d:\n     %s" % (k, "\n     ".join(fails)))
    if FAILS:
        print("%d check(s) failed" % len(FAILS))
        sys.exit(1)
    print("the engine checker works on a stand-in demo model")


if __name__ == "__main__":
    main()
