#!/usr/bin/env bash
# Echo throughput with 1 and 2 uvws worker processes on this 2-core machine
# (issue 8), driven by ../shared/tools/wsbench.  Loopback only; every run is
# bounded by wsbench's own deadline.
#
#   bash bench/workers.sh                      # SECS=5 WARM=2, the configs below
#   SECS=10 CONFIGS="100:1024:1" bash bench/workers.sh
#
# Setups, all on the same two cores:
#   1proc-pinned  examples/echo_server.lua on core 0, wsbench on core 1 (bench/run.sh's way)
#   1proc         the same, unpinned: the scheduler places both
#   2workers      bench/workers_echo.lua 2 (uvws.workers, reuseport), one wsbench
#   2workers-2gen the same, two wsbench processes with half the connections each
#
# The load generator needs CPU too (one wsbench is one thread: at most one
# core), so two workers cannot get two cores' worth of work.  The table says
# where the CPU went during the measured window: per server process and per
# wsbench (utime+stime from /proc/PID/stat), and how busy each core was
# (/proc/stat, softirq included).  Loopback TCP work is charged to whichever
# core runs the sender's softirq, so the per-process figures do not add up
# to the core figures.  "other jobs' CPU" is the machine's user and system
# time in the window minus ours (this machine is shared): a row with a high
# figure there was disturbed.
#
# Output: build/bench/workers-<UTC time>/ with results.jsonl (wsbench's JSON
# plus the CPU split) and table.md (also printed).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WSBENCH=${WSBENCH:-$(dirname "$REPO")/shared/tools/wsbench}
SECS=${SECS:-5}
WARM=${WARM:-2}
CONFIGS=${CONFIGS:-"100:16:1 100:1024:1 100:16:16 1000:16:1"}
SETUPS=${SETUPS:-"1proc-pinned 1proc 2workers 2workers-2gen"}
PORT=${PORT:-19400}
OUT=${OUT:-$REPO/build/bench/workers-$(date -u +%Y%m%dT%H%M%SZ)}
LUA=${LUA:-lua5.4}
TCK=$(getconf CLK_TCK)

cd "$REPO"
mkdir -p "$OUT"
RAW=$OUT/results.jsonl
: >"$RAW"
say() { echo "workers-bench: $*" >&2; }

[ -f "$WSBENCH/wsbench.c" ] || { say "no wsbench in $WSBENCH (set WSBENCH=...)"; exit 1; }
if make -s -C "$WSBENCH" >/dev/null 2>&1 && [ -x "$WSBENCH/wsbench" ]; then
  WSB=$WSBENCH/wsbench
else
  mkdir -p build/bench/bin
  cc -O2 -g -Wall -std=gnu11 -o build/bench/bin/wsbench "$WSBENCH/wsbench.c" -luv -lcrypto
  WSB=$REPO/build/bench/bin/wsbench
fi
make -s all
export LUA_PATH="$REPO/lua/?.lua;$REPO/lua/?/init.lua;;"
export LUA_CPATH="$REPO/build/?.so;;"

SRV_PID=""
listening() { ss -Hltn "sport = :$1" | grep -q LISTEN; }
stop_server() {
  [ -n "$SRV_PID" ] || return 0
  kill "$SRV_PID" 2>/dev/null || true
  for _ in $(seq 1 80); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SRV_PID" 2>/dev/null || true
  wait "$SRV_PID" 2>/dev/null || true
  SRV_PID=""
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# start_server SETUP: echo_server.lua or workers_echo.lua 2 on $PORT.
start_server() {
  local pin=""
  [ "$1" = 1proc-pinned ] && pin="taskset -c 0"
  case $1 in
    1proc*) $pin $LUA examples/echo_server.lua "$PORT" >"$OUT/server.log" 2>&1 & ;;
    2workers*) $LUA bench/workers_echo.lua 2 "$PORT" >"$OUT/server.log" 2>&1 & ;;
  esac
  SRV_PID=$!
  for _ in $(seq 1 100); do
    if listening "$PORT"; then
      case $1 in 2workers*) [ "$(grep -c listening "$OUT/server.log")" -ge 2 ] && return 0 ;; *) return 0 ;; esac
    fi
    sleep 0.1
  done
  say "$1 did not start"; cat "$OUT/server.log" >&2; exit 1
}

# The server's processes: the pid and its children (the workers).
server_pids() { echo "$SRV_PID $(pgrep -P "$SRV_PID" | tr '\n' ' ')"; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
cores() { awk '/^cpu[0-9]/{printf "%s %d %d\n", $1, $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }

# Other engineers share this machine: before each run wait (at most
# QUIET_MAX_S seconds) until at most QUIET cores are busy.
QUIET=${QUIET:-0.3}
QUIET_MAX_S=${QUIET_MAX_S:-30}
FOREIGN_MAX=${FOREIGN_MAX:-0.15}
RETRIES=${RETRIES:-2}
busy_now() {
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 1
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  echo "$a $b" | awk -v n="$(nproc)" '{b=$3-$1; i=$4-$2; printf "%.2f", (b+i) ? b/(b+i)*n : 0}'
}
wait_quiet() {
  local waited=0 b
  while :; do
    b=$(busy_now)
    awk -v b="$b" -v q="$QUIET" 'BEGIN{exit !(b <= q)}' && return 0
    [ "$waited" -ge "$QUIET_MAX_S" ] && { say "machine busy ($b cores), measuring anyway"; return 0; }
    sleep 2; waited=$((waited + 3))
  done
}

# run SETUP CONNS SIZE DEPTH: one measurement -> a JSON line in $RAW.
run() {
  local setup=$1 c=$2 s=$3 d=$4 gens=1 pins=""
  [ "$setup" = 2workers-2gen ] && gens=2
  [ "$setup" = 1proc-pinned ] && pins="taskset -c 1"
  local per=$(( c / gens )) i outs=() pids=()
  for i in $(seq 1 $gens); do
    outs+=("$OUT/wsb.$i.json")
    $pins "$WSB" echo -p "$PORT" -c "$per" -s "$s" -d "$d" -t "$SECS" -w "$WARM" \
      --label "$setup" >"$OUT/wsb.$i.json" 2>>"$OUT/wsbench.stderr" &
    pids+=($!)
  done
  # Sample the CPU over (most of) the measured window: after the warm-up
  # and connection setup, until just before the end.
  sleep "$WARM"; sleep 0.5
  local spids; spids=$(server_pids)
  local -A t0=(); local p
  for p in $spids "${pids[@]}"; do t0[$p]=$(ticks "$p"); done
  local u0; u0=$(awk '/^cpu /{print $2 + $3 + $4}' /proc/stat)
  local c0; c0=$(cores); local w0; w0=$(date +%s.%N)
  sleep "$(awk -v s="$SECS" 'BEGIN{print s - 1}')"
  local -A t1=()
  for p in $spids "${pids[@]}"; do t1[$p]=$(ticks "$p"); done
  local c1; c1=$(cores); local w1; w1=$(date +%s.%N)
  local u1; u1=$(awk '/^cpu /{print $2 + $3 + $4}' /proc/stat)
  for p in "${pids[@]}"; do wait "$p" || true; done
  local wall; wall=$(awk -v a="$w0" -v b="$w1" 'BEGIN{print b - a}')
  cpu_of() { awk -v a="${t0[$1]}" -v b="${t1[$1]}" -v w="$wall" -v t="$TCK" 'BEGIN{printf "%.2f", (b-a)/t/w}'; }
  local srv_cpu="" gen_cpu="" sep=""
  for p in $spids; do srv_cpu="$srv_cpu$sep$(cpu_of "$p")"; sep=","; done
  sep=""
  for p in "${pids[@]}"; do gen_cpu="$gen_cpu$sep$(cpu_of "$p")"; sep=","; done
  # Other jobs: user and system time of the whole machine (short-lived
  # processes such as compilers included) minus our processes'.
  local foreign
  foreign=$(echo "$srv_cpu,$gen_cpu" | tr ',' '\n' |
    awk -v a="$u0" -v b="$u1" -v w="$wall" -v t="$TCK" '{ ours += $1 }
      END { f = (b - a) / t / w - ours; if (f < 0) f = 0; printf "%.2f", f }')
  local busy; busy=$(paste <(echo "$c0") <(echo "$c1") | awk '{b=$5-$2; i=$6-$3; printf "%s%.2f", (NR > 1 ? "," : ""), ((b + i) ? b / (b + i) : 0)}')
  # Sum the generators' results.
  local mps p50 p99 errs
  mps=$(cat "${outs[@]}" | sed -n 's/.*"msgs_per_s":\([0-9.]*\).*/\1/p' | awk '{s+=$1} END{printf "%.0f", s}')
  p50=$(cat "${outs[@]}" | sed -n 's/.*"p50_us":\([0-9]*\).*/\1/p' | sort -n | tail -1)
  p99=$(cat "${outs[@]}" | sed -n 's/.*"p99_us":\([0-9]*\).*/\1/p' | sort -n | tail -1)
  errs=$(cat "${outs[@]}" | sed -n 's/.*"errors":\([0-9]*\).*/\1/p' | awk '{s+=$1} END{print s+0}')
  echo "{\"setup\":\"$setup\",\"conns\":$c,\"size\":$s,\"depth\":$d,\"secs\":$SECS,\"msgs_per_s\":${mps:-0},\"p50_us\":${p50:-0},\"p99_us\":${p99:-0},\"errors\":$errs,\"server_cpu\":[$srv_cpu],\"wsbench_cpu\":[$gen_cpu],\"core_busy\":[$busy],\"foreign_cpu\":$foreign}" >"$OUT/last.json"
}

{
  echo "date: $(date -u +%FT%TZ)  uvws: $(git rev-parse --short HEAD 2>/dev/null)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)  kernel: $(uname -r)"
  echo "secs=$SECS warm=$WARM  load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT/env.txt" >&2

for setup in $SETUPS; do
  start_server "$setup"
  for cfg in $CONFIGS; do
    IFS=: read -r c s d <<<"$cfg"
    for try in $(seq 0 "$RETRIES"); do
      wait_quiet
      run "$setup" "$c" "$s" "$d"
      sleep 0.5
      f=$(sed -n 's/.*"foreign_cpu":\([0-9.]*\).*/\1/p' "$OUT/last.json")
      awk -v f="$f" -v m="$FOREIGN_MAX" 'BEGIN{exit !(f > m)}' || break
      [ "$try" -lt "$RETRIES" ] && say "other jobs used $f cores during $setup $cfg, redoing"
    done
    sed "s/}\$/,\"tries\":$((try + 1))}/" "$OUT/last.json" | tee -a "$RAW" >&2
  done
  stop_server
done

{
  echo "| conns:size:depth | setup | msgs/s | p50 µs | p99 µs | server CPU (supervisor, workers…) | wsbench CPU | core busy | other jobs' CPU |"
  echo "| --- | --- | ---: | ---: | ---: | --- | --- | --- | ---: |"
  /usr/bin/python3 - "$RAW" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    f = lambda v: " + ".join("%.2f" % x for x in v)
    print("| %d:%d:%d | %s | %s | %d | %d | %s | %s | %s | %.2f |%s" % (
        r["conns"], r["size"], r["depth"], r["setup"], "{:,}".format(int(r["msgs_per_s"])),
        r["p50_us"], r["p99_us"], f(r["server_cpu"]), f(r["wsbench_cpu"]), f(r["core_busy"]),
        r["foreign_cpu"],
        " errors: %d" % r["errors"] if r["errors"] else ""))
EOF
} | tee "$OUT/table.md"
echo "results in $OUT" >&2
