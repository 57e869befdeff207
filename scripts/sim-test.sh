#!/usr/bin/env bash
# Runs the simulator over the seeds `make test` uses: a fixed set (seeds
# 1..N/2) plus a fresh random batch of N/2 whose seeds are printed; then
# proves the checks have teeth: the simulator over a core built with a
# broken commit rule (Raft paper Figure 8) must report a safety violation
# within the fixed seeds 1..500.
set -euo pipefail
build=${1:-build}
n=${2:-1000}
sim="$build/tests/sim/corral-sim"
"$sim" --seeds $((n / 2)) --first 1
"$sim" --seeds $((n - n / 2)) --random
"$build/tests/sim/corral-sim-broken" --expect-violation --seeds 500 --first 1 2>/dev/null
