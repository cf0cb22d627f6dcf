#!/usr/bin/python3
"""ref_forward.py: run the numpy reference forward pass (semtools/reference.py,
Hugging Face semantics for LlamaForCausalLM / Qwen2ForCausalLM, and
semtools/ref_deepseek2.py, ref_gemma3.py for DeepseekV2ForCausalLM and Gemma 3;
float64) on a model directory and write the logits, so the C engine's tests
can compare.

Output contract (stable; the engine's tests rely on it):
  --out FILE     raw little-endian float32 logits, [n_tokens][vocab] row-major
                 (or [1][vocab] with --last-only), no header; the shape is
                 printed on stderr as "ref_forward: logits [N][V] -> FILE".
  --greedy N     N greedy steps after the prompt (argmax, ties -> lowest id,
                 no stop at EOS) printed on stdout as "greedy: 5,7,..."; the
                 smallest top-1/top-2 gap over the steps goes to stderr.
  --greedy-out F the logits each greedy choice was made from, [N][vocab] f32.
  --gaps         with --greedy: "gaps: 1.234567,..." top-1 minus top-2 logit of
                 each greedy step, to skip steps too close to call.
  --top K        "top: id:logit,id:logit,..." for the last prompt position.
Exit status 0 on success, 2 on bad arguments or a model it cannot read.

Run with /usr/bin/python3 (numpy only). Single-threaded.
"""

import argparse
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from semtools import reference  # noqa: E402


def log(msg):
    sys.stderr.write("ref_forward: %s\n" % msg)
    sys.stderr.flush()


def parse_ids(text):
    parts = [p for p in re.split(r"[\s,]+", text.strip()) if p]
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise SystemExit("ref_forward: error: token ids must be integers")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="ref_forward.py",
        description="Reference (numpy, float64) forward pass of a Llama/Qwen2/DeepSeek-V2/Gemma 3 model "
                    "directory, HF transformers semantics; MLX q4/q8 weights are "
                    "dequantized.",
        epilog="examples:\n"
               "  ref_forward.py --model build/models/tiny --tokens 1,2,3 --out /tmp/l.f32\n"
               "  ref_forward.py --model DIR --tokens-file prompt.txt --last-only "
               "--out /tmp/last.f32 --greedy 16",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, metavar="DIR", help="model directory")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--tokens", metavar="IDS", help="comma-separated token ids, e.g. 1,2,3")
    src.add_argument("--tokens-file", metavar="FILE",
                     help="file of token ids separated by commas or whitespace")
    p.add_argument("--out", metavar="FILE", help="write float32 logits [n_tokens][vocab] here")
    p.add_argument("--last-only", action="store_true",
                   help="write only the last position's logits ([1][vocab])")
    p.add_argument("--greedy", type=int, default=0, metavar="N",
                   help="also decode N tokens greedily; prints 'greedy: a,b,...'")
    p.add_argument("--greedy-out", metavar="FILE",
                   help="write the logits of each greedy step, [N][vocab] float32")
    p.add_argument("--gaps", action="store_true",
                   help="with --greedy: print 'gaps: g1,g2,...', the top-1 minus top-2 "
                        "logit of each greedy step (where a tiny gap makes a different "
                        "choice by another implementation plausible)")
    p.add_argument("--top", type=int, default=0, metavar="K",
                   help="print the top K (id:logit) of the last prompt position")
    p.add_argument("--f32-weights", action="store_true",
                   help="hold weights in float32 (activations stay float64); "
                        "automatic above 300M parameters")
    return p.parse_args(argv)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    if a.greedy < 0 or a.top < 0:
        log("error: --greedy and --top must be >= 0")
        return 2
    if a.tokens is not None:
        ids = parse_ids(a.tokens)
    else:
        with open(a.tokens_file, encoding="utf-8") as f:
            ids = parse_ids(f.read())
    if not ids:
        log("error: no tokens")
        return 2
    t0 = time.time()
    try:
        model = reference.open_model(a.model, np.float32 if a.f32_weights else None)
        cache = model.new_cache()
        logits = model.forward(ids, cache, last_only=a.last_only)
    except (reference.ModelError, OSError, KeyError) as e:
        log("error: %s" % e)
        return 2
    if a.out:
        logits.astype("<f4").tofile(a.out)
        log("logits [%d][%d] -> %s" % (logits.shape[0], logits.shape[1], a.out))
    if a.top:
        last = logits[-1]
        order = np.argsort(-last, kind="stable")[: a.top]
        print("top: " + ",".join("%d:%.6f" % (i, last[i]) for i in order))
    if a.greedy:
        gen, steps = model.greedy(ids, a.greedy, cache, logits[-1:])
        print("greedy: " + ",".join(str(t) for t in gen))
        if a.gaps:
            print("gaps: " + ",".join("%.6f" % g for g in reference.top2_gap(steps)))
        log("greedy min top1-top2 gap %.4f" % float(reference.top2_gap(steps).min()))
        if a.greedy_out:
            steps.astype("<f4").tofile(a.greedy_out)
            log("greedy logits [%d][%d] -> %s" % (steps.shape[0], steps.shape[1], a.greedy_out))
    sys.stdout.flush()
    log("%d tokens, %s %d layers, %.2fs" % (len(ids), model.arch, model.layers, time.time() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
