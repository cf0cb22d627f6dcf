#!/usr/bin/env bash
# `semantic bench model` on a tiny generated model: it runs --runs times and
# reports the best of each figure with decode's range, and rejects bad
# option values with exit status 2. Figures are printed, never asserted.
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
rc=0
"$bin" bench model --model "$model" --runs 0 2>/dev/null || rc=$?
[ "$rc" = 2 ] || { echo "FAIL: --runs 0 exited $rc, expected 2"; exit 1; }
echo "bench.test: ok"
