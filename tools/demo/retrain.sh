#!/usr/bin/env bash
# Retrain Semantic's demo model from scratch: corpus -> tokenizer -> train
# -> export -> reference numbers. One command; see docs/DEMO_MODEL.md.
#
#   tools/demo/retrain.sh            full model -> models/semantic-demo-5m{,-q8,-q4}
#   tools/demo/retrain.sh --quick    ~1.3M-parameter pipeline test
#                                    -> .cache/demo/models/semantic-demo-quick*
#   tools/demo/retrain.sh --resume   continue an interrupted training from
#                                    its last checkpoint (bit-exact)
#
# Needs: Debian bookworm with apt (packages are fetched with apt-get
# download, or installed: python3-torch), node with the repo's
# node_modules (HF tokenizers), numpy. Training is CPU-only and long: run
# this under nohup and follow .cache/demo/train-PRESET.log. It runs niced.
# Never run in CI. Work files live in .cache/demo (git-ignored).
#
# Reproducibility: torch runs single-threaded on OpenBLAS (Debian's
# libopenblas0-openmp, unpacked into the cache and put first on
# LD_LIBRARY_PATH for the trainer only: the system's reference BLAS is ~10x
# slower and would not give the same float rounding). Same packages, same
# seed, same thread count -> same weights.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
cache="$repo/.cache/demo"
preset=full
name=semantic-demo-5m
models="$repo/models"
resume=()
for arg in "$@"; do
  case "$arg" in
    --quick) preset=quick; name=semantic-demo-quick; models="$cache/models" ;;
    --resume) resume=(--resume) ;;
    *) echo "usage: $0 [--quick] [--resume]" >&2; exit 2 ;;
  esac
done
py=/usr/bin/python3
mkdir -p "$cache/debs" "$models"

if ! "$py" -c 'import torch' 2>/dev/null; then
  echo "retrain: installing python3-torch" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-torch
fi

blas="$cache/debs/root-libopenblas0-openmp/usr/lib/x86_64-linux-gnu/openblas-openmp"
if [ ! -e "$blas/libblas.so.3" ]; then
  (cd "$cache/debs" && apt-get download -q -o APT::Sandbox::User=root libopenblas0-openmp)
  rm -rf "$cache/debs/root-libopenblas0-openmp"
  dpkg-deb -x "$(ls "$cache"/debs/libopenblas0-openmp_*.deb | tail -1)" \
    "$cache/debs/root-libopenblas0-openmp"
fi

echo "== 1/5 corpus" >&2
"$py" tools/demo/corpus.py --cache "$cache"

echo "== 2/5 tokenizer" >&2
node tools/demo/tokenizer.js "$cache/corpus" "$cache/tok"

echo "== 3/5 train ($preset), log in $cache/train-$preset.log" >&2
LD_LIBRARY_PATH="$blas" OMP_NUM_THREADS=1 nice -n 10 \
  "$py" tools/demo/train.py --preset "$preset" --threads 1 \
  --out "$cache/train-$preset" "${resume[@]}" 2>&1 | tee -a "$cache/train-$preset.log"

echo "== 4/5 export" >&2
"$py" tools/demo/export.py --train-dir "$cache/train-$preset" --name "$name" --models "$models"

echo "== 5/5 reference numbers" >&2
LD_LIBRARY_PATH="$blas" OMP_NUM_THREADS=1 nice -n 10 \
  "$py" tools/demo/reference.py "$models/$name" "$models/$name-q8" "$models/$name-q4"
"$py" tools/demo/export.py --train-dir "$cache/train-$preset" --name "$name" --models "$models" --cards-only
echo "retrain: done: $models/$name{,-q8,-q4}" >&2
