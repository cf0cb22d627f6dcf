#!/usr/bin/env bash
# run.sh - build Semantic and serve the built-in default model.
# Installs what it needs (apt and npm, idempotently), builds the release
# binary, picks the default model (the committed demo model in models/, or
# else a small generated one, made if missing) and runs `semantic serve` on
# it: OpenAI- and Anthropic-compatible APIs on http://127.0.0.1:8000.
# Usage: scripts/run.sh [extra `semantic serve` flags]
#   SEMANTIC_MODEL=DIR scripts/run.sh   serves another model directory
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,8p' "$0"; exit 0 ;; esac
scripts/deps.sh
scripts/build.sh release
model=${SEMANTIC_MODEL:-}
if [ -z "$model" ]; then
  for m in models/semantic-demo-5m models/gen/demo-tiny; do
    if [ -f "$m/config.json" ]; then model=$m; break; fi
  done
fi
if [ -z "$model" ]; then
  model=models/gen/demo-tiny
  echo "run: making a small random-weight model in $model (train the demo model: tools/demo/retrain.sh)"
  /usr/bin/python3 tools/gen_model.py --shape tiny --dtype q4 --tokenizer qwen3 --out "$model" --if-missing
fi
echo "run: serving $model on http://127.0.0.1:${SEMANTIC_PORT:-8000} (Ctrl-C to stop)"
exec build/release/semantic serve --model "$model" "$@"
