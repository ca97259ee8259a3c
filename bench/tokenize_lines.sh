#!/usr/bin/env bash
# Tokenization time against the line length: one line of N MB per run through `lethe tokenize`
# with a real tokenizer.json, best of 3. Linear time means a steady MB/s down the column.
# usage: bench/tokenize_lines.sh LETHE TOKENIZER_JSON [MB ...]   (default sizes: 1 2 5 10)
set -euo pipefail
LETHE=$1
TOK=$2
shift 2
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 2 5 10)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
echo "| line | seconds (best of 3) | MB/s | tokens |"
echo "| ---: | ---: | ---: | ---: |"
for mb in "${sizes[@]}"; do
  # Prose-like text: words, digits, punctuation and spaces, so every pre-tokenizer rule fires.
  python3 -c "
import sys
unit = 'The 3 quick brown foxes, jumping 42 times; over lazy dogs! '
n = int(float(sys.argv[1]) * 1e6) // len(unit) + 1
sys.stdout.write((unit * n)[:int(float(sys.argv[1]) * 1e6)] + '\n')" "$mb" >"$T/line.txt"
  best=""
  for _ in 1 2 3; do
    s=$(date +%s.%N)
    "$LETHE" tokenize --tokenizer "$TOK" --threads 1 <"$T/line.txt" >"$T/ids.txt"
    e=$(date +%s.%N)
    t=$(python3 -c "print(f'{$e - $s:.3f}')")
    if [ -z "$best" ] || python3 -c "import sys; sys.exit(0 if $t < $best else 1)"; then best=$t; fi
  done
  n=$(wc -w <"$T/ids.txt")
  echo "| $mb MB | $best | $(python3 -c "print(f'{$mb / $best:.2f}')") | $n |"
done
