#!/usr/bin/env bash
# Tokenization time against the line length: one line of N MB through `lethe tokenize` and
# through Hugging Face tokenizers (the PyPI package, PYTHON's environment) with the same
# tokenizer.json, run alternately, best of 3 each; both are whole commands (start-up, loading the
# tokenizer, reading the line, writing the ids). Linear time means a steady MB/s down the column;
# the token counts must agree.
# usage: bench/tokenize_lines.sh LETHE TOKENIZER_JSON [MB ...]   (default sizes: 1 2 5 10;
#        PYTHON defaults to .venv/bin/python)
set -euo pipefail
LETHE=$1
TOK=$2
shift 2
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 2 5 10)
PY=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cat >"$T/hf.py" <<'PY'
import sys
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1])
for line in sys.stdin:
    print(" ".join(map(str, tok.encode(line.rstrip("\n"), add_special_tokens=False).ids)))
PY
seconds() {  # seconds COMMAND...: wall time of one run, stdin from the line, ids to $T/ids.txt
  local s e
  s=$(date +%s.%N)
  "$@" <"$T/line.txt" >"$T/ids.txt" 2>"$T/log"
  e=$(date +%s.%N)
  python3 -c "print(f'{$e - $s:.3f}')"
}
min() { python3 -c "import sys; print(min(sys.argv[1:], key=float))" "$@"; }
echo "| line | lethe s (best of 3) | lethe MB/s | tokenizers s | tokenizers MB/s | tokenizers / lethe | tokens lethe / tokenizers |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for mb in "${sizes[@]}"; do
  # Prose-like text: words, digits, punctuation and spaces, so every pre-tokenizer rule fires.
  python3 -c "
import sys
unit = 'The 3 quick brown foxes, jumping 42 times; over lazy dogs! '
n = int(float(sys.argv[1]) * 1e6) // len(unit) + 1
sys.stdout.write((unit * n)[:int(float(sys.argv[1]) * 1e6)] + '\n')" "$mb" >"$T/line.txt"
  lt=(); ht=()
  for _ in 1 2 3; do
    lt+=("$(seconds "$LETHE" tokenize --tokenizer "$TOK" --threads 1 --no-special)")
    nl=$(wc -w <"$T/ids.txt")
    ht+=("$(seconds "$PY" "$T/hf.py" "$TOK")")
    nh=$(wc -w <"$T/ids.txt")
  done
  l=$(min "${lt[@]}"); h=$(min "${ht[@]}")
  python3 -c "print(f'| $mb MB | $l | {$mb / $l:.2f} | $h | {$mb / $h:.2f} | {$h / $l:.2f} | $nl / $nh |')"
done
