#!/usr/bin/env bash
# serve.test.sh - `semantic serve` end to end: a generated tiny model with the
# real Qwen3 tokenizer and chat template, the official OpenAI and Anthropic
# SDKs (tests/server/js/*.test.mjs under `node --test`), a hostile-input
# table, /metrics through a strict Prometheus parser, and graceful shutdown
# (SIGTERM while a stream runs: the stream completes, exit status 0).
#
# The server gets API keys, an admin key, a per-agent rate limit, a short
# idle timeout and --test-hooks (forced completions), and listens on a free
# port (--port 0 --port-file). It is always stopped at the end.
set -euo pipefail
src=${SEM_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
build=${SEM_BUILD_DIR:-$src/build/release}
bin=${SEM_BIN:-$build/semantic}
command -v node >/dev/null || { echo "serve.test: node not found: skipped"; exit 0; }
[ -d "$src/node_modules/openai" ] || { echo "serve.test: node_modules missing: skipped"; exit 0; }

# A very small model (2 layers, hidden 64) with the real Qwen3 tokenizer and
# chat template: the ASan build decodes it fast enough for the suite.
# It lives under a models directory so that its id is "tiny-qwen3". Its 32K
# context lets forced long generations outlast a client hang-up on fast CPUs.
models=$build/models/srv
model=$models/tiny-qwen3
mkdir -p "$models"
/usr/bin/python3 "$src/tools/gen_model.py" --shape tiny --tokenizer qwen3 --dtype q4 --layers 2 \
  --hidden 64 --intermediate 128 --heads 2 --kv-heads 1 --max-pos 32768 --out "$model" --if-missing --quiet
# Under the ASan build (Debug, slow) the node tests use shorter generations.
quick=0
case "$build" in *asan*) quick=1 ;; esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/semserve.XXXXXX")
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

SEMANTIC_API_KEYS="sk-test-a,sk-test-b" SEMANTIC_ADMIN_KEY="adm-secret" \
  "$bin" serve --models-dir "$models" --model tiny-qwen3 --cache-dir "$tmp/cache" --port 0 --port-file "$tmp/port" \
  --test-hooks --agent-rate-limit-rps 0.01 --agent-rate-limit-burst 2 --idle-timeout-s 4 \
  --max-body-bytes 1048576 --cors-origins https://app.example --max-batch 8 --threads 1 \
  --log-level info 2> "$tmp/server.log" &
pid=$!

# Wait for the port, then for readiness (the model loads after the port opens).
for _ in $(seq 1 600); do
  [ -s "$tmp/port" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log"; echo "server exited early"; exit 1; }
  sleep 0.1
done
port=$(cat "$tmp/port")
url="http://127.0.0.1:$port"
for _ in $(seq 1 1200); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$url/health/ready" || true)
  [ "$code" = 200 ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/server.log"; echo "server exited early"; exit 1; }
  sleep 0.1
done
[ "$code" = 200 ] || { cat "$tmp/server.log"; echo "server never became ready"; exit 1; }

status=0
SEM_URL="$url" SEM_API_KEY=sk-test-a SEM_ADMIN_KEY=adm-secret SEM_QUICK=$quick \
  node --test --test-concurrency=1 "$src"/tests/server/js/*.test.mjs || status=$?

# Graceful shutdown: SIGTERM while a stream runs; the stream must finish.
curl -sN "$url/v1/chat/completions" -H "Authorization: Bearer sk-test-a" \
  -d '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":24,"stream":true}' \
  > "$tmp/stream.txt" &
curl_pid=$!
for _ in $(seq 1 100); do [ -s "$tmp/stream.txt" ] && break; sleep 0.05; done
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=""
wait "$curl_pid" || true
if [ "$rc" != 0 ]; then echo "FAIL: server exit status $rc after SIGTERM"; status=1; fi
if ! grep -q '^data: \[DONE\]' "$tmp/stream.txt"; then
  echo "FAIL: the stream running at SIGTERM did not complete"; status=1
fi
grep -q 'SIGTERM received: draining' "$tmp/server.log" || { echo "FAIL: no drain log line"; status=1; }
# every log line of a request carries its id
if grep 'http req=' "$tmp/server.log" | grep -qv 'req=req_\|req=[A-Za-z0-9._-]'; then
  echo "FAIL: a request log line without a request id"; status=1
fi
# SEMANTIC_KERNELS reaches serve's kernel contexts as it does every other
# command's: the default above, f32 activations here (on a CPU without AVX2
# both are the reference kernels).
grep -q 'kernels isa=\(avx2\|avx512\|ref\) ' "$tmp/server.log" || { echo "FAIL: no default kernels log line"; status=1; }
SEMANTIC_KERNELS=exact "$bin" serve --models-dir "$models" --model tiny-qwen3 --cache-dir none --port 0 \
  --port-file "$tmp/port2" --threads 1 --log-level info 2> "$tmp/server2.log" &
pid=$!
for _ in $(seq 1 600); do grep -q 'serving model=' "$tmp/server2.log" && break; sleep 0.1; done
kill -TERM "$pid"; wait "$pid" || true; pid=""
grep -q 'kernels isa=\(avx2-exact\|avx512-exact\|ref\) ' "$tmp/server2.log" || {
  echo "FAIL: SEMANTIC_KERNELS=exact did not reach serve"; cat "$tmp/server2.log"; status=1; }
if [ "$status" != 0 ]; then echo "--- server log (tail)"; tail -n 60 "$tmp/server.log"; fi
exit $status
