#!/usr/bin/env bash
# One-shot set-up on Debian 12 as root: installs the Debian packages lethe needs (only those
# missing; `apt-get update` first), makes the project's Python environment .venv from
# requirements.txt (PyPI's torch 2.11 wheel, whose LibTorch lethe builds against, and the
# reference packages the tests compare with), then configures and builds with ccache and the
# precompiled header (-j2). Measured on a fresh 2-core machine: docs/FOUNDATION.md.
# usage: scripts/setup.sh [--no-test-deps]
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ccache pkg-config python3-venv libopenmpi-dev openmpi-bin libhdf5-dev
      libboost-program-options-dev libspdlog-dev nlohmann-json3-dev libgtest-dev libpcre2-dev libicu-dev zlib1g-dev procps
      clang-format)
# Slurm and munge run the CI's real single-node Slurm test (tests/cli/test_slurm.sh); clang with
# its sanitizer and libFuzzer runtimes builds the fuzzing harnesses (scripts/fuzz.sh); strace and
# iproute2 serve the fault tests.
if [ "${1:-}" != "--no-test-deps" ]; then
  PKGS+=(slurmctld slurmd slurm-client munge clang libclang-rt-14-dev strace iproute2)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Python environment: re-made only when requirements.txt changed (its hash is stamped).
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: Python environment .venv from requirements.txt (torch wheel and its CUDA libraries: ~5 GB)"
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  echo "$want" > "$stamp"
fi

export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLETHE_PYTHON="$PWD/.venv/bin/python" >/dev/null
if [ "${1:-}" = "--no-test-deps" ]; then
  cmake --build build -j2 --target lethe  # the demo needs only the executable
else
  cmake --build build -j2
fi
