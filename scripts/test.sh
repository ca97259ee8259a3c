#!/usr/bin/env bash
# Set-up (scripts/setup.sh) and the whole test suite: unit tests, the Python parity
# reference, the Hugging Face JS tokenizer comparison, corrupt-input and CLI tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd build
ctest --output-on-failure -j2 --timeout 1200
