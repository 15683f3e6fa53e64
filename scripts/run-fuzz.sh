#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
set -euo pipefail

usage() {
  cat <<'EOF'
usage: run-fuzz.sh BUILD_DIR [TARGET] [SECONDS]

Runs plexus's libFuzzer targets (built by `cmake --preset fuzz && cmake --build
build/fuzz`) for SECONDS each, starting from the seed corpus in
test/fuzz/corpus/TARGET.

  BUILD_DIR  the fuzz build directory, e.g. build/fuzz
  TARGET     envelope, topic, broker, spans, pool_core, connector, zap, auth_file or
             store_record (fuzz_ prefix optional); empty or absent: all
  SECONDS    per target; default $FUZZ_SECONDS, else 60

The seeds are copied into a fresh working corpus, BUILD_DIR/fuzz-corpus/TARGET,
which receives the new inputs (the source tree is never written). Crash, leak,
OOM and timeout inputs go to BUILD_DIR/fuzz-artifacts/, the full libFuzzer
output to BUILD_DIR/fuzz-logs/TARGET.log. Prints one summary line per target;
exits non-zero if any target failed. Reproduce a failure with
  BUILD_DIR/test/fuzz/fuzz_TARGET BUILD_DIR/fuzz-artifacts/TARGET-crash-...
EOF
}

all_targets=(envelope topic broker spans pool_core connector zap auth_file store_record)

if [[ $# -ge 1 && ( $1 == -h || $1 == --help ) ]]; then
  usage
  exit 0
fi
if [[ $# -lt 1 || $# -gt 3 ]]; then
  usage >&2
  exit 2
fi

build_dir=$1
target=${2:-}
secs=${3:-${FUZZ_SECONDS:-60}}
if ! [[ $secs =~ ^[0-9]+$ ]] || [[ $secs -eq 0 ]]; then
  echo "run-fuzz: SECONDS must be a positive integer, got '$secs'" >&2
  exit 2
fi
if [[ ! -d $build_dir ]]; then
  echo "run-fuzz: no build directory '$build_dir' (cmake --preset fuzz && cmake --build build/fuzz)" >&2
  exit 2
fi
build_dir=$(cd "$build_dir" && pwd)
source_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if [[ -z $target ]]; then
  targets=("${all_targets[@]}")
else
  target=${target#fuzz_}
  if [[ ! -d $source_dir/test/fuzz/corpus/$target ]]; then
    echo "run-fuzz: unknown target '$target' (known: ${all_targets[*]})" >&2
    exit 2
  fi
  targets=("$target")
fi

artifacts=$build_dir/fuzz-artifacts
logs=$build_dir/fuzz-logs
mkdir -p "$artifacts" "$logs"

# stat NAME LOG: a value from libFuzzer's -print_final_stats, or '?'
stat() {
  local v
  v=$(sed -n "s/^stat::$1: *//p" "$2" | tail -n 1)
  echo "${v:-?}"
}

# verdict RC LOG: what went wrong, from libFuzzer's and the sanitizers' reports
verdict() {
  if [[ $1 -eq 0 ]]; then echo ok; return; fi
  local log=$2
  if grep -q 'ERROR: libFuzzer: timeout' "$log"; then echo timeout
  elif grep -q 'ERROR: libFuzzer: out-of-memory\|ERROR: libFuzzer: malloc' "$log"; then echo oom
  elif grep -q 'ERROR: LeakSanitizer' "$log"; then echo leak
  elif grep -q 'fuzz invariant broken' "$log"; then echo invariant
  elif grep -q 'runtime error:' "$log"; then echo ubsan
  elif grep -q 'ERROR: AddressSanitizer' "$log"; then echo asan
  elif grep -q 'ERROR: libFuzzer: deadly signal' "$log"; then echo crash
  else echo "failed(rc=$1)"
  fi
}

failed=0
for t in "${targets[@]}"; do
  bin=$build_dir/test/fuzz/fuzz_$t
  seeds=$source_dir/test/fuzz/corpus/$t
  work=$build_dir/fuzz-corpus/$t
  log=$logs/$t.log
  if [[ ! -x $bin ]]; then
    echo "run-fuzz: $bin is missing: build it with cmake --preset fuzz && cmake --build build/fuzz" >&2
    printf 'fuzz %-8s %4ss  execs=-  exec/s=-  corpus=-  result=missing-binary\n' "$t" "$secs"
    failed=1
    continue
  fi
  rm -rf "$work"
  mkdir -p "$work"
  cp "$seeds"/* "$work"/
  extra=()
  [[ -f $source_dir/test/fuzz/$t.dict ]] && extra+=("-dict=$source_dir/test/fuzz/$t.dict")
  rc=0
  ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1 \
  UBSAN_OPTIONS=${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1 \
    "$bin" -max_total_time="$secs" -rss_limit_mb=512 -timeout=10 -print_final_stats=1 \
      -artifact_prefix="$artifacts/$t-" ${extra[@]+"${extra[@]}"} "$work" "$seeds" \
      >"$log" 2>&1 || rc=$?
  result=$(verdict "$rc" "$log")
  corpus=$(find "$work" -type f | wc -l)
  printf 'fuzz %-8s %4ss  execs=%s  exec/s=%s  corpus=%s (+%s new)  result=%s\n' \
    "$t" "$secs" "$(stat number_of_executed_units "$log")" \
    "$(stat average_exec_per_sec "$log")" "$corpus" "$(stat new_units_added "$log")" "$result"
  if [[ $result != ok ]]; then
    failed=1
    echo "---- last lines of $log" >&2
    tail -n 60 "$log" >&2
    echo "---- artifacts in $artifacts:" >&2
    ls -1 "$artifacts" | grep "^$t-" >&2 || true
  fi
done
exit "$failed"
