#!/usr/bin/env bash
# The forward pass against the numpy reference, every arch x weight format.
# Under the ASan build (Debug, slow) a quick subset runs.
set -euo pipefail
args=()
case "${SEM_BUILD_DIR:-}" in *asan*) args+=(--quick) ;; esac
exec /usr/bin/python3 "$SEM_SOURCE_DIR/tests/model/check_reference.py" "${args[@]}"
