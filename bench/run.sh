#!/usr/bin/env bash
# uvws benchmark suite (issue 6): wsbench against examples/echo_server.lua
# and, in the same run, the tcpecho ceiling, Python websockets 10.4 and
# node ws 8.  Loopback only; every run is bounded by wsbench's own deadline.
#
#   make bench                        # full suite: REPS=3 runs of SECS=10 per cell
#   SECS=2 REPS=1 make bench          # quick run, a few minutes
#   PHASES="echo" SERVERS="uvws tcpecho" bash bench/run.sh
#
# Environment (defaults in brackets):
#   WSBENCH     the wsbench folder [../shared/tools/wsbench beside the repo]
#   SECS REPS WARM         measured seconds, repetitions, warm-up [10 3 2]
#   SERVERS     echo peers [tcpecho uvws uvws_event uvws_deflate node_ws py_websockets]
#               (uvws_event: bench/event_server.lua, on_message handler;
#               uvws_gc, not in the default list: echo_server.lua with the
#               collector tuned for big messages, bench/echo_gc.lua;
#               uvws_lean, not in the default list either: the on_message
#               server with keep_request = false)
#   PHASES      [echo tls handshake idle], run as handshake, idle, echo,
#               tls whatever the order given; tls runs bench/tls_deflate.sh
#               (wss:// and permessage-deflate with bench/loadgen.lua)
#   TLS_SECS TLS_CONFIGS TLS_MD   its seconds per cell [min(SECS, 5)], its
#               conns:size:depth list [its own] and the Markdown file it
#               updates [bench/TLS_DEFLATE.md; empty: none]
#   ECHO_CONFIGS           conns:size:depth list [the issue-6 matrix]
#   DEFLATE_CONFIGS        the subset run against echo_server.lua --deflate
#   IDLE_CONNS HS_WORKERS  [10000 32]
#   FOREIGN_MAX RETRIES    redo a run when other processes used more CPU
#                          than FOREIGN_MAX cores during it [0.10 1]
#   QUIET QUIET_MAX_S      before each run wait up to QUIET_MAX_S seconds
#                          until at most QUIET cores are busy [0.25 5]
#   OUT         output folder [bench/runs/<UTC time>; not under build/, which
#               `make clean` removes while we run]
#   PNG         the plot [docs/bench.png]
#
# Server pinned to core 0, wsbench to core 1 (taskset), as in
# ../shared/tools/wsbench/RESULTS.md.  Output in $OUT: results.jsonl (one
# line per run: wsbench's JSON plus server, config, rep), table.md, plot.dat,
# servers.log, env.txt; the plot goes to $PNG.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WSBENCH=${WSBENCH:-$(dirname "$REPO")/shared/tools/wsbench}
SECS=${SECS:-10}
REPS=${REPS:-3}
WARM=${WARM:-2}
SERVERS=${SERVERS:-"tcpecho uvws uvws_event uvws_deflate node_ws py_websockets"}
PHASES=${PHASES:-"echo tls handshake idle"}
ECHO_CONFIGS=${ECHO_CONFIGS:-"1:16:1 1:1024:1 1:65536:1 100:16:1 100:1024:1 100:65536:1 1000:16:1 1000:1024:1 1000:65536:1 100:16:16"}
DEFLATE_CONFIGS=${DEFLATE_CONFIGS:-"100:16:1 100:1024:1 100:65536:1 100:16:16"}
IDLE_CONNS=${IDLE_CONNS:-10000}
HS_WORKERS=${HS_WORKERS:-32}
HS_SOURCES=${HS_SOURCES:-32}
FOREIGN_MAX=${FOREIGN_MAX:-0.10}
RETRIES=${RETRIES:-1}
QUIET=${QUIET:-0.25}
QUIET_MAX_S=${QUIET_MAX_S:-5}
BASE_PORT=${BASE_PORT:-19300}
OUT=${OUT:-$REPO/bench/runs/$(date -u +%Y%m%dT%H%M%SZ)}
PNG=${PNG:-$REPO/docs/bench.png}
SRV_CORE=0
CLI_CORE=1
PY=/usr/bin/python3
LUA=${LUA:-lua5.4}

cd "$REPO"
mkdir -p "$OUT"
RAW=$OUT/results.jsonl
LOG=$OUT/servers.log
ERR=$OUT/wsbench.stderr
: > "$RAW"
say() { echo "bench: $*" >&2; }

# --- tools --------------------------------------------------------------------
[ -f "$WSBENCH/wsbench.c" ] || { say "no wsbench in $WSBENCH (set WSBENCH=...)"; exit 1; }
# The shared folder may be read-only: then build a private copy under build/.
if make -s -C "$WSBENCH" >/dev/null 2>&1 && [ -x "$WSBENCH/wsbench" ] && [ -x "$WSBENCH/tcpecho" ]; then
  WSB=$WSBENCH/wsbench; TCPECHO=$WSBENCH/tcpecho
else
  mkdir -p build/bench/bin
  cc -O2 -g -Wall -std=gnu11 -o build/bench/bin/wsbench "$WSBENCH/wsbench.c" -luv -lcrypto
  cc -O2 -g -Wall -std=gnu11 -o build/bench/bin/tcpecho "$WSBENCH/tcpecho.c" -luv
  WSB=$REPO/build/bench/bin/wsbench; TCPECHO=$REPO/build/bench/bin/tcpecho
fi
has() { [[ " $SERVERS " == *" $1 "* ]]; }
if has node_ws && [ ! -f bench/node_modules/ws/package.json ]; then
  say "installing ws@8 into bench/node_modules"
  (cd bench && npm install --no-audit --no-fund --loglevel=error ws@8 >&2)
fi
if has py_websockets && ! $PY -c 'import websockets' 2>/dev/null; then
  say "python3-websockets missing (apt-get install python3-websockets); skipping py_websockets"
  SERVERS=${SERVERS/py_websockets/}
fi
command -v gnuplot >/dev/null || say "gnuplot missing (apt-get install gnuplot-nox): no plot"

# Other engineers edit and rebuild this tree while we measure: every server
# of the run loads one snapshot of the Lua modules, core.so and the scripts.
SNAP=$OUT/snapshot
[ -f build/uvws/core.so ] || { say "build/uvws/core.so missing: run make first"; exit 1; }
mkdir -p "$SNAP/build/uvws" "$SNAP/examples" "$SNAP/bench"
cp -r lua "$SNAP/"
cp build/uvws/core.so "$SNAP/build/uvws/"
cp examples/echo_server.lua "$SNAP/examples/"
cp bench/handshake_server.lua bench/event_server.lua bench/echo_gc.lua "$SNAP/bench/"
export LUA_PATH="$SNAP/lua/?.lua;$SNAP/lua/?/init.lua;;"
export LUA_CPATH="$SNAP/build/?.so;;"

# --- servers ------------------------------------------------------------------
declare -A PORT=() PID=()
listening() { ss -Hltn "sport = :$1" | grep -q LISTEN; }
free_port() {  # next port from BASE_PORT on that nobody listens on
  local p=$BASE_PORT
  while listening "$p" || [[ " ${PORT[*]:-} " == *" $p "* ]]; do p=$((p + 1)); done
  echo "$p"
}
server_cmd() {  # name port -> command line
  local p=$2
  case $1 in
    tcpecho)       echo "$TCPECHO $p" ;;
    uvws)          echo "$LUA $SNAP/examples/echo_server.lua $p" ;;
    uvws_deflate)  echo "$LUA $SNAP/examples/echo_server.lua $p --deflate" ;;
    uvws_tls)      echo "$LUA $SNAP/examples/echo_server.lua $p --tls $OUT/tls/cert.pem $OUT/tls/key.pem" ;;
    uvws_hs)       echo "$LUA $SNAP/bench/handshake_server.lua $p" ;;
    uvws_event)    echo "$LUA $SNAP/bench/event_server.lua $p" ;;
    uvws_gc)       echo "$LUA $SNAP/bench/echo_gc.lua $p" ;;
    uvws_lean)     echo "$LUA $SNAP/bench/event_server.lua $p --no-request" ;;
    node_ws)       echo "env WS_DIR=$REPO/bench/node_modules/ws node $WSBENCH/peers/ws_echo.js $p" ;;
    py_websockets) echo "$PY $WSBENCH/peers/websockets_echo.py $p" ;;
    *) say "unknown server $1"; return 1 ;;
  esac
}
start_server() {
  local name=$1 p cmd
  p=$(free_port); PORT[$name]=$p
  cmd=$(server_cmd "$name" "$p")
  echo "== $(date -u +%T) $name: $cmd" >>"$LOG"
  # shellcheck disable=SC2086
  ( ulimit -n "$(ulimit -Hn)"; exec taskset -c $SRV_CORE $cmd ) >>"$LOG" 2>&1 &
  PID[$name]=$!
  for _ in $(seq 1 100); do
    listening "$p" && return 0
    kill -0 "${PID[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  say "$name did not start listening on $p (see $LOG)"; tail -5 "$LOG" >&2
  stop_server "$name"; return 1
}
stop_server() {
  local name=$1 p=${PID[$1]:-}
  [ -n "$p" ] || return 0
  kill "$p" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  unset "PID[$name]"
}
cleanup() { for n in "${!PID[@]}"; do stop_server "$n"; done; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- measuring ----------------------------------------------------------------
busy_cores() {  # cores busy over the next second, from /proc/stat
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat); sleep 1
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat)
  echo "$a $b" | awk -v n="$(nproc)" '{busy=$3-$1; idle=$4-$2; t=busy+idle; printf "%.2f", t ? busy/t*n : 0}'
}
wait_quiet() {  # other engineers share this machine: give them a moment
  local waited=0 b
  while :; do
    b=$(busy_cores)
    awk -v b="$b" -v q="$QUIET" 'BEGIN{exit !(b <= q)}' && return 0
    [ "$waited" -ge "$QUIET_MAX_S" ] && { say "machine busy ($b cores), measuring anyway"; return 0; }
    sleep 2; waited=$((waited + 3))
  done
}
# bench NAME REP CONFIG wsbench-args...  -> one JSON line in $RAW
bench() {
  local name=$1 rep=$2 cfg=$3; shift 3
  local line best="" bestf=999 try f
  for try in $(seq 0 "$RETRIES"); do
    wait_quiet
    line=$(taskset -c $CLI_CORE "$WSB" "$@" -p "${PORT[$name]}" --pid "${PID[$name]}" --label "$name" 2>>"$ERR") || true
    sleep 0.5   # let the server finish closing before the next run
    [ -n "$line" ] || { line="{\"label\":\"$name\",\"failed\":true,\"args\":\"$*\"}"; best=$line; break; }
    f=$(echo "$line" | sed -n 's/.*"foreign_cpu":\([-0-9.]*\).*/\1/p')
    # keep the try that other processes disturbed least
    if [ -z "$best" ] || awk -v f="${f:-0}" -v b="$bestf" 'BEGIN{exit !(f < b)}'; then best=$line; bestf=${f:-0}; fi
    awk -v f="$f" -v m="$FOREIGN_MAX" 'BEGIN{exit !(f != "" && f > m)}' || break
    [ "$try" -lt "$RETRIES" ] && say "foreign_cpu $f during $name $cfg, redoing"
  done
  line="${best%\}},\"server\":\"$name\",\"config\":\"$cfg\",\"rep\":$rep,\"tries\":$((try + 1))}"
  echo "$line" >>"$RAW"
  echo "$line" | cut -c1-220 >&2
}

# --- environment --------------------------------------------------------------
{
  echo "date: $(date -u +%FT%TZ)"
  echo "uvws: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- csrc lua examples 2>/dev/null || echo " + uncommitted changes in csrc/lua/examples (diff sha1 $(git diff HEAD -- csrc lua examples | sha1sum | cut -c1-12))")"
  echo "kernel: $(uname -r)  cpu: $(lscpu | sed -n 's/^Model name: *//p') x $(nproc)"
  echo "lua: $($LUA -v 2>&1 | head -1)  libuv: $(dpkg-query -W -f='${Version}' libuv1-dev 2>/dev/null)"
  has node_ws && echo "node: $(node --version)  ws: $(node -p "require('$REPO/bench/node_modules/ws/package.json').version")"
  has py_websockets && echo "python websockets: $($PY -c 'import websockets;print(websockets.__version__)') ($($PY --version))"
  echo "reps=$REPS secs=$SECS warmup=$WARM server core=$SRV_CORE client core=$CLI_CORE foreign_max=$FOREIGN_MAX retries=$RETRIES"
} | tee "$OUT/env.txt" >&2

phase() { [[ " $PHASES " == *" $1 "* ]]; }

# Handshakes and idle memory run first: after the echo phases the kernel
# holds a backlog of sockets in TIME_WAIT (100,000 and more) and every
# server pays about 25 % more per handshake.
# --- handshakes -----------------------------------------------------------------
if phase handshake; then
  HS_SERVERS=uvws_hs
  for n in $SERVERS; do case $n in node_ws|py_websockets) HS_SERVERS="$HS_SERVERS $n" ;; esac; done
  for n in $HS_SERVERS; do start_server "$n"; done
  for rep in $(seq 1 "$REPS"); do
    for n in $HS_SERVERS; do
      bench "$n" "$rep" "hs$HS_WORKERS" handshake -c "$HS_WORKERS" -t "$SECS" -w "$WARM" --sources "$HS_SOURCES"
    done
  done
  for n in $HS_SERVERS; do stop_server "$n"; done
fi

# --- idle RSS -------------------------------------------------------------------
if phase idle; then
  IDLE_SERVERS=""
  for n in $SERVERS; do case $n in uvws|uvws_event|uvws_lean|node_ws|py_websockets) IDLE_SERVERS="$IDLE_SERVERS $n" ;; esac; done
  for rep in $(seq 1 "$REPS"); do
    for n in $IDLE_SERVERS; do   # a fresh server each time: freed memory is not reused
      start_server "$n"; sleep 1
      # no retry: a second try on the same server would start with the
      # first try's memory already in its RSS
      RETRIES=0 bench "$n" "$rep" "idle$IDLE_CONNS" idle -c "$IDLE_CONNS" -t "$SECS" --max-pending 128 --setup-timeout 120
      stop_server "$n"
    done
  done
fi

# --- echo (and the deflate variant) -------------------------------------------
if phase echo; then
  for n in $SERVERS; do start_server "$n"; done
  for rep in $(seq 1 "$REPS"); do   # repetition outermost: a cut run has every cell once
    for cfg in $ECHO_CONFIGS; do
      IFS=: read -r c s d <<<"$cfg"
      for n in $SERVERS; do
        [ "$n" = uvws_deflate ] && [[ " $DEFLATE_CONFIGS " != *" $cfg "* ]] && continue
        mode=echo; [ "$n" = tcpecho ] && mode=tcp
        bench "$n" "$rep" "$cfg" $mode -c "$c" -s "$s" -d "$d" -t "$SECS" -w "$WARM"
      done
    done
  done
  for n in $SERVERS; do stop_server "$n"; done
fi

# --- TLS and deflate ---------------------------------------------------------------
# wsbench speaks ws:// only and offers no permessage-deflate, so this phase
# runs bench/tls_deflate.sh: uvws's own client (bench/loadgen.lua) against
# echo_server.lua plain, --tls, --deflate and both, interleaved, from this
# run's snapshot.  Its results go to $OUT/tls_deflate/ and its table to
# $TLS_MD (bench/TLS_DEFLATE.md); at most TLS_SECS (5) s per cell.
if phase tls; then
  TLS_SECS=${TLS_SECS:-$(awk -v s="$SECS" 'BEGIN{print (s < 5 ? s : 5)}')}
  if SNAP=$SNAP OUT=$OUT/tls_deflate SECS=$TLS_SECS REPS=$REPS WARM=1 \
       QUIET=$QUIET QUIET_MAX_S=$QUIET_MAX_S FOREIGN_MAX=$FOREIGN_MAX RETRIES=$RETRIES MD=${TLS_MD-$REPO/bench/TLS_DEFLATE.md} \
       CONFIGS=${TLS_CONFIGS:-} bash bench/tls_deflate.sh; then
    say "TLS/deflate table: $OUT/tls_deflate/table.md"
  else
    say "bench/tls_deflate.sh failed (see $OUT/tls_deflate/)"
  fi
fi

# --- tables and plot ---------------------------------------------------------------
REF=$(ls "$WSBENCH"/runs/*/merged-with-run1.jsonl 2>/dev/null | tail -1 || true)
$PY bench/summarize.py "$RAW" --env "$OUT/env.txt" ${REF:+--ref "$REF"} \
  --md "$OUT/table.md" --plot "$OUT/plot.dat"
if command -v gnuplot >/dev/null; then
  mkdir -p "$(dirname "$PNG")"
  gnuplot -e "datafile='$OUT/plot.dat'; outfile='$PNG'" bench/plot.gp && say "plot: $PNG"
fi
if [ -f "$OUT/tls_deflate/table.md" ]; then
  { echo; echo "### TLS and permessage-deflate (bench/loadgen.lua client, bench/tls_deflate.sh)"; echo
    cat "$OUT/tls_deflate/table.md"; } >>"$OUT/table.md"
fi
cat "$OUT/table.md"
say "results: $RAW"
