#!/usr/bin/env bash
# Runs the simulator over the seeds `make test` uses: a fixed set (seeds
# 1..N, held to every check) plus a fresh random batch of N/2 whose seeds
# are printed; then
# proves the checks have teeth, over two deliberately broken builds that
# must each be caught within fixed seeds (the first violation ends the run):
# - a core with a broken commit rule (Raft paper Figure 8), on the
#   leader-churn scenario (--churn) where that bug lives, without workers
#   (--raft-only), seeds 1..3000 (a few of them show it);
# - a driver that tells the core a batch is persisted before its fsync
#   (src/core/raft_drive.h, D6), so a leader counts its own unsynced copy,
#   seeds 1..500 (most of them show it);
# - a controller that grants a partition elsewhere without waiting out
#   the old primary's lease (two primaries at once), seeds 1..500;
# - an agent that counts its lease from the answer's arrival instead of
#   from when it sent the heartbeat (it acts past its lease), seeds 1..500.
#
# A third argument "no-broken" skips the broken builds: `make asan` runs
# the seeds under the sanitizers, and the checks' teeth were already shown
# on the plain build by `make sim-test`.
set -euo pipefail
build=${1:-build}
n=${2:-1000}
broken=${3:-broken}
sim="$build/tests/sim/corral-sim"
"$sim" --seeds "$n" --first 1
# The random batch fails on any safety violation; a liveness failure there
# (a rare slow recovery) is printed with its seed and does not fail the
# run. The fixed seeds above are checked for liveness too.
"$sim" --seeds $((n / 2)) --random --liveness-warn
[ "$broken" = no-broken ] && exit 0
"$build/tests/sim/corral-sim-broken" --expect-violation --churn --raft-only --seeds 3000 --first 1 2>/dev/null
"$build/tests/sim/corral-sim-broken-drive" --expect-violation --seeds 500 --first 1 2>/dev/null
"$build/tests/sim/corral-sim-broken-controller" --expect-violation --seeds 500 --first 1 2>/dev/null
"$build/tests/sim/corral-sim-broken-agent" --expect-violation --seeds 500 --first 1 2>/dev/null
