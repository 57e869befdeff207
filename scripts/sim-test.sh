#!/usr/bin/env bash
# Runs the simulator over the seeds `make test` uses: a fixed set (seeds
# 1..N/2) plus a fresh random batch whose seeds are printed, and the
# broken-core variant, which must be caught.
set -euo pipefail
build=${1:-build}
n=${2:-1000}
sim="$build/tests/sim/corral-sim"
if [ ! -x "$sim" ]; then
  echo "sim-test: $sim not built yet; skipping" >&2
  exit 0
fi
"$sim" --seeds $((n / 2)) --first 1
"$sim" --seeds $((n - n / 2)) --random
"$build/tests/sim/corral-sim-broken" --expect-violation --seeds $((n / 2)) --first 1
