#!/usr/bin/env bash
# Self-checks of the Python model tools (tools/): safetensors round trip,
# MLX quantization bounds, generated model layout, and the numpy reference
# forward pass (causality, KV cache, naive-loop agreement, RoPE, CLI).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export SEM_SOURCE_DIR="${SEM_SOURCE_DIR:-$(cd "$here/../.." && pwd)}"
exec /usr/bin/python3 "$here/ref_selfcheck.py"
