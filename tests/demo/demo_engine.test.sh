#!/usr/bin/env bash
# The demo model's engine checker (check_engine.py: C perplexity vs PyTorch,
# KV 8/4 bounds, save/restore, greedy ids) exercised on a generated
# stand-in with a numpy reference.json, and shown to fail on a tampered
# one, so it is tested before models/semantic-demo-5m exists. Seconds.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SEM_SOURCE_DIR="${SEM_SOURCE_DIR:-$(cd "$here/../.." && pwd)}"
exec /usr/bin/python3 "$here/check_engine_fake.py"
