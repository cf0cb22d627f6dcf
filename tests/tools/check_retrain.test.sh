#!/usr/bin/env bash
# tools/demo/check_retrain.py on synthetic training directories: identical
# runs are "reproduced" (exit 0, every tensor bit-identical), a perplexity
# 1% off passes the 2% bound, 3% off fails it (exit 1), and a run without
# its final log is bad input (exit 2).
set -euo pipefail
src=${SEM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
tool="$src/tools/demo/check_retrain.py"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/semretrain.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# make_run DIR PPL DELTA: a finished run with that validation perplexity and
# one weight element moved by DELTA
make_run() {
  mkdir -p "$1"
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import json, sys
import numpy as np
d, ppl, delta = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
w = np.arange(12, dtype=np.float32).reshape(3, 4)
w[1, 2] += delta
np.savez(d + "/weights.npz", **{"layers.0.w": w, "norm": np.ones(4, np.float32)})
json.dump({"valid": {"ppl": ppl}, "wall_s": 1.0, "final_train_loss": 3.0, "threads": 1,
           "seed": 1234, "torch": "t", "machine": "m"}, open(d + "/train_log.json", "w"))
PY
}

expect() { # expect RC ARGS...: runs the tool and checks its exit status
  local want=$1; shift
  local rc=0
  /usr/bin/python3 "$tool" "$@" > "$tmp/out" 2>&1 || rc=$?
  cat "$tmp/out"
  [ "$rc" = "$want" ] || { echo "FAIL: exit $rc, expected $want: $*"; exit 1; }
}

make_run "$tmp/a" 40.0 0
make_run "$tmp/same" 40.0 0
make_run "$tmp/near" 40.4 0.5
make_run "$tmp/far" 41.2 0
expect 0 --original "$tmp/a" --rerun "$tmp/same"
grep -q "2 of 2 tensors bit-identical" "$tmp/out" || { echo "FAIL: identical weights not reported"; exit 1; }
expect 0 --original "$tmp/a" --rerun "$tmp/near"
grep -q "1 of 2 tensors bit-identical, max abs difference 0.5" "$tmp/out" || { echo "FAIL: weight difference not reported"; exit 1; }
expect 1 --original "$tmp/a" --rerun "$tmp/far"
mkdir -p "$tmp/unfinished"
expect 2 --original "$tmp/a" --rerun "$tmp/unfinished"
echo "check_retrain.test: ok"
