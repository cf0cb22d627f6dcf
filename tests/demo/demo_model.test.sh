#!/usr/bin/env bash
# The demo model (models/semantic-demo-5m{,-q8,-q4}) and its build tools:
# R data reader and corpus cleaning on synthetic input, model directory
# layout, the numpy reference forward pass against reference.json, and the
# tokenizer / chat template against the real Hugging Face libraries.
# No training, no torch, no network; a few seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SEM_SOURCE_DIR="${SEM_SOURCE_DIR:-$(cd "$here/../.." && pwd)}"
if [ ! -f "$SEM_SOURCE_DIR/models/semantic-demo-5m/config.json" ]; then
  echo "skipped: the demo model is not committed yet (train it with tools/demo/retrain.sh)"
  exit 77
fi
/usr/bin/python3 "$here/check_demo.py"
node "$here/check_tokenizer.mjs"
