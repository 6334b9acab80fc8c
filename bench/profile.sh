#!/usr/bin/env bash
# Profile a uvws server script under wsbench load (issue 6; see bench/PROFILE.md).
#
#   bash bench/profile.sh callgrind [SCRIPT [ARGS...]]   # instructions per message, repeatable
#   bash bench/profile.sh perf      [SCRIPT [ARGS...]]   # perf record -e cpu-clock -g, SECS seconds
#   bash bench/profile.sh callgrind tcpecho              # the libuv floor, same load
#   HS=1 bash bench/profile.sh callgrind bench/handshake_server.lua   # per handshake
#   CG_OPTS="--cache-sim=yes" bash bench/profile.sh callgrind   # also cache misses
#
# SCRIPT defaults to examples/echo_server.lua; it gets a port as its first
# argument and must print "listening on".  Load: C connections × S bytes ×
# depth D (default 100 × 16 × 16); with HS=1, handshakes from 8 workers for
# HS_SECS (default 20) seconds instead, counted per handshake.  callgrind: a warm-up wsbench run, then
# counters are zeroed and a second run stops after N messages (default
# 200000); the dump covers exactly that run (100 handshakes included, which
# is < 0.5 %).  The server runs on build/bench/lua5.4-prof, a Lua 5.4
# interpreter linked from liblua5.4.a with its symbols (Debian's lua5.4 is
# stripped).  Output under bench/runs/prof/: the raw profile, the
# function list and the grouped summary (bench/profgroup.py).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
TOOL=${1:-callgrind}; shift || true
SCRIPT=${1:-examples/echo_server.lua}; shift || true
C=${C:-100}; S=${S:-16}; D=${D:-16}; N=${N:-200000}; SECS=${SECS:-5}
PORT=${PORT:-19390}
WSBENCH=${WSBENCH:-$(dirname "$REPO")/shared/tools/wsbench}
WSB=$WSBENCH/wsbench
[ -x "$WSB" ] || WSB=$REPO/build/bench/bin/wsbench
[ -x "$WSB" ] || { make -s -C "$WSBENCH" && WSB=$WSBENCH/wsbench; }
OUT=${OUT:-$REPO/bench/runs/prof}
mkdir -p "$OUT"
LUA_BIN=${LUA_BIN:-$REPO/build/bench/lua5.4-prof}
if [ ! -x "$LUA_BIN" ]; then
  cc -O2 -g -o "$LUA_BIN" bench/lua_main.c -I/usr/include/lua5.4 -Wl,-E -l:liblua5.4.a -lm -ldl
fi
make -s all >/dev/null 2>&1 || echo "profile.sh: make failed (tree mid-edit?); using the existing build/uvws/core.so" >&2
[ -f build/uvws/core.so ] || exit 1
export LUA_PATH="$REPO/lua/?.lua;$REPO/lua/?/init.lua;;"
export LUA_CPATH="$REPO/build/?.so;;"
NAME=$(basename "$SCRIPT" .lua)
[ $# -gt 0 ] && NAME=${NAME}_$(echo "$*" | tr -c 'a-zA-Z0-9\n' '_')
if [ "${HS:-0}" = 1 ]; then NAME=${NAME}_handshakes; else NAME=${NAME}_${C}x${S}xd${D}; fi
while ss -Hltn "sport = :$PORT" | grep -q LISTEN; do PORT=$((PORT + 1)); done

SP=
cleanup() { [ -n "$SP" ] && kill "$SP" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_listen() {
  for _ in $(seq 1 150); do
    ss -Hltn "sport = :$PORT" | grep -q LISTEN && return 0
    kill -0 "$SP" 2>/dev/null || break
    sleep 0.2
  done
  echo "profile.sh: server did not start" >&2; exit 1
}

# SCRIPT "tcpecho": the plain libuv echo server beside wsbench (the floor),
# driven with `wsbench tcp`.
MODE=echo
SERVER=("$LUA_BIN" "$SCRIPT" "$PORT" "$@")
if [ "$SCRIPT" = tcpecho ]; then
  MODE=tcp
  SERVER=("$(dirname "$WSB")/tcpecho" "$PORT")
fi

case $TOOL in
callgrind)
  rm -f "$OUT/$NAME".cg.*
  # shellcheck disable=SC2086 # CG_OPTS: extra callgrind options, e.g. "--cache-sim=yes"
  taskset -c 0 valgrind --tool=callgrind ${CG_OPTS:-} --callgrind-out-file="$OUT/$NAME.cg.%p" \
    "${SERVER[@]}" >"$OUT/$NAME.server.log" 2>&1 &
  SP=$!
  wait_listen
  if [ "${HS:-0}" = 1 ]; then
    LOAD=(handshake -c 8 --sources 8); LEN=(-t "${HS_SECS:-20}")
  else
    LOAD=("$MODE" -c "$C" -s "$S" -d "$D"); LEN=(-t 300 --max-msgs "$N")
  fi
  taskset -c 1 "$WSB" "${LOAD[@]}" -p "$PORT" -t 3 -w 1 --label warmup >/dev/null
  callgrind_control -z "$SP" >/dev/null 2>&1
  line=$(taskset -c 1 "$WSB" "${LOAD[@]}" -p "$PORT" "${LEN[@]}" -w 0 --label callgrind)
  callgrind_control -d "$SP" >/dev/null 2>&1
  sleep 0.5
  kill "$SP"; wait "$SP" 2>/dev/null || true; SP=
  f=$(ls "$OUT/$NAME".cg.*.1 | head -1)
  msgs=$(echo "$line" | /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin); print(round(r.get("handshakes_per_s", r.get("msgs_per_s"))*r["seconds"]))')
  callgrind_annotate --auto=no --inclusive=no --threshold=100 "$f" >"$OUT/$NAME.self.txt" 2>/dev/null
  callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$f" >"$OUT/$NAME.incl.txt" 2>/dev/null
  /usr/bin/python3 bench/profgroup.py callgrind "$OUT/$NAME.self.txt" "$msgs" "$OUT/$NAME.incl.txt" | tee "$OUT/$NAME.$TOOL-summary.txt"
  ;;
perf)
  taskset -c 0 "${SERVER[@]}" >"$OUT/$NAME.server.log" 2>&1 &
  SP=$!
  wait_listen
  taskset -c 1 "$WSB" $MODE -p "$PORT" -c "$C" -s "$S" -d "$D" -t "$((SECS + 1))" -w 1 --pid "$SP" --label perf >"$OUT/$NAME.wsbench.json" &
  B=$!
  sleep 1.5
  perf record -q -e cpu-clock -g -p "$SP" -o "$OUT/$NAME.perf.data" -- sleep "$SECS" 2>/dev/null
  wait "$B" || true
  kill "$SP"; wait "$SP" 2>/dev/null || true; SP=
  cat "$OUT/$NAME.wsbench.json"
  perf report -i "$OUT/$NAME.perf.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
    | grep '%' >"$OUT/$NAME.perf.txt" || true
  /usr/bin/python3 bench/profgroup.py perf "$OUT/$NAME.perf.txt" "$OUT/$NAME.wsbench.json" | tee "$OUT/$NAME.$TOOL-summary.txt"
  ;;
*) echo "usage: profile.sh callgrind|perf [SCRIPT [ARGS...]]" >&2; exit 2 ;;
esac
