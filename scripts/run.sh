#!/usr/bin/env bash
# run.sh - build Semantic and run it on the built-in default model.
# Installs what it needs (apt, idempotently), builds the release binary,
# makes the demo model if it is missing, and runs a generation with it.
# Usage: scripts/run.sh [extra `semantic generate` flags]
#   SEMANTIC_MODEL=DIR scripts/run.sh   runs another model directory
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,6p' "$0"; exit 0 ;; esac
scripts/deps.sh --no-npm
scripts/build.sh release
model=${SEMANTIC_MODEL:-models/gen/demo-tiny}
if [ ! -f "$model/config.json" ]; then
  echo "run: making the demo model in $model"
  /usr/bin/python3 tools/gen_model.py --shape tiny --dtype q4 --out "$model" --if-missing
fi
exec build/release/semantic generate --model "$model" --tokens 1,2,3,4,5,6,7 -n 32 "$@"
