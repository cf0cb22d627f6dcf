#!/usr/bin/env bash
# build.sh - configure and build Semantic with CMake + Ninja.
# Usage: scripts/build.sh [release|asan]   (default: release)
# Output: build/<flavor>/semantic and the test executables.
set -euo pipefail
cd "$(dirname "$0")/.."
flavor=${1:-release}
case "$flavor" in
  release) opts=(-DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
  asan) opts=(-DCMAKE_BUILD_TYPE=Debug "-DCMAKE_C_FLAGS_DEBUG=-g -O1" -DSEM_SANITIZE=ON) ;;
  -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
  *) echo "build.sh: unknown flavor '$flavor' (release|asan)" >&2; exit 2 ;;
esac
dir=build/$flavor
if [ ! -f "$dir/build.ninja" ]; then
  cmake -S . -B "$dir" -G Ninja "${opts[@]}" >/dev/null
fi
ninja -C "$dir" > "$dir/build.log" 2>&1 || { cat "$dir/build.log" >&2; exit 1; }
echo "build: $dir/semantic"
