#!/usr/bin/env bash
# e2e.test.sh - agent caches (issue 6) and model hot-swap (issue 7) end to
# end: real `semantic serve` processes on generated tiny models with the
# real Qwen3 tokenizer and chat template, driven by the official OpenAI and
# Anthropic SDKs (tests/server/e2e/*.test.mjs under `node --test`; each file
# starts, restarts and stops its own servers).
#
# Models, under $build/models/e2e (made once, --if-missing):
#   org/model-a    llama, q4, 2 layers, 1 KV head of 32, a 32K context (long
#                  generations last seconds even on fast machines)
#   org/model-b    qwen2, q8, 3 layers, 2 KV heads of 16 (another geometry)
#   org/model-big  llama, f16, hidden 256 (~90 MB: the RSS check)
set -euo pipefail
src=${SEM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SEM_BUILD_DIR:-$src/build/release}
bin=${SEM_BIN:-$build/semantic}
command -v node >/dev/null || { echo "e2e.test: node not found: skipped"; exit 0; }
[ -d "$src/node_modules/openai" ] || { echo "e2e.test: node_modules missing: skipped"; exit 0; }

models=$build/models/e2e
gen() {
  /usr/bin/python3 "$src/tools/gen_model.py" --shape tiny --tokenizer qwen3 --if-missing --quiet "$@"
}
gen --dtype q4 --layers 2 --hidden 64 --intermediate 128 --heads 2 --kv-heads 1 --max-pos 32768 --seed 1 \
  --out "$models/org/model-a"
gen --arch qwen2 --dtype q8 --layers 3 --hidden 64 --intermediate 128 --heads 4 --kv-heads 2 --seed 2 \
  --out "$models/org/model-b"
gen --dtype f16 --layers 2 --hidden 256 --intermediate 512 --heads 4 --kv-heads 2 --tied --seed 3 \
  --out "$models/org/model-big"

quick=0
case "$build" in *asan*) quick=1 ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/seme2e.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
SEM_BIN="$bin" SEM_E2E_MODELS="$models" SEM_E2E_TMP="$tmp" SEM_QUICK=$quick \
  node --test --test-concurrency=1 "$src"/tests/server/e2e/*.test.mjs
