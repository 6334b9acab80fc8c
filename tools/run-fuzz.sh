#!/bin/sh
# Runs libFuzzer targets one after the other; used by `make fuzz`.
#
#   sh tools/run-fuzz.sh [-t SECONDS] [-w WORKDIR] build/fuzz/fuzz_x ...
#
# For a target fuzz_<x> built from csrc/fuzz/fuzz_<x>.c:
#   seed corpus  csrc/fuzz/corpus/<x>/ if it exists, else the corpus folder
#                named in the target's header comment (csrc/fuzz/corpus/...)
#   dictionary   csrc/fuzz/<x>.dict if it exists, else the -dict= named in
#                the header comment, else none
# The seeds are copied into WORKDIR/<target>/corpus (default
# build/fuzz/work), which keeps what earlier runs found; libFuzzer writes
# only there and to WORKDIR/<target>/ (crash-*, leak-*, timeout-*, oom-*
# and log.txt).  Exit status 1 if any target crashed, leaked, hit a
# sanitizer report, timed out on one input or ran out of memory.
#
# Environment: FUZZ_FLAGS adds libFuzzer flags (e.g. "-jobs=2").
set -u

TIME=60
WORK=build/fuzz/work
while getopts t:w: opt; do
  case $opt in
    t) TIME=$OPTARG ;;
    w) WORK=$OPTARG ;;
    *) echo "usage: $0 [-t seconds] [-w workdir] fuzzer..." >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -gt 0 ] || { echo "$0: no fuzz targets given" >&2; exit 2; }

# UBSan must stop at the first report so that libFuzzer records the input.
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"

failed=""
summary=""
for bin in "$@"; do
  name=$(basename "$bin")
  short=${name#fuzz_}
  src=csrc/fuzz/$name.c
  corpus=""
  dict=""
  if [ -d "csrc/fuzz/corpus/$short" ]; then
    corpus=csrc/fuzz/corpus/$short
  elif [ -f "$src" ]; then
    corpus=$(grep -o 'csrc/fuzz/corpus/[A-Za-z0-9_.-]*' "$src" | head -n 1)
  fi
  if [ -f "csrc/fuzz/$short.dict" ]; then
    dict=csrc/fuzz/$short.dict
  elif [ -f "$src" ]; then
    dict=$(grep -o -- '-dict=[^ ]*' "$src" | head -n 1 | cut -d= -f2)
  fi
  [ -n "$dict" ] && [ ! -f "$dict" ] && dict=""

  dir=$WORK/$name
  mkdir -p "$dir/corpus"
  if [ -n "$corpus" ] && [ -d "$corpus" ]; then
    cp -n "$corpus"/* "$dir/corpus/" 2>/dev/null
  fi
  rm -f "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* "$dir"/slow-unit-*

  echo "== $name: ${TIME}s, seeds ${corpus:-none}, dictionary ${dict:-none}"
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$TIME" -timeout=25 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$dir/" \
    ${dict:+-dict="$dict"} ${FUZZ_FLAGS:-} "$dir/corpus" >"$dir/log.txt" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log.txt" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log.txt" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$dir/log.txt" | tail -n 1)
  units=$(find "$dir/corpus" -type f | wc -l)
  if [ $rc -ne 0 ] || grep -q -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|SUMMARY: UndefinedBehaviorSanitizer' "$dir/log.txt"; then
    failed="$failed $name"
    echo "   FAILED (exit $rc); log $dir/log.txt; reproducer:"
    ls "$dir"/crash-* "$dir"/leak-* "$dir"/timeout-* "$dir"/oom-* 2>/dev/null | sed 's/^/     /'
    grep -E -A 25 'ERROR: |runtime error:|==ERROR|deadly signal' "$dir/log.txt" | head -n 40 | sed 's/^/   | /'
  fi
  line=$(printf '%-16s %10s execs %8s exec/s  %s  corpus %s' "$name" "${execs:-?}" "${rate:-?}" "${cov:-cov: ?}" "$units")
  echo "   $line"
  summary="$summary
$line"
done

echo "== fuzz summary (${TIME}s each):$summary"
if [ -n "$failed" ]; then
  echo "== FAILED:$failed" >&2
  exit 1
fi
echo "== no crash, leak or sanitizer report"
