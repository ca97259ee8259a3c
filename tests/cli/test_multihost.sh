#!/usr/bin/env bash
# Several hosts simulated on one machine: each host is a network namespace with its own hostname
# (unshare --uts), joined to a bridge by a veth pair; OpenMPI starts its daemons in them through
# a remote agent that runs `ip netns exec` instead of ssh, and every byte between ranks crosses
# the bridge over TCP. Checks: N ranks across hosts give the model of one process; a host whose
# link is cut mid-step, a rank stopped with SIGSTOP and a rank killed with SIGKILL each end every
# rank non-zero within --timeout with a message naming the rank and the collective, no process is
# left behind, and the last checkpoint resumes. Needs root (namespaces, links); without it the
# test skips (exit 77), saying so.
# usage: test_multihost.sh LETHE_BINARY SOURCE_DIR MPIRUN
set -u
LETHE=$1; SRC=$2; MPIRUN=$3
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null || ! command -v unshare >/dev/null; then
  echo "SKIP: the simulated hosts need root, ip (iproute2) and unshare"; exit 77
fi
# shellcheck source=mpi_common.sh
source "$SRC/tests/cli/mpi_common.sh"

# ---- three hosts: namespaces lh<ID>h1..h3 at 10.<a>.<b>.11..13, the launcher on the bridge (.1) ----
ID=$(( $$ % 10000 ))
NET="10.$(( 100 + ID % 100 )).$(( ID / 100 % 250 ))"
BR=lbr$ID
HOSTS=(1 2 3)
cleanup_hosts() {
  for h in "${HOSTS[@]}"; do
    for p in $(ip netns pids "lh${ID}h$h" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "lh${ID}h$h" 2>/dev/null
  done
  ip link del "$BR" 2>/dev/null
  rm -rf "$T"
}
trap cleanup_hosts EXIT
ip link add "$BR" type bridge && ip addr add "$NET.1/24" dev "$BR" && ip link set "$BR" up \
  || { echo "FAIL: could not create the bridge $BR"; exit 1; }
for h in "${HOSTS[@]}"; do
  ns=lh${ID}h$h
  ip netns add "$ns" && ip link add "lv${ID}h$h" type veth peer name eth0 netns "$ns" \
    && ip link set "lv${ID}h$h" master "$BR" up && ip -n "$ns" addr add "$NET.1$h/24" dev eth0 \
    && ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up \
    || { echo "FAIL: could not create host $h"; exit 1; }
done
# OpenMPI's remote agent: called as `agent HOST COMMAND...` (as ssh would be); runs COMMAND in the
# host's namespace under that host's name.
cat >"$T/agent" <<SH
#!/bin/sh
host=\$1; shift
case "\$host" in
  $NET.11) n=1;; $NET.12) n=2;; $NET.13) n=3;;
  *) echo "agent: unknown host \$host" >&2; exit 1;;
esac
exec ip netns exec lh${ID}h\$n unshare --uts /bin/sh -c "hostname host\$n; \$*"
SH
chmod +x "$T/agent"
hostfile() {  # hostfile SLOTS HOST...
  local slots=$1; shift
  for h in "$@"; do echo "$NET.1$h slots=$slots"; done >"$T/hosts"
}
across() {  # across NP COMMAND...: mpirun over the hosts in $T/hosts, TCP only, on the bridge
  local np=$1; shift
  "$MPIRUN" --hostfile "$T/hosts" -np "$np" --mca plm_rsh_agent "$T/agent" --mca plm_rsh_no_tree_spawn 1 \
    --mca oob_tcp_if_include "$NET.0/24" --mca btl self,vader,tcp --mca btl_tcp_if_include "$NET.0/24" "$@"
}
on_host() {  # on_host H: pids of lethe processes running on host H
  for p in $(ip netns pids "lh${ID}h$1" 2>/dev/null); do
    [ "$(cat /proc/"$p"/comm 2>/dev/null)" = lethe ] && echo "$p"
  done
}
left_behind() {  # any lethe or orted process still in a simulated host
  for h in "${HOSTS[@]}"; do
    for p in $(ip netns pids "lh${ID}h$h" 2>/dev/null); do cat /proc/"$p"/comm 2>/dev/null; done
  done | grep -E "^(lethe|orted)$"
}

make_tiny_model
FT=(finetune --model "$T/base" --data "$T/data/train.jsonl" --batch-size 12 --lr 2e-3 --log-every 1 --format hf
    --threads 1)

# ---- N ranks across hosts give the model of one process ----
"$LETHE" "${FT[@]}" --steps 6 --out "$T/one" >"$T/log1" 2>&1 || { bad "1-process finetune"; tail "$T/log1"; }
hostfile 1 1 2 3
across 3 "$LETHE" "${FT[@]}" --steps 6 --zero-stage 3 --out "$T/three" >"$T/log" 2>&1 \
  && $CMP "$T/three" "$T/one" --rtol 1e-5 && ok || { bad "3 ranks on 3 hosts (ZeRO 3) differ from 1 process"; tail "$T/log"; }
grep -q "rank -> host: 0->host1, 1->host2, 2->host3" "$T/log" && ok \
  || { bad "the ranks did not run on 3 hosts"; grep -m1 "rank -> host" "$T/log"; }
hostfile 2 1 2
across 4 "$LETHE" "${FT[@]}" --steps 6 --zero-stage 1 --out "$T/four" >"$T/log" 2>&1 \
  && $CMP "$T/four" "$T/one" --rtol 1e-5 && ok || { bad "4 ranks on 2 hosts (ZeRO 1) differ from 1 process"; tail "$T/log"; }

# ---- faults: a long run on 3 hosts with a 10 s collective deadline, then the fault on host 3 ----
TIMEOUT=10
fault_run() {  # fault_run NAME ACTION: starts the run, applies ACTION after step 6's checkpoint
  local name=$1 action=$2 log=$T/log-$1
  hostfile 1 1 2 3
  across 3 "$LETHE" "${FT[@]}" --steps 4000 --checkpoint-every 3 --timeout $TIMEOUT --out "$T/$name" >"$log" 2>&1 &
  local mp=$!
  for _ in $(seq 900); do grep -q "checkpoint for step 6" "$log" 2>/dev/null && break; sleep 0.1; done
  local victim
  victim=$(on_host 3 | head -1)
  [ -n "$victim" ] || { bad "$name: no rank found on host 3"; tail -5 "$log"; }
  local start
  start=$(date +%s.%N)
  case $action in
    cut) ip link set "lv${ID}h3" down ;;
    stop) kill -STOP "$victim" ;;
    kill) kill -9 "$victim" ;;
  esac
  # every rank, on every host, gone: the launcher's exit is not awaited (a cut host's daemon may
  # never hear from it)
  local gone=""
  for _ in $(seq 1200); do
    [ -z "$(on_host 1)$(on_host 2)$( [ "$action" = stop ] || on_host 3)" ] && { gone=$(date +%s.%N); break; }
    sleep 0.05
  done
  local took
  took=$(awk -v a="$start" -v b="${gone:-$start}" 'BEGIN { printf "%.1f", b - a }')
  if [ -n "$gone" ] && awk -v t="$took" -v l=$TIMEOUT 'BEGIN { exit !(t <= l + 8) }'; then
    ok; echo "multihost $name: every rank gone ${took} s after the fault (--timeout $TIMEOUT)"
  else
    bad "$name: ranks still running $took s after the fault"; ps -o pid,stat,args -p "$(on_host 1) $(on_host 2)" 2>/dev/null
  fi
  [ "$action" = cut ] && ip link set "lv${ID}h3" up
  local rc=0
  for _ in $(seq 600); do kill -0 $mp 2>/dev/null || break; sleep 0.1; done
  if kill -0 $mp 2>/dev/null; then bad "$name: mpirun still running 60 s after its ranks"; kill -9 $mp; fi
  wait $mp; rc=$?
  [ $rc -ne 0 ] && ok || bad "$name: the job exited 0"
  echo "multihost $name: mpirun exited $rc"
  # a stalled peer: the ranks waiting on it name themselves and the collective; a dead one: the
  # launcher names it
  local want="rank [0-9]+: collective [a-z_]+ on communicator '[a-z_0-9]+' did not complete within $TIMEOUT s"
  [ "$action" = kill ] && want="process rank 2 .*(exited on signal 9|Killed)|rank 2 .*killed"
  if grep -Eq "$want" "$log"; then ok; echo "multihost $name: $(grep -Em1 "$want" "$log" | cut -c1-200)"
  else bad "$name: no message naming the rank (and collective)"; tail -8 "$log"; fi
  sleep 1
  [ -z "$(left_behind)" ] && ok || { bad "$name: left behind: $(left_behind | tr '\n' ' ')"; }
  # the last complete checkpoint resumes, on all three hosts again
  across 3 "$LETHE" "${FT[@]}" --steps 8 --checkpoint-every 3 --timeout $TIMEOUT --out "$T/$name" --resume \
    >"$log-resume" 2>&1 && grep -q "resumed from" "$log-resume" && ok && grep -m1 -o "resumed from.*" "$log-resume" \
    || { bad "$name: the last checkpoint did not resume"; tail -5 "$log-resume"; }
}
fault_run cut cut
fault_run stop stop
fault_run kill kill

echo "multihost: $pass passed, $fail failed"
[ $fail -eq 0 ]
