#!/usr/bin/env bash
# deps.sh - install what Semantic needs to build and test, idempotently, on
# Debian 12: the C toolchain and libraries, /usr/bin/python3 with numpy for
# the reference forward pass, and Node.js with the npm packages the tests use
# (HF tokenizers, @huggingface/jinja, the official OpenAI/Anthropic SDKs).
# Usage: scripts/deps.sh [--no-npm]
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(build-essential cmake ninja-build pkg-config clang
          libjansson-dev libpcre2-dev libutf8proc-dev libmicrohttpd-dev libcmocka-dev
          python3 python3-numpy nodejs npm curl)

missing=()
for p in "${APT_PKGS[@]}"; do
  # nodejs/npm may come from elsewhere (e.g. NodeSource): a working binary is enough.
  case "$p" in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${1:-}" != "--no-npm" ] && [ -f package.json ]; then
  stamp=node_modules/.semantic-stamp
  want=$(sha256sum package.json package-lock.json 2>/dev/null | sha256sum | cut -c1-16)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "deps: installing npm packages"
    if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error
    else npm install --no-audit --no-fund --loglevel=error; fi
    echo "$want" > "$stamp"
  fi
fi
