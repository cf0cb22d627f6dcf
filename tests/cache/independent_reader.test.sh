#!/bin/bash
# independent_reader.test.sh - cache files are plain safetensors: the test
# executable writes one sample file per KV dtype (through a real kv_pool and
# cache_file_write), and tests/cache/read_cache_file.py, which parses the
# bytes itself with numpy, checks the header, metadata, tensor set, dtypes,
# shapes, CRC32C, token ids and K/V values. A damaged copy must be rejected,
# so the reader's checks are shown to bite.
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
echo "independent reader: ok"
