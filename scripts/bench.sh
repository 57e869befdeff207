#!/usr/bin/env bash
# `make bench`: runs every benchmark in bench/ and prints its table.
# Results to record go in docs/benchmarks.md (with the date and machine)
# and as JSON lines under bench/results/. The last two steps start corral
# processes on loopback (the cluster and member benches).
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
mkdir -p bench/results
echo "machine: $(uname -srm), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
for b in "$build"/bench/bench-*; do
  [ -f "$b" ] && [ -x "$b" ] || continue
  echo
  echo "== $(basename "$b")"
  "$b" --json-out "bench/results/$(basename "$b").jsonl"
done

# corral vs etcd, 3 nodes each on loopback (bench/cluster_bench.py). It
# skips the corral half by itself until `corral server run` exists.
echo
echo "== cluster (corral vs etcd)"
scripts/bench-deps.sh || true
if command -v etcd >/dev/null; then
  python3 bench/cluster_bench.py --build "$build" --json-out bench/results/bench-cluster.jsonl
else
  echo "cluster bench skipped: etcd is not installed (scripts/bench-deps.sh installs it)"
fi

# One client's latency against this machine's floor (HTTP round trip,
# fdatasync, loopback TCP), corral and etcd on 1 and 3 nodes, 64 and 256
# clients in alternating rounds, and the traced stage breakdown
# (bench/latency_bench.py, about 3 minutes).
echo
echo "== latency (one client vs the floor; throughput; stages)"
if command -v etcd >/dev/null; then
  python3 bench/latency_bench.py --build "$build" --json-out bench/results/bench-latency.jsonl
else
  python3 bench/latency_bench.py --build "$build" --no-etcd \
    --json-out bench/results/bench-latency.jsonl
fi

# Heartbeat capacity of one leader: N simulated members on loopback
# (bench/member_bench.py, corral-memberload), about 3 minutes.
echo
echo "== members (heartbeats to one leader)"
python3 bench/member_bench.py --build "$build" --json-out bench/results/bench-members.jsonl

# Partition failover and drain hand-offs with real processes: 3
# coordinators, 5 corral agents (bench/failover_bench.py), about 4 minutes.
echo
echo "== failover (kill -9 of a worker, drain hand-offs)"
/usr/bin/python3 bench/failover_bench.py --build "$build" --runs 20 \
  --json-out bench/results/bench-failover.jsonl
