#!/usr/bin/env bash
# Set-up (scripts/setup.sh) and the whole test suite: unit tests, the checks against Hugging Face
# transformers, peft, tokenizers, safetensors and mergekit (they fail, never skip, when a package
# is missing), corrupt-input, crash-point, disk-full, multi-rank and CLI tests, then the libFuzzer
# harnesses (scripts/fuzz.sh). Lists every reference check that ran, then repeats ctest's
# summary as the last lines.
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
cd ..
echo
echo "---- fuzzing (scripts/fuzz.sh, ${FUZZ_SECONDS:-30} s per harness) ----"
set +e
FUZZ_SECONDS=${FUZZ_SECONDS:-30} bash scripts/fuzz.sh
fuzz_rc=$?
set -e
echo
grep -E "tests passed|tests failed|Total Test time" build/ctest.out | tail -2
[ "$fuzz_rc" -eq 0 ] && echo "fuzzing: no findings" || echo "fuzzing: FAILED (see above)"
[ "$rc" -eq 0 ] && exit "$fuzz_rc"
exit "$rc"
