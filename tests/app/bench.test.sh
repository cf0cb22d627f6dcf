#!/usr/bin/env bash
# `semantic bench model` on a tiny generated model: it runs --runs times and
# reports the best of each figure with decode's range, counts the KV cache
# in the bytes read per token (less at 8 bits), and rejects bad
# option values with exit status 2; `bench batch` prints every batch size
# and the TTFT lines; an unknown SEMANTIC_KERNELS is an error. Figures are
# printed, never asserted.
set -euo pipefail
build=${SEM_BUILD_DIR:-$SEM_SOURCE_DIR/build/release}
bin=${SEM_BIN:-$build/semantic}
model=$build/models/bench-tiny
/usr/bin/python3 "$SEM_SOURCE_DIR/tools/gen_model.py" --shape tiny --dtype q4 --layers 2 \
  --out "$model" --if-missing --quiet
out=$("$bin" bench model --model "$model" --prompt 8 --decode 8 --mem-mb 64 --runs 2 2>/dev/null)
echo "$out"
for want in 'prefill: .* \(best of 2\)$' 'decode: .* \(best of 2; slowest [0-9.]+\)$' \
            'memory read: .* best of 2\)$' 'roofline: .* decode reaches [0-9.]+% of it$'; do
  grep -Eq "^$want" <<<"$out" || { echo "FAIL: no line matching '$want'"; exit 1; }
done
# bytes per token = weights + the KV cache at the mean decode context
# (prompt 8 + (8 + 1) / 2 = 12.5 positions; KiB below 1 MiB, as here);
# 8-bit KV reads about half
kv_mib() { sed -nE 's/^bytes\/token: +([0-9.]+) MiB read .*: ([0-9.]+) MiB of weights \+ ([0-9.]+) KiB of ([a-z0-9]+) KV cache$/\1 \2 \3 \4/p' <<<"$1"; }
read -r total weights kv fmt <<<"$(kv_mib "$out")"
[ "$fmt" = f16 ] || { echo "FAIL: no bytes/token line with the KV cache"; exit 1; }
awk -v t="$total" -v w="$weights" -v k="$kv" 'BEGIN { exit !(k > 0 && (w + k / 1024 - t) ^ 2 < 0.01) }' ||
  { echo "FAIL: bytes/token $total != $weights + $kv"; exit 1; }
grep -Eq '^ +\(12\.5 positions on average\)$' <<<"$out" ||
  { echo "FAIL: mean decode context not 12.5"; exit 1; }
out8=$("$bin" bench model --model "$model" --prompt 8 --decode 8 --mem-mb 64 --runs 1 --kv-bits 8 2>/dev/null)
read -r _ _ kv8 fmt8 <<<"$(kv_mib "$out8")"
[ "$fmt8" = q8 ] || { echo "FAIL: --kv-bits 8 reports $fmt8"; exit 1; }
awk -v a="$kv8" -v b="$kv" 'BEGIN { exit !(a < b) }' || { echo "FAIL: q8 KV $kv8 MiB not below f16 $kv"; exit 1; }
rc=0
"$bin" bench model --model "$model" --runs 0 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "FAIL: --runs 0 exited $rc, expected 2"; exit 1; }
# bench batch: every batch size, the best of --runs, and the TTFT lines
outb=$("$bin" bench batch --model "$model" --prompt 8 --decode 8 --long-prompt 96 --chunk 16 --runs 2 2>/dev/null)
echo "$outb"
for b in ' 1' ' 2' ' 4' ' 8' 16; do
  grep -Eq "^batch $b: aggregate decode +[1-9][0-9.]* tok/s \([0-9.]+x batch 1, best of 2\)$" <<<"$outb" ||
    { echo "FAIL: no batch $b line"; exit 1; }
done
grep -Eq '^long prompt: +[0-9]+ tokens, TTFT [0-9]+ ms \(prefill chunk 16\)$' <<<"$outb" &&
  grep -Eq '^short request arriving 20 ms into it: TTFT [0-9]+ ms, time per output token [0-9.]+ ms$' <<<"$outb" ||
  { echo "FAIL: no TTFT lines"; exit 1; }
# an unknown kernel mode is an error, not a silent default
rc=0
msg=$(SEMANTIC_KERNELS=int9 "$bin" bench model --model "$model" --runs 1 2>&1 >/dev/null) || rc=$?
[ "$rc" != 0 ] && grep -q 'SEMANTIC_KERNELS=int9: expected ref, exact, int8 or default' <<<"$msg" ||
  { echo "FAIL: SEMANTIC_KERNELS=int9 exited $rc: $msg"; exit 1; }
echo "bench.test: ok"
