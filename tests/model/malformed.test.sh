#!/usr/bin/env bash
# Malformed model directories: clear errors naming the file, exit 1, no crash.
set -euo pipefail
exec /usr/bin/python3 "$SEM_SOURCE_DIR/tests/model/check_malformed.py"
