#!/usr/bin/env bash
# Set-up (scripts/setup.sh) and the whole test suite: unit tests, the checks against Hugging Face
# transformers, peft, tokenizers, safetensors and mergekit (they fail, never skip, when a package
# is missing), corrupt-input, multi-rank and CLI tests. Lists every reference check that ran,
# then repeats ctest's summary as the last lines.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cd build
set +e
ctest --output-on-failure -j2 --timeout 1200 2>&1 | tee ctest.out
rc=${PIPESTATUS[0]}
set -e
echo
echo "---- reference checks that ran (Testing/Temporary/LastTest.log) ----"
grep -h "\[ reference \]" Testing/Temporary/LastTest.log | sed 's/^.*\[ reference \]/[ reference ]/' | sort -u || true
echo
grep -E "tests passed|tests failed|Total Test time" ctest.out | tail -2
exit "$rc"
