#!/usr/bin/python3
"""check_retrain.py - does a from-scratch retrain reproduce the demo model?

Compares two training directories written by tools/demo/train.py (each
holds train_log.json and weights.npz): the validation perplexity PyTorch
measured at the end of each run, within a relative tolerance (default 2%,
the demo model issue's bound), and the weights themselves (bit-identical
is expected: same packages, seed and thread count give the same floats).

  check_retrain.py --rerun .cache/demo/train-full-rerun
  check_retrain.py --original DIR --rerun DIR --tolerance 0.02

Exit status 0 when the perplexities agree within the tolerance, 1 when
they do not, 2 on bad input (a missing or unfinished directory).
"""
import argparse
import json
import os
import sys

import numpy as np


def load(run_dir):
    log_path = os.path.join(run_dir, "train_log.json")
    w_path = os.path.join(run_dir, "weights.npz")
    for p in (log_path, w_path):
        if not os.path.exists(p):
            raise ValueError("%s is missing (has the run finished?)" % p)
    with open(log_path) as f:
        log = json.load(f)
    if "valid" not in log or "ppl" not in log["valid"]:
        raise ValueError("%s has no final validation perplexity" % log_path)
    return log, np.load(w_path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--original", default=".cache/demo/train-full",
                    help="the run the committed model was exported from")
    ap.add_argument("--rerun", required=True, help="the from-scratch retrain")
    ap.add_argument("--tolerance", type=float, default=0.02,
                    help="largest relative perplexity difference accepted")
    args = ap.parse_args()
    try:
        (log_a, w_a), (log_b, w_b) = load(args.original), load(args.rerun)
    except ValueError as e:
        print("check_retrain: %s" % e, file=sys.stderr)
        return 2
    ppl_a, ppl_b = log_a["valid"]["ppl"], log_b["valid"]["ppl"]
    rel = abs(ppl_b - ppl_a) / ppl_a
    print("validation ppl: original %.6f, rerun %.6f, relative difference %.3e "
          "(tolerance %.3g)" % (ppl_a, ppl_b, rel, args.tolerance))
    for k in ("wall_s", "final_train_loss", "threads", "seed", "torch", "machine"):
        print("  %-16s %-24s %s" % (k, log_a.get(k), log_b.get(k)))
    if sorted(w_a.files) != sorted(w_b.files):
        print("weights: different tensor names")
    else:
        same = [np.array_equal(w_a[k], w_b[k]) for k in w_a.files]
        worst = max(float(np.max(np.abs(w_a[k].astype(np.float64) - w_b[k])))
                    for k in w_a.files)
        print("weights: %d of %d tensors bit-identical, max abs difference %.3g"
              % (sum(same), len(same), worst))
    ok = rel <= args.tolerance
    print("check_retrain: %s" % ("reproduced" if ok else "NOT reproduced"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
