#!/usr/bin/env bash
# SPUNGE as a Slurm job array: one job per subset (each on its own GPUs, scheduled whenever
# they are free), then a merge-and-evaluate job that starts when every subset job succeeded.
# Writes the subsets first (lethe spunge --split-only, on the login node: no GPU needed).
# Hardware: per subset job 1 node x 4 GPUs (80 GB each); the merge job 1 node, 4 CPU tasks.
# Time: 7B model, 200 steps per subset: about 30 minutes per subset job (estimated), the merge
#   about 10 minutes (tensor by tensor from disk).
# usage: slurm/spunge-array.sh MODEL_DIR FORGET RETAIN ATTRIBUTE OUT [extra lethe unlearn options]
set -euo pipefail
MODEL=$1; FORGET=$2; RETAIN=$3; ATTR=$4; OUT=$5; shift 5
HERE=$(cd "$(dirname "$0")" && pwd)
LETHE=${LETHE:-$HERE/../build/lethe}
"$LETHE" spunge --model "$MODEL" --forget "$FORGET" --retain "$RETAIN" --split-by "$ATTR" --split-only --out "$OUT"
K=$(wc -l <"$OUT/subsets.txt")
array=$(sbatch --parsable --array=0-$((K - 1)) --export=ALL,LETHE="$LETHE" "$HERE/spunge-subset.sbatch" \
        "$MODEL" "$RETAIN" "$OUT" "$@")
merge=$(sbatch --parsable --dependency=afterok:"$array" --export=ALL,LETHE="$LETHE" "$HERE/spunge-merge.sbatch" \
        "$MODEL" "$FORGET" "$RETAIN" "$OUT")
echo "submitted: subsets array $array ($K jobs), merge $merge (after all of them)"
