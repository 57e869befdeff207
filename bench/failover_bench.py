#!/usr/bin/env python3
"""failover_bench: partition failover and planned hand-offs with real
processes on loopback: 3 coordinators (`corral server run`) and 5 workers
(`corral agent`, with the hook of tests/cluster/own_harness.py that logs
every hook run with a CLOCK_MONOTONIC timestamp).

- Failover: kill -9 a worker holding primaries; the time from the kill
  until every partition it was primary of has been acquired by another
  worker (the acquire hook started). The worker is restarted under the
  same name and the map settles before the next run.
- Hand-off: drain a worker; per partition it was primary of, the gap from
  the end of its release hook to the start of the next acquire. The
  worker is activated again and the map settles.

    /usr/bin/python3 bench/failover_bench.py [--build build] [--runs 20]
        [--partitions 64] [--replicas 2] [--json-out FILE]

Targets (the issue): failover p99 < 2 s, goal 1 s. Every process it
starts is killed by pid; every wait is bounded.
"""
import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, int(round(q * (len(xs) - 1)))))
    return xs[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--partitions", type=int, default=64)
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--workers", type=int, default=5)
    ap.add_argument("--json-out")
    a = ap.parse_args()
    os.environ["CORRAL_BIN"] = os.path.abspath(os.path.join(a.build, "src", "cli", "corral"))
    import harness  # after CORRAL_BIN is set
    from own_harness import Workers, intervals, leader, resource_map, settled
    import pathlib

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="corral-failover-"))
    c = harness.Cluster(tmp, 3).start()
    w = Workers(tmp, c)
    fail, gaps = [], []
    try:
        c.wait_leader()
        names = [f"w{i}" for i in range(a.workers)]
        for n in names:
            w.start(n)
        harness.wait_until("workers active", lambda: sum(
            m["status"] == "active" for m in json.loads(
                harness.http(leader(c).url + "/v1/members").body)["members"]) == a.workers
            or None, 30)
        r = harness.http(leader(c).url + "/v1/resources/orders", "PUT", json.dumps(
            {"partitions": a.partitions, "replicas": a.replicas}).encode())
        assert r.status == 200, r.body
        ok = lambda: settled(c, w, replicas=a.replicas)  # noqa: E731
        harness.wait_until("placed", ok, 60)
        for run in range(a.runs):
            victim = names[run % len(names)]
            held = {row["partition"] for row in resource_map(c) if row["primary"] == victim}
            w.kill(victim)
            t_kill = time.monotonic()

            def served():
                got = {}
                for rec in w.records():
                    if (rec["ev"] == "acquire" and rec["t"] > t_kill and rec["w"] != victim
                            and rec["p"] in held):
                        got.setdefault(rec["p"], rec["t"])
                return got if set(got) >= held else None
            got = harness.wait_until("failover", served, 30)
            fail.append(max(got.values()) - t_kill)
            print(f"run {run + 1}: {victim} held {len(held)} primaries, "
                  f"all served again after {fail[-1] * 1000:.0f} ms", flush=True)
            w.start(victim)
            harness.wait_until("settled", lambda: (lambda m: m if m and any(
                row["primary"] == victim for row in m) else None)(ok()), 90)
        # Planned hand-offs: drain one worker, then take it back.
        for run in range(min(3, a.runs)):
            victim = names[run]
            held = {row["partition"] for row in resource_map(c) if row["primary"] == victim}
            t0 = time.monotonic()
            harness.http(leader(c).url + f"/v1/members/{victim}/drain", "POST", b"")
            harness.wait_until("drained", lambda: (lambda m: m if m and all(
                x["member"] != victim for row in m for x in row["replicas"]) else None)(
                    settled(c, w, avoid=(victim,), replicas=a.replicas)), 120)
            ivs = intervals(w.records(), w.faults, time.monotonic())
            for p in held:
                lst = sorted(ivs.get(p, []))
                for x, y in zip(lst, lst[1:]):
                    if x[2] == victim and x[1] >= t0:
                        gaps.append(y[0] - x[1])
            harness.http(leader(c).url + f"/v1/members/{victim}/activate", "POST", b"")
            harness.wait_until("back", lambda: (lambda m: m if m and any(
                row["primary"] == victim for row in m) else None)(ok()), 120)
    finally:
        w.close()
        c.stop_all()
    row = {
        "bench": "failover", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "partitions": a.partitions, "replicas": a.replicas, "workers": a.workers,
        "runs": len(fail),
        "failover_ms_p50": round(percentile(fail, 0.5) * 1000, 1),
        "failover_ms_p99": round(percentile(fail, 0.99) * 1000, 1),
        "failover_ms_max": round(max(fail) * 1000, 1),
        "handoffs": len(gaps),
        "handoff_gap_ms_p50": round(percentile(gaps, 0.5) * 1000, 1) if gaps else None,
        "handoff_gap_ms_p99": round(percentile(gaps, 0.99) * 1000, 1) if gaps else None,
        "handoff_gap_ms_max": round(max(gaps) * 1000, 1) if gaps else None,
    }
    print("| what | n | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|")
    print(f"| failover (kill -9 of a worker) | {row['runs']} | {row['failover_ms_p50']} | "
          f"{row['failover_ms_p99']} | {row['failover_ms_max']} |")
    print(f"| drain hand-off gap per partition | {row['handoffs']} | "
          f"{row['handoff_gap_ms_p50']} | {row['handoff_gap_ms_p99']} | "
          f"{row['handoff_gap_ms_max']} |")
    print(f"target: failover p99 < 2000 ms (goal 1000): "
          f"{'met' if row['failover_ms_p99'] < 2000 else 'NOT met'}")
    if a.json_out:
        with open(a.json_out, "a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
