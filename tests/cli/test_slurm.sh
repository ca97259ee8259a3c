#!/usr/bin/env bash
# A real single-node Slurm: starts munged (unless one runs), slurmctld and slurmd from Debian's
# packages with a throw-away configuration (own ports, state and spool folders), submits the
# SPUNGE demo (slurm/demo-spunge.sbatch, QUICK=1) with sbatch, waits for it, checks its merged
# checkpoint and report, and stops the daemons it started. Needs root and the packages
# slurmctld, slurmd, slurm-client and munge (scripts/setup.sh installs them); exits 77
# (skipped) without them.
# usage: test_slurm.sh LETHE_BINARY SOURCE_DIR
set -u
LETHE=$1; SRC=$2
for c in slurmctld slurmd sbatch scontrol sinfo munged; do
  command -v $c >/dev/null || { echo "SKIP: $c is not installed (apt-get install slurmctld slurmd slurm-client munge)"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: starting slurmd needs root"; exit 77; }

C=$(mktemp -d /tmp/lethe-slurm.XXXXXX); chmod 755 "$C"
pids=(); started_munge=0
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  sleep 1
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  if [ $started_munge = 1 ] && [ -f /run/munge/munged.pid ]; then kill "$(cat /run/munge/munged.pid)" 2>/dev/null; fi
  rm -rf "$C"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; for f in slurmctld.log slurmd.log job.out; do [ -f "$C/$f" ] && { echo "--- $f"; tail -30 "$C/$f"; }; done; exit 1; }

# munge: one daemon per host serves every Slurm; start it as user munge if none answers.
if ! munge -n </dev/null >/dev/null 2>&1; then
  [ -f /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
  chown munge:munge /etc/munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge && chown munge:munge /run/munge /var/lib/munge /var/log/munge
  runuser -u munge -- munged || fail "munged did not start"
  started_munge=1
  for _ in $(seq 20); do munge -n </dev/null >/dev/null 2>&1 && break; sleep 0.5; done
fi
munge -n </dev/null | unmunge >/dev/null 2>&1 || fail "munge does not answer"

HOST=$(hostname -s); CPUS=$(nproc); MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))
mkdir -p "$C/state" "$C/spool"
cat >"$C/slurm.conf" <<EOF
ClusterName=lethe-ci
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$((16800 + RANDOM % 100))
SlurmdPort=$((16900 + RANDOM % 100))
AuthType=auth/munge
StateSaveLocation=$C/state
SlurmdSpoolDir=$C/spool
SlurmctldPidFile=$C/slurmctld.pid
SlurmdPidFile=$C/slurmd.pid
SlurmctldLogFile=$C/slurmctld.log
SlurmdLogFile=$C/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
SchedulerType=sched/builtin
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
export SLURM_CONF=$C/slurm.conf
slurmctld -D -f "$C/slurm.conf" >"$C/slurmctld.out" 2>&1 & pids+=($!)
slurmd -D -f "$C/slurm.conf" >"$C/slurmd.out" 2>&1 & pids+=($!)
state=""
for _ in $(seq 60); do
  state=$(sinfo -h -o %T 2>/dev/null | head -1)
  [ "$state" = idle ] && break
  sleep 1
done
[ "$state" = idle ] || fail "the node did not become idle (state '$state')"

# Submit the demo from the source tree, as a user would: sbatch from the repository root.
RUN=$C/run
job=$(cd "$SRC" && sbatch --parsable --output="$C/job.out" --export=ALL,QUICK=1,LETHE="$LETHE" \
      slurm/demo-spunge.sbatch "$RUN") || fail "sbatch refused the job"
echo "submitted job $job"
js=""
for _ in $(seq 600); do
  js=$(scontrol show job "$job" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
  case "$js" in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) break ;; esac
  sleep 1
done
[ "$js" = COMPLETED ] || fail "job $job ended as '$js'"
[ -f "$RUN/spunge/merged/COMPLETE" ] && [ -f "$RUN/spunge/merged/model.h5" ] || fail "no merged checkpoint"
grep -q "SPUNGE vs plain unlearning" "$RUN/spunge/report.md" || fail "no comparison report"
grep -q '"spunge"' "$RUN/spunge/result.json" || fail "no result.json"
grep -q "2 subsets by domain" "$C/job.out" || fail "the job did not split by domain on 2 ranks"
"$LETHE" eval --model "$RUN/spunge/merged" --forget "$RUN/data/forget.jsonl" --no-generate >/dev/null 2>&1 \
  || fail "the merged checkpoint does not load"
echo "slurm: job $job COMPLETED; merged checkpoint and report checked"
