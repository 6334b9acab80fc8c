# Shared by tools/test-asan.sh and tools/test-valgrind.sh (sourced, POSIX sh).

ROOT=$(pwd)
REAL_LUA=$(command -v lua5.4) || { echo "lua5.4 not found" >&2; exit 2; }
PYTHON=${PYTHON:-/usr/bin/python3}

# shadow_root DIR: makes DIR/root, a copy of the checkout made of symlinks
# in which build/uvws is DIR/uvws, so that busted (.busted: cpath
# build/?.so) and the servers the specs start (spec/helper.lua:
# LUA_CPATH=./build/?.so, from the root it finds next to spec/) load
# DIR/uvws/core.so.  The other entries of build/ link to the real ones:
# `make -C examples/embed` (embed_spec) follows the examples symlink and
# builds into the real build/embed, which SHADOW_BUILD_DIRS (default
# "embed") makes sure exists.
shadow_root() {
  sr=$1/root
  rm -rf "$sr"
  mkdir -p "$sr/build"
  for f in "$ROOT"/* "$ROOT"/.[!.]*; do
    [ -e "$f" ] || continue
    case ${f##*/} in build|build-*|.git) continue ;; esac
    ln -s "$f" "$sr/${f##*/}"
  done
  for d in ${SHADOW_BUILD_DIRS-embed}; do mkdir -p "$ROOT/build/$d"; done
  for f in "$ROOT"/build/*; do
    [ -e "$f" ] || continue
    case ${f##*/} in uvws|test|asan|valgrind|fuzz|qa-*) continue ;; esac
    ln -s "$f" "$sr/build/${f##*/}"
  done
  ln -s "$(cd "$1" && pwd)/uvws" "$sr/build/uvws"
  echo "$sr"
}

# wait_listening OUTFILE PID SECONDS: prints the port of the server.
wait_listening() {
  n=0
  while [ $n -lt $(($3 * 10)) ]; do
    port=$(sed -n 's|^listening on wss*://127\.0\.0\.1:\([0-9]*\)/$|\1|p' "$1")
    if [ -n "$port" ]; then echo "$port"; return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
    n=$((n + 1))
  done
  return 1
}

# wait_exit PID SECONDS: 0 when PID exits by itself within SECONDS.
wait_exit() {
  n=0
  while kill -0 "$1" 2>/dev/null; do
    [ $n -ge $(($2 * 10)) ] && return 1
    sleep 0.1
    n=$((n + 1))
  done
  return 0
}

# make_cert DIR: a self-signed certificate for 127.0.0.1 (DIR/cert.pem,
# DIR/key.pem), or nothing if openssl is missing.
make_cert() {
  [ -f "$1/cert.pem" ] && return 0
  command -v openssl >/dev/null || return 1
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=127.0.0.1 \
    -addext subjectAltName=IP:127.0.0.1 -keyout "$1/key.pem" \
    -out "$1/cert.pem" >/dev/null 2>&1
}

# session NAME LUA_CPATH_DIR LOG -- CMD...: runs CMD (a server printing
# "listening on ws://127.0.0.1:PORT/", e.g. tools/session_server.lua under
# a wrapper), drives tools/ws_session.py against it, and waits for it to
# exit by itself (--shutdown) or, with SESSION_KILL=1, stops it with
# SIGTERM.  Returns 0 when the client's checks passed and the server
# exited by itself (or was alive to be killed); SERVER_RC is the
# server's exit status.
session() {
  name=$1 cdir=$2 log=$3
  shift 4
  out=$log.out
  url_scheme=ws
  case " $* " in *" --tls "*) url_scheme=wss ;; esac
  : >"$out"
  LUA_PATH="$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" LUA_CPATH="$cdir/?.so;;" \
    "$@" >"$out" 2>"$log.stderr" </dev/null &
  spid=$!
  if ! port=$(wait_listening "$out" $spid 60); then
    echo "   $name: the server did not start:"; sed 's/^/   | /' "$log.stderr" | head -n 30
    kill $spid 2>/dev/null; wait $spid 2>/dev/null
    return 1
  fi
  src=0
  stop=--shutdown
  [ "${SESSION_KILL:-0}" = 1 ] && stop=
  timeout -k 5 600 "$PYTHON" tools/ws_session.py "$url_scheme://127.0.0.1:$port/" $stop \
    >"$log.client" 2>&1 || src=1
  if [ "${SESSION_KILL:-0}" = 1 ] || [ $src -ne 0 ]; then
    # No shutdown was asked (or the session broke off before): SIGTERM.
    sleep 1
    if kill -0 $spid 2>/dev/null; then kill -TERM $spid; else
      echo "   $name: the server died during the session"; src=1; fi
    wait_exit $spid 60 || { kill -KILL $spid; src=1; }
  elif ! wait_exit $spid 60; then
    echo "   $name: uvws.run() did not return within 60 s after server:shutdown(); killed"
    kill -TERM $spid 2>/dev/null; wait_exit $spid 30 || kill -KILL $spid 2>/dev/null
    src=1
  fi
  wait $spid 2>/dev/null
  SERVER_RC=$?
  if [ $src -ne 0 ]; then
    echo "   $name: client checks:"; grep -v '^ok' "$log.client" | sed 's/^/   | /' | head -n 30
    echo "   $name: server stderr:"; sed 's/^/   | /' "$log.stderr" | head -n 30
  fi
  return $src
}
