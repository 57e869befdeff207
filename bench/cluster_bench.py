#!/usr/bin/env python3
"""cluster_bench: a 3-node corral cluster side by side with a 3-node etcd
cluster on loopback, both driven by the same load generator
(build/bench/corral-loadgen). One run measures, for each system: write
throughput and latency through the leader, linearizable read throughput
over all nodes, leader failover time (kill -9 the leader, time until a
write succeeds through a survivor) and idle RSS per node. It prints a
table with the ratios and targets and writes JSON lines.

    python3 bench/cluster_bench.py [--build build] [--json-out FILE]
        [--only etcd|corral] [--duration-s 10] [--failover-runs 10] [--quick]

Only the standard library. Every process it starts is killed by pid, every
wait has a timeout, data dirs live under one mkdtemp dir removed at the end.
"""

import argparse
import base64
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

NODES = 3
HEALTH_TIMEOUT_S = 30.0     # a fresh cluster or a restarted node is ready well within this
LEADER_TIMEOUT_S = 10.0
FAILOVER_TIMEOUT_S = 15.0   # a failover not done by then is recorded as failed
ATTEMPT_EVERY_S = 0.02      # failover write attempts start this often...
ATTEMPT_TIMEOUT_S = 2.0     # ...and each gives up after this long
IDLE_SETTLE_S = 2.0
STOP_GRACE_S = 3.0

TARGETS = {
    "write_ratio_min": 5.0,      # corral write ops/s >= 5x etcd's
    "p99_ratio_max": 1.0 / 3.0,  # corral p99 <= 1/3 of etcd's
    "failover_p99_ms_max": 600.0,
    "idle_rss_mb_max": 5.0,      # MB = 10^6 bytes, per node
}


def log(msg):
    print(msg, flush=True)


def free_ports(n):
    """Ports the kernel hands out for port 0, all held open at once so they differ."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def http_request(hostport, method, path, body=None, timeout=1.0, headers=None):
    """One request; returns (status, headers dict, body bytes) or None on failure."""
    host, port = hostport.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class Cluster:
    """Three local processes; subclasses say how to start, probe and write."""

    name = "?"

    def __init__(self, workdir, nodes=NODES):
        self.workdir = workdir
        self.n = nodes
        self.procs = [None] * nodes
        client_ports = free_ports(2 * nodes)
        self.client = [f"127.0.0.1:{p}" for p in client_ports[:nodes]]
        self.peer = [f"127.0.0.1:{p}" for p in client_ports[nodes:]]

    def urls(self):
        return ",".join(f"http://{c}" for c in self.client)

    def start_node(self, i):
        args = self.node_args(i)
        logf = open(os.path.join(self.workdir, f"{self.name}-{i + 1}.log"), "ab")
        try:
            env = None
            extra = getattr(self, "env", None)
            if extra is not None and extra[i]:
                env = dict(os.environ, **extra[i])
            self.procs[i] = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf,
                                             stderr=subprocess.STDOUT, start_new_session=True,
                                             env=env)
        finally:
            logf.close()

    def start(self):
        for i in range(self.n):
            self.start_node(i)

    def alive(self, i):
        p = self.procs[i]
        return p is not None and p.poll() is None

    def kill(self, i):
        """kill -9 by pid, then reap it."""
        p = self.procs[i]
        if p is None:
            return
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
        try:
            p.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: pid {p.pid} did not exit after SIGKILL")
        self.procs[i] = None

    def stop(self):
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for i, p in enumerate(self.procs):
            if p is None:
                continue
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
                self.procs[i] = None
            except subprocess.TimeoutExpired:
                self.kill(i)

    def wait_healthy(self, nodes=None, timeout=HEALTH_TIMEOUT_S):
        nodes = range(self.n) if nodes is None else nodes
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in nodes:
                if not self.alive(i):
                    raise RuntimeError(f"{self.name} node {i + 1} exited; see its log")
            if all(self.healthy(i) for i in nodes):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: not healthy within {timeout:.0f} s")

    def find_leader(self, timeout=LEADER_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(self.n):
                if self.alive(i) and self.is_leader(i):
                    return i
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no leader within {timeout:.0f} s")

    def log_tails(self, lines=15):
        out = []
        for i in range(self.n):
            path = os.path.join(self.workdir, f"{self.name}-{i + 1}.log")
            try:
                with open(path, errors="replace") as f:
                    tail = f.readlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- {path} (last {len(tail)} lines)\n" + "".join(tail))
        return "\n".join(out)


class EtcdCluster(Cluster):
    name = "etcd"

    def node_args(self, i):
        initial = ",".join(f"n{j + 1}=http://{self.peer[j]}" for j in range(self.n))
        return ["etcd", "--name", f"n{i + 1}",
                "--data-dir", os.path.join(self.workdir, f"etcd-{i + 1}"),
                "--listen-client-urls", f"http://{self.client[i]}",
                "--advertise-client-urls", f"http://{self.client[i]}",
                "--listen-peer-urls", f"http://{self.peer[i]}",
                "--initial-advertise-peer-urls", f"http://{self.peer[i]}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "corral-bench",
                "--heartbeat-interval", "50", "--election-timeout", "300",
                "--logger", "zap", "--log-level", "warn"]

    def healthy(self, i):
        r = http_request(self.client[i], "GET", "/health", timeout=1.0)
        if r is None or r[0] != 200:
            return False
        try:
            return json.loads(r[2]).get("health") == "true"
        except ValueError:
            return False

    def is_leader(self, i):
        r = http_request(self.client[i], "POST", "/v3/maintenance/status", b"{}", timeout=1.0)
        if r is None or r[0] != 200:
            return False
        try:
            st = json.loads(r[2])
        except ValueError:
            return False
        return st.get("leader") is not None and st.get("leader") == st["header"].get("member_id")

    def write(self, i, key, timeout):
        body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                           "value": base64.b64encode(b"failover").decode()}).encode()
        r = http_request(self.client[i], "POST", "/v3/kv/put", body, timeout=timeout,
                         headers={"Content-Type": "application/json"})
        # the gateway answers 200 with an "error" field for some gRPC failures
        return r is not None and r[0] == 200 and b'"error"' not in r[2]

    def version(self):
        try:
            out = subprocess.run(["etcd", "--version"], capture_output=True, text=True,
                                 timeout=10).stdout
            m = re.search(r"etcd Version: (\S+)", out)
            return m.group(1) if m else "?"
        except (OSError, subprocess.TimeoutExpired):
            return "?"


class CorralCluster(Cluster):
    name = "corral"

    def __init__(self, workdir, exe, nodes=NODES, env=None):
        super().__init__(workdir, nodes)
        self.exe = exe
        self.env = env  # per node: a dict of extra environment variables, or None

    def node_args(self, i):
        return [self.exe, "server", "run", "--id", str(i + 1),
                "--data-dir", os.path.join(self.workdir, f"corral-{i + 1}"),
                "--cluster-addr", self.peer[i], "--http-addr", self.client[i],
                "--peers", ",".join(self.peer),
                "--election-timeout-ms", "300", "--heartbeat-ms", "50"]

    def healthy(self, i):
        r = http_request(self.client[i], "GET", "/health/ready", timeout=1.0)
        return r is not None and r[0] == 200

    def is_leader(self, i):
        r = http_request(self.client[i], "GET", "/v1/status", timeout=1.0)
        if r is None or r[0] != 200:
            return False
        try:
            return json.loads(r[2]).get("role") == "leader"
        except ValueError:
            return False

    def write(self, i, key, timeout):
        target = self.client[i]
        for _ in range(2):  # the node itself, then the leader its 307 names
            r = http_request(target, "PUT", f"/v1/kv/{key}", b"failover", timeout=timeout,
                             headers={"Content-Type": "application/octet-stream"})
            if r is None:
                return False
            if 200 <= r[0] < 300:
                return True
            m = re.match(r"https?://([^/]+)", r[1].get("location", ""))
            if r[0] != 307 or m is None:
                return False
            target = m.group(1)
        return False

    def version(self):
        try:
            return subprocess.run([self.exe, "--version"], capture_output=True, text=True,
                                  timeout=10).stdout.strip() or "?"
        except (OSError, subprocess.TimeoutExpired):
            return "?"


def corral_server_missing(exe):
    """None when exe has `server run`; otherwise why the corral half is skipped."""
    if not os.access(exe, os.X_OK):
        return f"{exe} is not built (run `make build`)"
    try:
        r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{exe} --help failed: {e}"
    if re.search(r"^\s+server\b", r.stdout, re.M):
        return None
    try:  # not in the command list: maybe only its own --help knows it
        r = subprocess.run([exe, "server", "run", "--help"], capture_output=True, timeout=10)
        if r.returncode == 0:
            return None
    except (OSError, subprocess.TimeoutExpired):
        pass
    return f"{exe} has no `server run` subcommand yet"


def run_loadgen(loadgen, target, op, urls, leader_only, a):
    args = [loadgen, "--target", target, "--op", op, "--urls", urls,
            "--clients", str(a.clients), "--value-bytes", str(a.value_bytes),
            "--keys", str(a.keys), "--duration-s", str(a.duration_s),
            "--warmup-s", str(a.warmup_s), "--timeout-ms", "5000"]
    if leader_only:
        args.append("--leader-only")
    if op == "put":
        args.append("--prefill")  # every key exists before the read run
    limit = a.duration_s + a.warmup_s + 120 + 30  # run + prefill bound + slack
    r = subprocess.run(args, capture_output=True, text=True, timeout=limit)
    line = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
    try:
        res = json.loads(line)
    except ValueError:
        raise RuntimeError(f"corral-loadgen failed (exit {r.returncode}): {r.stderr.strip()}")
    if r.returncode != 0:
        log(f"  corral-loadgen exit {r.returncode}: no request succeeded")
    return res


def failover_once(cl, run):
    """Kills the leader; returns ms until a write succeeds through a survivor."""
    leader = cl.find_leader()
    survivors = [i for i in range(cl.n) if i != leader]
    done = threading.Event()
    result = {}
    lock = threading.Lock()

    def attempt(node, key):
        if cl.write(node, key, ATTEMPT_TIMEOUT_S):
            with lock:
                result.setdefault("t", time.monotonic())
            done.set()

    os.kill(cl.procs[leader].pid, signal.SIGKILL)
    t0 = time.monotonic()
    deadline = t0 + FAILOVER_TIMEOUT_S
    k = 0
    while not done.is_set() and time.monotonic() < deadline:
        threading.Thread(target=attempt, daemon=True,
                         args=(survivors[k % 2], f"failover-{run}-{k}")).start()
        k += 1
        done.wait(ATTEMPT_EVERY_S)
    cl.kill(leader)  # reap it
    ms = (result["t"] - t0) * 1000.0 if "t" in result else None
    cl.start_node(leader)
    cl.wait_healthy()
    return ms, leader + 1


def percentile(xs, q):
    """Nearest rank."""
    if not xs:
        return None
    s = sorted(xs)
    rank = max(1, int(q * len(s) + 0.999999))
    return s[min(rank, len(s)) - 1]


def bench_system(cl, loadgen, a, emit):
    out = {"system": cl.name, "version": cl.version()}
    log(f"== {cl.name} {out['version']}: starting 3 nodes")
    cl.start()
    cl.wait_healthy()
    time.sleep(IDLE_SETTLE_S)
    kib = [rss_kib(p.pid) for p in cl.procs]
    out["idle_rss_kib"] = kib
    emit({"system": cl.name, "test": "idle_rss", "rss_kib": kib})
    log(f"  idle RSS KiB: {kib}")

    for op, leader_only in (("put", True), ("get", False)):
        log(f"  {op}: {a.clients} clients, {a.duration_s} s"
            f" ({'leader' if leader_only else 'all nodes'})")
        res = run_loadgen(loadgen, cl.name, op, cl.urls(), leader_only, a)
        out[op] = res
        emit({"system": cl.name, "test": op, **res})
        log(f"  {op}: {res['ops_per_s']:.0f} ops/s, p50 {res['p50_ms']:.2f} ms,"
            f" p99 {res['p99_ms']:.2f} ms, errors {res['errors']}")

    time.sleep(IDLE_SETTLE_S)
    out["after_rss_kib"] = [rss_kib(p.pid) for p in cl.procs]
    emit({"system": cl.name, "test": "rss_after_load", "rss_kib": out["after_rss_kib"]})
    log(f"  RSS KiB after the load: {out['after_rss_kib']}")

    runs = []
    for run in range(a.failover_runs):
        ms, killed = failover_once(cl, run)
        runs.append(ms)
        log(f"  failover {run + 1}/{a.failover_runs}: killed node {killed},"
            f" {'FAILED' if ms is None else f'{ms:.0f} ms'}")
    ok = [m for m in runs if m is not None]
    out["failover"] = {"runs_ms": runs, "failed": len(runs) - len(ok),
                       "p50_ms": percentile(ok, 0.5), "p99_ms": percentile(ok, 0.99),
                       "max_ms": max(ok) if ok else None}
    if len(ok) < len(runs):
        out["failover"]["p99_ms"] = None  # a failed run: no honest p99
    emit({"system": cl.name, "test": "failover", **out["failover"]})
    return out


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def ratio(c, e):
    return None if c is None or e in (None, 0) else c / e


def summary(res):
    """Rows of (metric, etcd, corral, corral/etcd, target, met or not)."""
    e, c = res.get("etcd"), res.get("corral")

    def get(r, *path):
        for p in path:
            if r is None:
                return None
            r = r.get(p)
        return r

    def max_mb(r):
        kib = get(r, "idle_rss_kib")
        return None if not kib or None in kib else max(kib) * 1024 / 1e6

    def verdict(ok):
        return "-" if ok is None else ("met" if ok else "NOT met")

    rows = []
    for op, label in (("put", "write"), ("get", "read")):
        ev, cv = get(e, op, "ops_per_s"), get(c, op, "ops_per_s")
        rv = ratio(cv, ev)
        tgt, met = "", "-"
        if op == "put":
            tgt = ">= 5x etcd"
            met = verdict(None if rv is None else rv >= TARGETS["write_ratio_min"])
        rows.append((f"{label} ops/s", fmt(ev, ".0f"), fmt(cv, ".0f"), fmt(rv, ".2f"), tgt, met))
        for q in ("p50_ms", "p99_ms"):
            ev, cv = get(e, op, q), get(c, op, q)
            rv = ratio(cv, ev)
            tgt, met = "", "-"
            if q == "p99_ms":
                tgt = "<= 1/3 etcd"
                met = verdict(None if rv is None else rv <= TARGETS["p99_ratio_max"])
            rows.append((f"{label} {q[:3]} ms", fmt(ev, ".2f"), fmt(cv, ".2f"), fmt(rv, ".2f"),
                         tgt, met))
    for q in ("p50_ms", "p99_ms", "max_ms"):
        ev, cv = get(e, "failover", q), get(c, "failover", q)
        tgt, met = "", "-"
        if q == "p99_ms":
            tgt = "< 600 ms"
            met = verdict(None if cv is None else cv < TARGETS["failover_p99_ms_max"])
        rows.append((f"failover {q[:-3]} ms", fmt(ev, ".0f"), fmt(cv, ".0f"),
                     fmt(ratio(cv, ev), ".2f"), tgt, met))
    em, cm = max_mb(e), max_mb(c)
    rows.append(("idle RSS MB/node (max)", fmt(em, ".1f"), fmt(cm, ".1f"),
                 fmt(ratio(cm, em), ".2f"), "< 5 MB",
                 verdict(None if cm is None else cm < TARGETS["idle_rss_mb_max"])))
    return rows


def print_table(rows):
    head = ("metric", "etcd", "corral", "corral/etcd", "target (corral)", "")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(v).ljust(w) if i in (0, 4, 5) else str(v).rjust(w)
                        for i, (v, w) in enumerate(zip(r, widths))))


def on_sigterm(signum, frame):
    raise KeyboardInterrupt()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--json-out", default="bench/results/bench-cluster.jsonl")
    ap.add_argument("--only", choices=("etcd", "corral"))
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--value-bytes", type=int, default=100)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument("--warmup-s", type=float, default=2.0)
    ap.add_argument("--failover-runs", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="3 s runs, 3 failovers")
    a = ap.parse_args()
    if a.quick:
        a.duration_s, a.warmup_s, a.failover_runs = 3.0, 1.0, 3
    if not 1 <= a.failover_runs <= 100 or not 0 < a.duration_s <= 600:
        ap.error("--failover-runs in 1..100, --duration-s in (0, 600]")

    loadgen = os.path.join(a.build, "bench", "corral-loadgen")
    if not os.access(loadgen, os.X_OK):
        sys.exit(f"cluster_bench: {loadgen} is missing (run `make build`)")
    # a SIGTERM (or Ctrl-C) still runs the cleanup below
    signal.signal(signal.SIGTERM, on_sigterm)

    machine = {"uname": " ".join(platform.uname()[:3] + (platform.machine(),)),
               "nproc": os.cpu_count()}
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = []

    def emit(rec):
        lines.append({"bench": "cluster", "date": date, "machine": machine, **rec})

    print(f"machine: {machine['uname']}, {machine['nproc']} cores; date {date}")
    skipped = {}
    if a.only != "corral" and shutil.which("etcd") is None:
        skipped["etcd"] = "etcd is not installed (scripts/bench-deps.sh installs it)"
    corral_exe = os.path.join(a.build, "src", "cli", "corral")
    if a.only != "etcd":
        why = corral_server_missing(corral_exe)
        if why:
            skipped["corral"] = why
    systems = [s for s in ("etcd", "corral") if a.only in (None, s) and s not in skipped]
    for s, why in skipped.items():
        print(f"{s}: skipped: {why}")
        emit({"system": s, "test": "skipped", "reason": why})

    results = {}
    failed = False
    workdir = tempfile.mkdtemp(prefix="corral-cluster-bench-")
    try:
        for s in systems:
            cl = EtcdCluster(workdir) if s == "etcd" else CorralCluster(workdir, corral_exe)
            try:
                results[s] = bench_system(cl, loadgen, a, emit)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                failed = True
                print(f"{s}: FAILED: {e}\n{cl.log_tails()}")
                emit({"system": s, "test": "failed", "reason": str(e)})
            finally:
                cl.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = summary(results)
    print()
    print_table(rows)
    emit({"test": "summary", "targets": TARGETS,
          "rows": [dict(zip(("metric", "etcd", "corral", "ratio", "target", "met"), r))
                   for r in rows]})
    os.makedirs(os.path.dirname(a.json_out) or ".", exist_ok=True)
    with open(a.json_out, "w") as f:
        for rec in lines:
            f.write(json.dumps(rec) + "\n")
    print(f"\nJSON lines: {a.json_out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
