#!/usr/bin/env bash
# run.sh - start `semantic serve` on a generated model and run the load
# bench (tools/load/load.mjs) against it over loopback, then stop it.
# A bench, not a test: it prints figures (see docs/BENCHMARKS.md).
#
# Usage: tools/load/run.sh [--model DIR] [--clients 64] [--duration 60]
#          [--warmup 10] [--max-tokens 32] [--max-batch 64] [--bin PATH]
# Default model: tiny Llama-shaped q4 with the Qwen3 tokenizer, generated
# into build/models/load-tiny-qwen3 if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=build/release/semantic model="" clients=64 duration=60 warmup=10 max_tokens=32 max_batch=64
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift 2 ;;
    --clients) clients=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --max-batch) max_batch=$2; shift 2 ;;
    --bin) bin=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
if [ -z "$model" ]; then
  model=build/models/load-tiny-qwen3
  mkdir -p build/models
  /usr/bin/python3 tools/gen_model.py --shape tiny --tokenizer qwen3 --dtype q4 --out "$model" --if-missing --quiet
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/semload.XXXXXX")
pid=""
cleanup() { [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
"$bin" serve --model "$model" --port 0 --port-file "$tmp/port" --max-batch "$max_batch" \
  --log-level warn 2> "$tmp/server.log" &
pid=$!
for _ in $(seq 1 600); do [ -s "$tmp/port" ] && break; sleep 0.1; done
url="http://127.0.0.1:$(cat "$tmp/port")"
for _ in $(seq 1 1200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health/ready")" = 200 ] && break; sleep 0.1
done
echo "model $model, server $bin, max_batch $max_batch, $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
node tools/load/load.mjs --url "$url" --clients "$clients" --duration "$duration" --warmup "$warmup" --max-tokens "$max_tokens"
