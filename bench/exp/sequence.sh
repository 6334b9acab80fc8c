#!/usr/bin/env bash
# Experiment: one server, several wsbench echo runs in a row, to see
# whether a phase leaves the server slower for the next (bench/results.md,
# "Later: echo on tree 191adcd").  Prints µs CPU per message, page faults
# per message and RSS after each run.
#   bash bench/exp/sequence.sh SCRIPT CONNS:SIZE:DEPTH...
#   bash bench/exp/sequence.sh examples/echo_server.lua 100:65536:1 1000:65536:1 100:65536:1 100:65536:1
# Server on core 0, wsbench on core 1, loopback, 4 s per run (SECS).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WSB=${WSB:-$(dirname "$REPO")/shared/tools/wsbench/wsbench}
SECS=${SECS:-4}
PORT=${PORT:-19730}
export LUA_PATH="$REPO/lua/?.lua;$REPO/lua/?/init.lua;;" LUA_CPATH="$REPO/build/?.so;;"
script=$1; shift
taskset -c 0 lua5.4 "$REPO/$script" "$PORT" >/dev/null 2>&1 & pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep 0.7
for cfg in "$@"; do
  IFS=: read -r c s d <<<"$cfg"
  f1=$(awk '{print $10}' "/proc/$pid/stat")
  out=$(taskset -c 1 "$WSB" echo -p "$PORT" -c "$c" -s "$s" -d "$d" -t "$SECS" -w 1 --pid "$pid" 2>/dev/null | tail -1)
  f2=$(awk '{print $10}' "/proc/$pid/stat")
  rss=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.argv[1]); f = int(sys.argv[3]) - int(sys.argv[2]); n = d["msgs_per_s"] * (d["seconds"] + 1)
print("%-14s %9.0f msgs/s %7.2f us CPU/msg  faults/msg %.3f  rss %s KiB" % (sys.argv[4], d["msgs_per_s"], d["server_cpu"] / d["msgs_per_s"] * 1e6, f / n, sys.argv[5]))
' "$out" "$f1" "$f2" "$cfg" "$rss"
done
