#!/usr/bin/env python3
"""latency_bench: one client's write and read latency against the physical
floor of this machine, corral side by side with etcd in the same run, the
writes/s of 64 and 256 clients, and where a request's time goes (issue 14).

    python3 bench/latency_bench.py [--build build] [--duration-s 3]
        [--rounds 3] [--json-out FILE] [--quick] [--no-etcd] [--no-trace]

1. The floor, measured before and after the one-client runs (the mean is
   used: a small VM's disk changes speed over minutes): the HTTP round trip
   (corral-loadgen --op health against a single corral node: GET /health,
   one client), one fdatasync of a small in-place write on the data dirs'
   file system, three of them at once from three processes (what three
   nodes on one disk pay), and a loopback TCP round trip
   (corral-floor-probe).
2. One client, one request at a time, for corral and etcd, one node and
   three: PUT of 100 bytes through the leader; linearizable GET on the
   leader and on a follower. Ratios to the floor: a write's floor is the
   HTTP round trip plus one fdatasync (the leader's and the followers'
   fsyncs run in parallel); a read's is the HTTP round trip plus one peer
   round trip (a single node: the HTTP round trip alone). A 3-node write
   is also given against the same-disk floor (HTTP + three fdatasyncs at
   once).
3. Throughput: 64 and 256 clients writing through the leader of three
   nodes, corral and etcd alternating, --rounds rounds each; the median.
4. The stage breakdown: corral with CORRAL_TRACE_FILE (src/runtime/trace.h)
   for one client and for 64, one node and three; the median time from
   the HTTP request's arrival to each stage, merged across the nodes'
   trace files (one CLOCK_MONOTONIC on one machine).

Only the standard library; every process is killed by pid, every wait is
bounded, data lives under one mkdtemp dir removed at the end.
"""

import argparse
import bisect
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cluster_bench as cb  # noqa: E402

TARGETS = {
    "write_floor_ratio_max": 1.5,
    "read_floor_ratio_max": 1.5,
    "write_ratio_min": 8.0,      # corral writes/s at 64 clients >= 8x etcd's
    "p99_ratio_max": 1.0 / 3.0,  # corral p99 at 64 clients <= 1/3 of etcd's
}

# trace.h's stages
PARSE, DISPATCH, QUEUED, WRITTEN, PROPOSE, READ, READ_READY, WAL, FSYNC, SEND, RECV, COMMIT, \
    APPLY = range(1, 14)
APPEND, APPEND_RESP, HEARTBEAT, HEARTBEAT_RESP, READ_INDEX, READ_INDEX_RESP = 5, 6, 7, 8, 12, 13


def log(msg):
    print(msg, flush=True)


def loadgen(a, target, op, urls, clients, leader_only=True, duration=None, prefill=False):
    args = [a.loadgen, "--target", target, "--op", op, "--urls", urls,
            "--clients", str(clients), "--value-bytes", "100", "--keys", "1000",
            "--duration-s", str(duration or a.duration_s), "--warmup-s", str(a.warmup_s),
            "--timeout-ms", "5000"]
    if leader_only:
        args.append("--leader-only")
    if prefill:
        args.append("--prefill")
    limit = (duration or a.duration_s) + a.warmup_s + 120
    r = subprocess.run(args, capture_output=True, text=True, timeout=limit)
    lines = r.stdout.strip().splitlines()
    try:
        return json.loads(lines[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"corral-loadgen failed (exit {r.returncode}): {r.stderr.strip()}")


def probe(a, *args):
    r = subprocess.run([a.probe, *args], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"corral-floor-probe {' '.join(args)}: {r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def probe_parallel_fsync(a, workdir, k, n):
    """k fsync probes at once, each in its own directory on the same file
    system (three nodes on one disk); the median of their p50s."""
    procs = []
    for i in range(k):
        d = tempfile.mkdtemp(prefix=f"probe{i}-", dir=workdir)
        procs.append(subprocess.Popen([a.probe, "fsync", d, str(n)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    p50s = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        if p.returncode != 0:
            raise RuntimeError(f"corral-floor-probe fsync: {err.strip()}")
        p50s.append(json.loads(out.strip().splitlines()[-1])["p50_us"])
    return sorted(p50s)[len(p50s) // 2]


def measure_floor(a, workdir):
    cl, _ = start("corral", a, workdir, 1)
    try:
        h = loadgen(a, "corral", "health", url(cl, 0), 1)
    finally:
        cl.stop()
    fs = probe(a, "fsync", workdir, "3000")
    tcp = probe(a, "tcp", "20000")
    return {"http_ms": h["p50_ms"], "fsync_ms": fs["p50_us"] / 1000.0,
            "fsync3_ms": probe_parallel_fsync(a, workdir, 3, 3000) / 1000.0,
            "tcp_ms": tcp["p50_us"] / 1000.0}


def start(kind, a, workdir, nodes, env=None):
    sub = tempfile.mkdtemp(prefix=f"{kind}{nodes}-", dir=workdir)
    cl = (cb.CorralCluster(sub, a.exe, nodes=nodes, env=env) if kind == "corral"
          else cb.EtcdCluster(sub, nodes=nodes))
    cl.start()
    try:
        cl.wait_healthy()
        leader = cl.find_leader()
    except Exception:
        log(cl.log_tails())
        cl.stop()
        raise
    return cl, leader


def url(cl, i):
    return f"http://{cl.client[i]}"


# ---- one client against the floor ----

def one_client(a, kind, nodes, workdir, emit):
    cl, leader = start(kind, a, workdir, nodes)
    out = {}
    try:
        # every key exists before the reads; the prefill is not measured
        r = loadgen(a, kind, "put", url(cl, leader), 1, prefill=True)
        out["write"] = r
        out["read_leader"] = loadgen(a, kind, "get", url(cl, leader), 1)
        if nodes > 1:
            follower = next(i for i in range(nodes) if i != leader)
            out["read_follower"] = loadgen(a, kind, "get", url(cl, follower), 1,
                                           leader_only=False)
    finally:
        cl.stop()
    for what, r in out.items():
        emit({"bench": "one_client", "system": kind, "nodes": nodes, "what": what,
              "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"], "ops_per_s": r["ops_per_s"],
              "errors": r["errors"]})
    return out


# ---- throughput ----

def throughput(a, workdir, clients, kinds, emit):
    rounds = {k: [] for k in kinds}
    for rnd in range(a.rounds):
        for kind in (kinds if rnd % 2 == 0 else list(reversed(kinds))):
            cl, leader = start(kind, a, workdir, 3)
            try:
                r = loadgen(a, kind, "put", url(cl, leader), clients)
            finally:
                cl.stop()
            rounds[kind].append(r)
            emit({"bench": "throughput", "system": kind, "clients": clients, "round": rnd + 1,
                  "ops_per_s": r["ops_per_s"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                  "errors": r["errors"]})
            log(f"  {clients} clients, round {rnd + 1}, {kind}: {r['ops_per_s']:.0f} writes/s, "
                f"p99 {r['p99_ms']:.2f} ms")
    med = {}
    for kind, rs in rounds.items():
        rs = sorted(rs, key=lambda r: r["ops_per_s"])
        m = rs[len(rs) // 2]
        med[kind] = {"ops_per_s": m["ops_per_s"],
                     "p99_ms": sorted(r["p99_ms"] for r in rs)[len(rs) // 2]}
    return med


# ---- the stage breakdown from trace files ----

def load_trace(path):
    recs = []
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                continue
            st, x, y, t = line.split()
            recs.append((int(st), int(x), int(y), int(t)))
    recs.sort(key=lambda r: r[3])
    return recs


class Cover:
    """When events first covered an index: (index, t) pairs in time order,
    an index covered once the running maximum reaches it."""

    def __init__(self, pairs):
        self.maxes, self.times = [], []
        m = 0
        for idx, t in pairs:
            if idx > m:
                m = idx
                self.maxes.append(m)
                self.times.append(t)

    def at(self, idx):
        k = bisect.bisect_left(self.maxes, idx)
        return self.times[k] if k < len(self.times) else None


class After:
    """The first event at or after a time."""

    def __init__(self, times):
        self.times = sorted(times)

    def at(self, t0):
        k = bisect.bisect_left(self.times, t0)
        return self.times[k] if k < len(self.times) else None


def node_view(recs):
    v = {"parse": {}, "dispatch": {}, "queued": {}, "written": {}, "propose": {}, "read": {},
         "ready": {}, "apply": {}}
    wal, fsync, commit, sends, recvs = [], [], [], {}, {}
    for st, x, y, t in recs:
        if st == PARSE:
            v["parse"].setdefault(x, t)
        elif st == DISPATCH:
            v["dispatch"].setdefault(x, t)
        elif st == QUEUED:
            v["queued"].setdefault(x, t)
        elif st == WRITTEN:
            v["written"].setdefault(x, t)
        elif st == PROPOSE:
            v["propose"][x] = (t, y)
        elif st == READ:
            v["read"][x] = (t, y)
        elif st == READ_READY:
            v["ready"].setdefault(x, t)
        elif st == APPLY:
            v["apply"].setdefault(x, t)
        elif st == WAL and x > 0:
            wal.append((x, t))
        elif st == FSYNC and x > 0:
            fsync.append((x, t))
        elif st == COMMIT:
            commit.append((x, t))
        elif st in (SEND, RECV):
            key = (x >> 32, x & 0xffffffff)
            (sends if st == SEND else recvs).setdefault(key, []).append((y, t))
    v["wal"], v["fsync"], v["commit"] = Cover(wal), Cover(fsync), Cover(commit)
    v["send_cover"] = {k: Cover(p) for k, p in sends.items()}
    v["recv_cover"] = {k: Cover(p) for k, p in recvs.items()}
    v["send_after"] = {}
    v["recv_after"] = {}
    for k, p in sends.items():
        v["send_after"].setdefault(k[0], []).extend(t for _, t in p)
    for k, p in recvs.items():
        v["recv_after"].setdefault(k[0], []).extend(t for _, t in p)
    v["send_after"] = {k: After(ts) for k, ts in v["send_after"].items()}
    v["recv_after"] = {k: After(ts) for k, ts in v["recv_after"].items()}
    return v


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else None


def write_stages(views, leader, nodes):
    """For each traced write on the leader: the stages' times since the HTTP
    request arrived, in µs."""
    L = views[leader]
    rows = []
    for idx, (t_prop, seq) in L["propose"].items():
        t0 = L["parse"].get(seq)
        if seq == 0 or t0 is None or seq not in L["written"]:
            continue
        st = {"dispatch": L["dispatch"].get(seq), "propose": t_prop,
              "leader WAL written": L["wal"].at(idx), "leader fsync done": L["fsync"].at(idx)}
        if nodes > 1:
            best = None
            for f in range(nodes):
                if f == leader:
                    continue
                fid = f + 1
                F = views[f]
                c = L["send_cover"].get((APPEND, fid))
                ack = L["recv_cover"].get((APPEND_RESP, fid))
                frecv = F["recv_cover"].get((APPEND, leader + 1))
                fresp = F["send_cover"].get((APPEND_RESP, leader + 1))
                path = {"append sent": c.at(idx) if c else None,
                        "follower received": frecv.at(idx) if frecv else None,
                        "follower fsync done": F["fsync"].at(idx),
                        "follower answered": fresp.at(idx) if fresp else None,
                        "leader got the answer": ack.at(idx) if ack else None}
                if path["leader got the answer"] is not None and (
                        best is None or path["leader got the answer"] < best["leader got the answer"]):
                    best = path
            if best is not None:
                st.update(best)
        st.update({"commit seen": L["commit"].at(idx), "applied": L["apply"].get(idx),
                   "reply queued": L["queued"].get(seq), "reply written": L["written"].get(seq)})
        rows.append({k: (v - t0) / 1000.0 for k, v in st.items() if v is not None})
    return rows


def read_stages(views, node, leader, nodes):
    N = views[node]
    L = views[leader]
    rows = []
    for rid, (t_read, seq) in N["read"].items():
        t0 = N["parse"].get(seq)
        if seq == 0 or t0 is None or seq not in N["written"]:
            continue
        st = {"dispatch": N["dispatch"].get(seq), "read asked": t_read}
        t_round = t_read
        if node != leader:
            s = N["send_after"].get(READ_INDEX)
            st["read index sent"] = s.at(t_read) if s else None
            r = L["recv_after"].get(READ_INDEX)
            st["leader got it"] = r.at(st["read index sent"]) if r and st["read index sent"] else None
            t_round = st["leader got it"] or t_read
        if nodes > 1:
            hb = L["send_after"].get(HEARTBEAT)
            st["heartbeat sent"] = hb.at(t_round) if hb else None
            ack = L["recv_after"].get(HEARTBEAT_RESP)
            st["quorum answered"] = ack.at(st["heartbeat sent"]) if ack and st["heartbeat sent"] else None
        if node != leader:
            r = N["recv_after"].get(READ_INDEX_RESP)
            base = st.get("quorum answered") or t_read
            st["read index answered"] = r.at(base) if r else None
        st.update({"read ready": N["ready"].get(rid), "reply queued": N["queued"].get(seq),
                   "reply written": N["written"].get(seq)})
        rows.append({k: (v - t0) / 1000.0 for k, v in st.items() if v is not None})
    return rows


def summarize(rows):
    keys = []
    for r in rows:
        for k in r:
            if k not in keys:
                keys.append(k)
    out = []
    for k in keys:
        xs = [r[k] for r in rows if k in r]
        out.append({"stage": k, "n": len(xs), "p50_us": quantile(xs, 0.5),
                    "p90_us": quantile(xs, 0.9)})
    return out


def traced(a, workdir, nodes, clients, op, emit, on_follower=False):
    sub = tempfile.mkdtemp(prefix=f"trace{nodes}-", dir=workdir)
    files = [os.path.join(sub, f"trace-{i + 1}.txt") for i in range(nodes)]
    env = [{"CORRAL_TRACE_FILE": f} for f in files]
    cl, leader = start("corral", a, sub, nodes, env=env)
    target = leader
    try:
        if op == "get":
            loadgen(a, "corral", "put", url(cl, leader), 1, prefill=True, duration=0.2)
            if on_follower:
                target = next(i for i in range(nodes) if i != leader)
        res = loadgen(a, "corral", op, url(cl, target), clients, duration=a.trace_s,
                      leader_only=not on_follower)
    finally:
        cl.stop()
    views = [node_view(load_trace(f)) for f in files]
    rows = (write_stages(views, leader, nodes) if op == "put"
            else read_stages(views, target, leader, nodes))
    # the warm-up and the prefill are traced too: keep the measured tail
    rows = rows[len(rows) // 4:]
    summ = summarize(rows)
    where = "follower" if on_follower else "leader"
    emit({"bench": "stages", "op": op, "nodes": nodes, "clients": clients, "on": where,
          "client_p50_ms": res["p50_ms"], "stages": summ})
    return res, summ


def print_stages(title, res, summ):
    log(f"\n{title}: client p50 {res['p50_ms']:.3f} ms ({res['ops_per_s']:.0f}/s)")
    log(f"  {'stage':<24} {'p50 µs':>9} {'p90 µs':>9} {'n':>7}")
    for s in summ:
        log(f"  {s['stage']:<24} {s['p50_us']:>9.1f} {s['p90_us']:>9.1f} {s['n']:>7}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration-s", type=float, default=3.0)
    ap.add_argument("--warmup-s", type=float, default=0.5)
    ap.add_argument("--trace-s", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--quick", action="store_true", help="short runs, one round")
    ap.add_argument("--no-etcd", action="store_true")
    ap.add_argument("--no-trace", action="store_true")
    ap.add_argument("--only", choices=["one", "throughput", "trace"], default=None)
    a = ap.parse_args()
    if a.quick:
        a.duration_s, a.rounds, a.trace_s = 1.0, 1, 1.0
    a.exe = os.path.join(a.build, "src", "cli", "corral")
    a.loadgen = os.path.join(a.build, "bench", "corral-loadgen")
    a.probe = os.path.join(a.build, "bench", "corral-floor-probe")
    for p in (a.exe, a.loadgen, a.probe):
        if not os.access(p, os.X_OK):
            sys.exit(f"latency_bench: {p} is not built (run `make build`)")
    kinds = ["corral"]
    if not a.no_etcd:
        if shutil.which("etcd") is None:
            log("latency_bench: etcd not installed: corral only (scripts/deps.sh etcd-server)")
        else:
            kinds.append("etcd")
    json_out = a.json_out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                          "latency_bench.jsonl")
    os.makedirs(os.path.dirname(json_out), exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    jf = open(json_out, "a")

    def emit(rec):
        rec = dict(rec, date=stamp, machine=f"{platform.machine()} {os.cpu_count()} cores")
        jf.write(json.dumps(rec) + "\n")
        jf.flush()

    workdir = tempfile.mkdtemp(prefix="corral-latency-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    results = {}
    try:
        log(f"latency_bench {stamp}, {platform.machine()}, {os.cpu_count()} cores")
        if a.only in (None, "one"):
            f0 = measure_floor(a, workdir)
            log(f"floor before: {f0}")
        if a.only in (None, "one"):
            outs = []
            for nodes in (1, 3):
                for kind in kinds:
                    outs.append((kind, nodes, one_client(a, kind, nodes, workdir, emit)))
            # The disk of a small VM changes speed over minutes: the floor is
            # measured before and after the runs, and the ratios use the mean.
            f1 = measure_floor(a, workdir)
            log(f"floor after:  {f1}")
            floor = {k: (f0[k] + f1[k]) / 2 for k in f0}
            floor["write_ms"] = floor["http_ms"] + floor["fsync_ms"]
            floor["write3_ms"] = floor["http_ms"] + floor["fsync3_ms"]
            floor["read_ms"] = floor["http_ms"] + floor["tcp_ms"]
            emit({"bench": "floor", "before": f0, "after": f1, **floor})
            results["floor"] = floor
            log(f"floor (mean): HTTP round trip {floor['http_ms']:.3f} ms, fdatasync "
                f"{floor['fsync_ms']:.3f} ms (3 at once on this disk: {floor['fsync3_ms']:.3f} ms), "
                f"TCP round trip {floor['tcp_ms']:.3f} ms")
            rows = []
            for kind, nodes, out in outs:
                for what, r in out.items():
                    fl = floor["write_ms"] if what == "write" else (
                        floor["http_ms"] if nodes == 1 else floor["read_ms"])
                    fl3 = floor["write3_ms"] if what == "write" and nodes == 3 else fl
                    rows.append((kind, nodes, what, r["p50_ms"], r["p99_ms"], r["p50_ms"] / fl,
                                 r["p50_ms"] / fl3))
            log("\none client, one request at a time (ratio: p50 / floor; same disk: a 3-node "
                "write against 3 fdatasyncs at once)")
            log(f"  {'system':<7} {'nodes':>5} {'what':<14} {'p50 ms':>8} {'p99 ms':>8} "
                f"{'ratio':>6} {'same disk':>9}")
            for kind, nodes, what, p50, p99, ratio, r3 in rows:
                log(f"  {kind:<7} {nodes:>5} {what:<14} {p50:>8.3f} {p99:>8.3f} {ratio:>6.2f} "
                    f"{r3:>9.2f}")
            results["one_client"] = rows
        if a.only in (None, "throughput"):
            for clients in (64, 256):
                med = throughput(a, workdir, clients, kinds, emit)
                line = f"{clients} clients (median of {a.rounds}): corral " \
                       f"{med['corral']['ops_per_s']:.0f}/s p99 {med['corral']['p99_ms']:.2f} ms"
                if "etcd" in med:
                    e = med["etcd"]
                    line += f"; etcd {e['ops_per_s']:.0f}/s p99 {e['p99_ms']:.2f} ms; ratio " \
                            f"{med['corral']['ops_per_s'] / e['ops_per_s']:.2f}x, p99 " \
                            f"{med['corral']['p99_ms'] / e['p99_ms']:.2f}"
                log(line)
                emit({"bench": "throughput_median", "clients": clients, **{
                    k: v for k, v in med.items()}})
        if a.only in (None, "trace") and not a.no_trace:
            for nodes, clients, op, fol in ((1, 1, "put", False), (3, 1, "put", False),
                                            (3, 64, "put", False), (1, 1, "get", False),
                                            (3, 1, "get", False), (3, 1, "get", True)):
                res, summ = traced(a, workdir, nodes, clients, op, emit, on_follower=fol)
                print_stages(f"{op}, {nodes} node(s), {clients} client(s)"
                             f"{' on a follower' if fol else ''}", res, summ)
    finally:
        jf.close()
        shutil.rmtree(workdir, ignore_errors=True)
    log(f"\nresults appended to {json_out}")


if __name__ == "__main__":
    main()
