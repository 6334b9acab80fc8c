#!/usr/bin/env bash
# uvws developer entry point: installs what is missing, builds, runs.
#
#   bash tools/dev.sh run [port]   build and run the main example
#   bash tools/dev.sh test         build and run every test (make test)
#   bash tools/dev.sh deps         only install the Debian packages
#
# Missing Debian packages are installed with apt-get when running as root;
# otherwise the one command that installs them is printed.
set -euo pipefail
cd "$(dirname "$0")/.."

# What building and running the examples needs.
RUN_PKGS=(build-essential pkg-config lua5.4 liblua5.4-dev libuv1-dev libssl-dev
          zlib1g-dev lua-cjson)
# What the tests need on top: test runners, peers, proxies, a browser.
TEST_PKGS=(lua-busted lua-socket lua-check luarocks python3-websockets curl
           openssl tinyproxy nodejs lua-cjson chromium nginx redis-server lua-luv
           $(command -v npm >/dev/null || echo npm))   # nodesource's nodejs bundles npm
PKGS=("${RUN_PKGS[@]}")

deps() {
  local missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "uvws: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "uvws: missing Debian packages; install them with:" >&2
    echo "  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
}

case "${1:-}" in
  deps) PKGS+=("${TEST_PKGS[@]}"); deps ;;
  run)
    deps
    make -s
    export LUA_PATH="./lua/?.lua;./lua/?/init.lua;;" LUA_CPATH="./build/?.so;;"
    exec lua5.4 examples/chat/server.lua --port "${2:-8080}"
    ;;
  test)
    PKGS+=("${TEST_PKGS[@]}")
    deps
    make -s test
    ;;
  *)
    echo "usage: bash tools/dev.sh run [port] | test | deps" >&2
    exit 2
    ;;
esac
