#!/usr/bin/env bash
# Builds and runs the fuzz targets of tests/fuzz (tests/fuzz/README.md).
#
#   scripts/fuzz.sh run [SECONDS]   libFuzzer, each target SECONDS (60) in
#                                   turn; needs clang's fuzzer runtime
#   scripts/fuzz.sh smoke [SECONDS] make test's short run: with libFuzzer
#                                   each target SECONDS (10), all at once;
#                                   without it the replay driver
#                                   (FUZZ_MUTATIONS mutations of each seed)
#   scripts/fuzz.sh seeds           rewrites tests/fuzz/corpus-*/
#
# libFuzzer builds go to build-fuzz/ (clang, ASan+UBSan, coverage on the
# whole core), replay builds to build-fuzz-replay/ (the default compiler,
# ASan+UBSan). Runs never write into the committed corpora: libFuzzer's
# new inputs go to build-fuzz/corpus-<target>/, crashes to build-fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=(codec state_cmd state_restore kv transport_hs wal config http)
FUZZ_BUILD=${FUZZ_BUILD:-build-fuzz}
REPLAY_BUILD=${REPLAY_BUILD:-build-fuzz-replay}
FUZZ_MUTATIONS=${FUZZ_MUTATIONS:-10000}
# The replay driver gives these fewer mutations: a run of fuzz_wal is a
# real data directory opened twice, one of fuzz_http up to eight requests
# through the API (about 1 ms each under ASan, 100x the others).
SLOW_TARGETS=" wal http "
FUZZ_SLOW_MUTATIONS=${FUZZ_SLOW_MUTATIONS:-500}
CLANG=${CLANG:-clang}
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:abort_on_error=1:print_stacktrace=1}

# True when clang links a libFuzzer target (the runtime is libclang-rt-14-dev
# on Debian 12, pulled in by clang-14 through libclang-common-14-dev).
have_libfuzzer() {
  command -v "$CLANG" >/dev/null 2>&1 || return 1
  local d
  d=$(mktemp -d)
  printf '#include <stddef.h>\n#include <stdint.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' >"$d/t.c"
  local rc=0
  "$CLANG" -fsanitize=fuzzer,address,undefined "$d/t.c" -o "$d/t" >/dev/null 2>&1 || rc=1
  rm -rf "$d"
  return $rc
}

ninja_targets() {
  local out=() t
  for t in "${TARGETS[@]}"; do out+=("tests/fuzz/fuzz_$t"); done
  printf '%s\n' "${out[@]}"
}

build_libfuzzer() {
  if [ ! -f "$FUZZ_BUILD/build.ninja" ]; then
    CC=$CLANG meson setup "$FUZZ_BUILD" --buildtype=debugoptimized -Dfuzz=libfuzzer \
      -Db_sanitize=address,undefined -Db_lundef=false \
      -Dc_args=-fsanitize=fuzzer-no-link >/dev/null
  fi
  # shellcheck disable=SC2046
  ninja -C "$FUZZ_BUILD" $(ninja_targets) tests/fuzz/fuzz_seeds >/dev/null
}

build_replay() {
  if [ ! -f "$REPLAY_BUILD/build.ninja" ]; then
    meson setup "$REPLAY_BUILD" --buildtype=debugoptimized -Dfuzz=replay \
      -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
  fi
  # shellcheck disable=SC2046
  ninja -C "$REPLAY_BUILD" $(ninja_targets) tests/fuzz/fuzz_seeds >/dev/null
}

# Runs every target under libFuzzer for $1 seconds; $2 = parallel|serial.
run_libfuzzer() {
  local secs=$1 how=$2 t pids=() fail=0
  for t in "${TARGETS[@]}"; do
    mkdir -p "$FUZZ_BUILD/corpus-$t" "$FUZZ_BUILD/crash-$t"
    local cmd=("$FUZZ_BUILD/tests/fuzz/fuzz_$t" -max_total_time="$secs" -print_final_stats=1
      -artifact_prefix="$FUZZ_BUILD/crash-$t/" -max_len=65536
      "$FUZZ_BUILD/corpus-$t" "tests/fuzz/corpus-$t")
    if [ "$how" = parallel ]; then
      "${cmd[@]}" >"$FUZZ_BUILD/fuzz-$t.log" 2>&1 &
      pids+=($!)
    else
      echo "fuzz: $t for ${secs}s" >&2
      "${cmd[@]}" >"$FUZZ_BUILD/fuzz-$t.log" 2>&1 || { fail=1; tail -40 "$FUZZ_BUILD/fuzz-$t.log"; }
      grep -h '^stat::number_of_executed_units' "$FUZZ_BUILD/fuzz-$t.log" | sed "s/^/fuzz: $t: /" >&2 || true
    fi
  done
  if [ "$how" = parallel ]; then
    local i=0
    for t in "${TARGETS[@]}"; do
      if ! wait "${pids[$i]}"; then
        fail=1
        echo "fuzz-smoke: $t FAILED (log: $FUZZ_BUILD/fuzz-$t.log, input in $FUZZ_BUILD/crash-$t/)" >&2
        tail -40 "$FUZZ_BUILD/fuzz-$t.log" >&2
      else
        local runs
        runs=$(grep -h '^stat::number_of_executed_units' "$FUZZ_BUILD/fuzz-$t.log" | awk '{print $2}')
        echo "fuzz-smoke: $t: ${runs:-?} runs in ${secs}s, no failure"
      fi
      i=$((i + 1))
    done
  fi
  return $fail
}

run_replay() {
  local t fail=0
  for t in "${TARGETS[@]}"; do
    local m=$FUZZ_MUTATIONS
    case "$SLOW_TARGETS" in *" $t "*) m=$FUZZ_SLOW_MUTATIONS ;; esac
    (cd "$REPLAY_BUILD" && "tests/fuzz/fuzz_$t" -mutations="$m" "../tests/fuzz/corpus-$t") ||
      { fail=1; echo "fuzz-smoke: $t FAILED (input in $REPLAY_BUILD/replay-crash)" >&2; break; }
  done
  return $fail
}

mode=${1:-smoke}
case "$mode" in
run)
  if ! have_libfuzzer; then
    echo "fuzz: $CLANG cannot link -fsanitize=fuzzer (Debian 12: clang-14 and libclang-rt-14-dev)" >&2
    scripts/deps.sh clang libclang-rt-14-dev
    have_libfuzzer || exit 1
  fi
  build_libfuzzer
  run_libfuzzer "${2:-60}" serial
  ;;
smoke)
  start=$(date +%s)
  if have_libfuzzer; then
    build_libfuzzer
    run_libfuzzer "${2:-10}" parallel
  else
    echo "fuzz-smoke: no libFuzzer ($CLANG -fsanitize=fuzzer fails): the replay driver instead" >&2
    build_replay
    run_replay
  fi
  echo "fuzz-smoke: passed in $(($(date +%s) - start))s"
  ;;
seeds)
  if have_libfuzzer; then build_libfuzzer; dir=$FUZZ_BUILD; else build_replay; dir=$REPLAY_BUILD; fi
  for t in "${TARGETS[@]}"; do rm -rf "tests/fuzz/corpus-$t"; done
  "$dir/tests/fuzz/fuzz_seeds" tests/fuzz
  ls tests/fuzz/corpus-* | head -50
  ;;
replay)
  # The replay driver even when libFuzzer is there (what make test runs
  # on a machine without it).
  build_replay
  run_replay
  ;;
*)
  echo "usage: scripts/fuzz.sh run [SECONDS] | smoke [SECONDS] | seeds | replay" >&2
  exit 2
  ;;
esac
