#!/usr/bin/env bash
# DeepSeek-V2 and Gemma 3 forward passes against the numpy reference
# (F32, MLX q4 and layout variants; prompts of 1, 7 and 300 tokens, which
# cross Gemma's 32-token sliding window). Under ASan a quick subset runs.
set -euo pipefail
args=()
case "${SEM_BUILD_DIR:-}" in *asan*) args+=(--quick) ;; esac
exec /usr/bin/python3 "$SEM_SOURCE_DIR/tests/model/check_families.py" "${args[@]}"
