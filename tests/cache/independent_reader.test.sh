#!/bin/bash
# independent_reader.test.sh - cache files are plain safetensors: the test
# executable writes one sample file per KV dtype (through a real kv_pool and
# cache_file_write), and tests/cache/read_cache_file.py, which parses the
# bytes itself with numpy, checks the header, metadata, tensor set, dtypes,
# shapes, CRC32C, token ids and K/V values. Then the engine itself writes a
# version 2 (ring) file for a tiny generated Gemma 3 model with f16 and q8
# KV (engine_test_families --write-ring-sample), and the reader checks its
# format and that its tokens and K/V rows equal what the C side loads back.
# Damaged copies must be rejected, so the reader's checks are shown to bite.
set -euo pipefail
src="${SEM_SOURCE_DIR:-.}"
bld="${SEM_BUILD_DIR:-build/release}"
exe="$bld/cache_test_cache_file"
reader="$src/tests/cache/read_cache_file.py"
dir="$(mktemp -d "${TMPDIR:-/tmp}/semcache.XXXXXX")"
trap 'rm -rf "$dir"' EXIT

"$exe" --write-samples "$dir"
for dt in f16 bf16 q8 q4 f32; do
    test -f "$dir/$dt.safetensors" || { echo "FAIL: no $dt sample"; exit 1; }
done
/usr/bin/python3 "$reader" "$dir"/*.safetensors

# One flipped data byte (the last byte of the file): the CRC must catch it.
cp "$dir/f16.safetensors" "$dir/bad.safetensors"
/usr/bin/python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-1] ^= 0x20; open(p, "wb").write(b)' "$dir/bad.safetensors"
/usr/bin/python3 "$reader" --expect-fail "$dir/bad.safetensors"
# A ring file from the engine: 89 tokens, layers 0 and 1 slide (window 32)
# and hold positions 48..88 only.
"$bld/engine_test_families" --write-ring-sample "$dir/ring"
for kv in f16 q8; do
    file="$(find "$dir/ring/$kv" -name ada.safetensors)"
    out="$(/usr/bin/python3 "$reader" --rows "$dir/ring/$kv.rows" "$file")"
    echo "$out"
    grep -q "version 2, $kv, .*sliding_layers 110, sliding_window 32, ring_from 48" <<< "$out" ||
        { echo "FAIL: $kv is not the expected ring file"; exit 1; }
done
# Other sliding layers in the header (same length, so the offsets stay
# valid; the CRC covers only the data): the shapes no longer fit.
/usr/bin/python3 -c 'import sys; b = open(sys.argv[1], "rb").read(); n = b.count(b"\"sliding_layers\":\"110\""); assert n == 1, n
open(sys.argv[2], "wb").write(b.replace(b"\"sliding_layers\":\"110\"", b"\"sliding_layers\":\"011\""))' "$file" "$dir/ring-bad.safetensors"
/usr/bin/python3 "$reader" --rows "$dir/ring/q8.rows" --expect-fail "$dir/ring-bad.safetensors"
# One C-side value off by one ulp (the last V of the global layer): the rows must differ.
cp "$dir/ring/q8.rows" "$dir/bad.rows"
/usr/bin/python3 -c 'import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[-4] ^= 1; open(p, "wb").write(b)' "$dir/bad.rows"
/usr/bin/python3 "$reader" --rows "$dir/bad.rows" --expect-fail "$file"
echo "independent reader: ok"
