#!/usr/bin/env bash
# Checkpoint write and read bandwidth: `lethe bench checkpoint` (save_model with its fsyncs and
# completion marker; load_model with its checks, page cache dropped first) against dd on the
# same disk, alternately: dd writing the same number of bytes with conv=fsync, and dd reading
# them back after dropping the page cache; and, for the warm read (the files in the page cache),
# a memory copy: dd reading the same bytes from the page cache into its buffer. Prints the
# medians and lethe's share of each bound. Run as root for drop_caches (otherwise lethe's per-file fadvise still drops its own
# files, and dd reads with O_DIRECT).
# usage: bench/run_io_bench.sh CONFIG [REPEATS=3] [FORMAT=native] [DIR=runs]
set -euo pipefail
cd "$(dirname "$0")/.."
CFG=$1; R=${2:-3}; FMT=${3:-native}; DIR=${4:-runs}
PY=${PYTHON:-.venv/bin/python}; L=${BUILD:-build}/lethe
[ -x "$L" ] || { echo "build first: bash scripts/setup.sh" >&2; exit 2; }
mkdir -p "$DIR"; W=$(mktemp -d -p "$DIR"); trap 'rm -rf "$W"' EXIT
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }
secs() { local t0=$EPOCHREALTIME; "$@" >/dev/null 2>&1; awk -v a="$EPOCHREALTIME" -v b="$t0" 'BEGIN { print a - b }'; }
ours=(); ddw=(); ddr=(); ddm=()
for _ in $(seq "$R"); do
  drop
  ours+=("$("$L" bench checkpoint --model-config "$CFG" --format "$FMT" --dir "$W" --repeats 1 --json --log-level warn)")
  bytes=$("$PY" -c "import json,sys; print(json.loads(sys.argv[1])['bytes'])" "${ours[-1]}")
  mb=$(( (bytes + 1048575) / 1048576 ))
  drop
  ddw+=("$(secs dd if=/dev/zero of="$W/dd" bs=1M count="$mb" conv=fsync)")
  drop
  ddr+=("$(secs dd if="$W/dd" of=/dev/null bs=1M iflag=direct)")
  cat "$W/dd" >/dev/null  # now in the page cache: the next read is a copy out of memory
  ddm+=("$(secs dd if="$W/dd" of=/dev/null bs=1M)")
  rm -f "$W/dd"
done
"$PY" - "$R" "${ours[@]}" "${ddw[@]}" "${ddr[@]}" "${ddm[@]}" <<'PY'
import json, statistics, sys
r = int(sys.argv[1]); a = sys.argv[2:]
ours = [json.loads(x) for x in a[:r]]
ddw, ddr, ddm = ([float(x) for x in a[k * r:(k + 1) * r]] for k in (1, 2, 3))
b = ours[0]["bytes"]; mb = (b + 1048575) // 1048576 * 1048576
w, rc = statistics.median(o["write_s"] for o in ours), statistics.median(o["read_cold_s"] for o in ours)
dw, dr, dm = statistics.median(ddw), statistics.median(ddr), statistics.median(ddm)
ww = statistics.median(o["read_warm_s"] for o in ours)
print(f"{ours[0]['format']} checkpoint, {ours[0]['params']:,} params {ours[0]['dtype']}, {b / 1e6:.1f} MB; medians of {r} alternating runs")
print(f"write: lethe {b / w / 1e6:8.1f} MB/s   dd conv=fsync {mb / dw / 1e6:8.1f} MB/s   lethe / dd {b / w / (mb / dw):.0%}")
print(f"read:  lethe {b / rc / 1e6:8.1f} MB/s   dd (cold)     {mb / dr / 1e6:8.1f} MB/s   lethe / dd {b / rc / (mb / dr):.0%}")
print(f"warm:  lethe {b / ww / 1e6:8.1f} MB/s   dd (cached)   {mb / dm / 1e6:8.1f} MB/s   lethe / dd {b / ww / (mb / dm):.0%}"
      "   (dd from the page cache: one memory copy)")
PY
