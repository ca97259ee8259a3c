#!/usr/bin/env bash
# Formatting check (CI runs it as the ctest test `format`): every tracked C++ file must be as
# clang-format (.clang-format) writes it. Fix with: clang-format -i $(git ls-files '*.cpp' '*.h')
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null || { echo "format: clang-format is not installed (scripts/setup.sh installs it)"; exit 1; }
mapfile -t files < <(git ls-files '*.cpp' '*.h' 2>/dev/null || find . -path ./build -prune -o -path ./.venv -prune -o \( -name '*.cpp' -o -name '*.h' \) -print)
bad=0
for f in "${files[@]}"; do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then echo "format: $f differs from clang-format"; bad=1; fi
done
[ $bad -eq 0 ] && echo "format: ${#files[@]} files formatted as .clang-format says"
exit $bad
