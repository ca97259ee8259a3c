#!/usr/bin/env bash
# The test suite with lethe's own code under AddressSanitizer and UndefinedBehaviorSanitizer:
# configures build-asan with -DLETHE_SANITIZE=address,undefined (LibTorch, MPI, HDF5 and the
# other libraries stay uninstrumented), builds it (-j2, ccache) and runs ctest there. Any
# sanitizer report aborts the process that made it, so the test fails and prints the report.
# Not part of scripts/test.sh: the instrumented build and the slower tests do not fit CI's time
# budget on 2 cores; docs/RELIABILITY.md records the last run.
# usage: scripts/sanitize.sh [CTEST_ARGS...]   (e.g. -R 'Tokeniz|cli_end_to_end'; default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || bash scripts/setup.sh
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLETHE_SANITIZE=address,undefined \
  -DLETHE_PYTHON="$PWD/.venv/bin/python" >/dev/null
cmake --build build-asan -j2 -- --no-print-directory 2>&1 | grep -E "error:|warning:" || true
[ -x build-asan/lethe ] || { echo "sanitize: the instrumented build failed"; exit 1; }
# LibTorch and OpenMPI allocate at start-up and never free: leak reports would be theirs.
# protect_shadow_gap=0: the CUDA libraries LibTorch loads map memory where ASan's gap would be.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:protect_shadow_gap=0:detect_odr_violation=0:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cd build-asan
set +e
ctest --output-on-failure -j2 --timeout 3600 "$@" 2>&1 | tee ctest.out
rc=${PIPESTATUS[0]}
set -e
echo
echo "---- sanitizer reports (AddressSanitizer / runtime error) ----"
grep -hE "ERROR: AddressSanitizer|runtime error:" Testing/Temporary/LastTest*.log | sort | uniq -c || echo "none"
grep -E "tests passed|tests failed|Total Test time" ctest.out | tail -2
exit "$rc"
