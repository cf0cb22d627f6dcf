#!/usr/bin/env bash
# The demo model (models/semantic-demo-5m{,-q8,-q4}) and its build tools:
# R data reader and corpus cleaning on synthetic input, model directory
# layout, the numpy reference forward pass against reference.json, the
# tokenizer / chat template against the real Hugging Face libraries, and
# the C engine against reference.json (check_engine.py: perplexity vs
# PyTorch, KV 8/4 bounds, save/restore, greedy ids).
# No training, no torch, no network; seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SEM_SOURCE_DIR="${SEM_SOURCE_DIR:-$(cd "$here/../.." && pwd)}"
if [ ! -f "$SEM_SOURCE_DIR/models/semantic-demo-5m/config.json" ]; then
  echo "skipped: the demo model is not committed yet (train it with tools/demo/retrain.sh)"
  exit 77
fi
/usr/bin/python3 "$here/check_demo.py"
node "$here/check_tokenizer.mjs"
# The C engine against reference.json (fewer windows and prompts under ASan).
args=()
case "${SEM_BUILD_DIR:-}" in *asan*) args+=(--windows 4 --prompts 5) ;; esac
/usr/bin/python3 "$here/check_engine.py" "${args[@]}"
