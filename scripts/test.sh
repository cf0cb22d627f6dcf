#!/usr/bin/env bash
# test.sh - the whole test suite: installs dependencies, builds the release
# and the ASan+UBSan flavors, generates the test models, and runs every
# ctest test in both builds.
# Usage: scripts/test.sh [ctest args...]   e.g. scripts/test.sh -R formats
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] && { sed -n '2,5p' "$0"; exit 0; }
scripts/deps.sh
scripts/build.sh release
scripts/build.sh asan
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
jobs=$(nproc)
echo "== release =="
ctest --test-dir build/release --output-on-failure -j "$jobs" "$@"
echo "== asan+ubsan =="
ctest --test-dir build/asan --output-on-failure -j "$jobs" "$@"
