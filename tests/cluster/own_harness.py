"""Workers for the ownership tests and the failover benchmark: `corral
agent` processes whose hook (one Python script) appends every hook run to
one shared log as a JSON line with a CLOCK_MONOTONIC timestamp, and the
intervals during which each worker acted as primary of each partition,
from that log and the faults injected (see test_ownership.py)."""
import json
import os
import signal
import subprocess
import time

from harness import CORRAL_BIN, EXIT_WAIT_S, http

LEASE_S = 1.0  # the servers' default --lease-ms

HOOK = r'''#!/usr/bin/python3 -S
import json, os, sys, time
e = os.environ
rec = {"t": time.monotonic(), "t0": int(e["CORRAL_HOOK_START_MS"]) / 1000.0,
       "w": e["CORRAL_MEMBER"], "ev": e["CORRAL_EVENT"],
       "r": e.get("CORRAL_RESOURCE", ""), "p": int(e.get("CORRAL_PARTITION", "-1")),
       "e": int(e.get("CORRAL_EPOCH", "0") or 0), "reason": e.get("CORRAL_REASON", "")}
line = json.dumps(rec) + "\n"
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
os.write(fd, line.encode())
os.close(fd)
'''


class Workers:
    """The agents: started with one hook script and one shared log."""

    def __init__(self, tmp_path, cluster):
        self.tmp = tmp_path
        self.cluster = cluster
        self.log = str(tmp_path / "hooks.jsonl")
        self.hook = str(tmp_path / "hook.py")
        with open(self.hook, "w") as f:
            f.write(HOOK)
        os.chmod(self.hook, 0o755)
        self.procs = {}
        self.faults = []  # (t, worker, kind): kill, stop, cont

    def start(self, name, zone=None, extra=()):
        log = open(str(self.tmp / f"{name}.log"), "ab")
        coords = ",".join(n.http_addr for n in self.cluster.nodes)
        argv = [CORRAL_BIN, "agent", "--name", name, "--coordinators", coords,
                "--addr", f"127.0.0.1:{7000 + len(self.procs)}",
                "--hook", f"{self.hook} {self.log}",
                "--lease-file", str(self.tmp / f"{name}.lease")]
        if zone:
            argv += ["--zone", zone]
        argv += list(extra)
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.procs[name] = p
        self.cluster.started_pids.append(p.pid)
        return p

    def kill(self, name):
        self.faults.append((time.monotonic(), name, "kill"))
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(timeout=EXIT_WAIT_S)

    def stop(self, name):
        """SIGSTOP; records the agent's lease end as its --lease-file holds
        it once the process is stopped (it cannot write any more)."""
        t = time.monotonic()
        p = self.procs[name]
        p.send_signal(signal.SIGSTOP)
        for _ in range(200):  # bounded: 2 s
            with open(f"/proc/{p.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":
                    break
            time.sleep(0.01)
        with open(str(self.tmp / f"{name}.lease")) as f:
            lease_end = int(f.read().strip()) / 1000.0
        # The file is the agent's lease end: within one lease of now.
        assert t - 0.1 < lease_end <= t + LEASE_S + 0.05, (t, lease_end)
        self.faults.append((t, name, "stop", lease_end))

    def cont(self, name):
        self.procs[name].send_signal(signal.SIGCONT)
        self.faults.append((time.monotonic(), name, "cont"))

    def records(self):
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            text = f.read()
        # A hook may be writing its line right now: whatever follows the
        # last newline is not a whole record yet.
        return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]

    def close(self):
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGCONT)
                    p.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=EXIT_WAIT_S)

    def agent_logs(self):
        out = []
        for name in self.procs:
            path = str(self.tmp / f"{name}.log")
            with open(path, "rb") as f:
                out.append(f"--- agent {name} ---\n" + f.read()[-3000:].decode(errors="replace"))
        return "\n".join(out)


def intervals(records, faults, now):
    """(partition) -> list of (start, end, worker, epoch): who acted as
    primary when, from the merged hook log and the faults. An acquire
    counts from when the agent started its hook (t0, CORRAL_HOOK_START_MS:
    the application cannot act before). A release counts until the hook
    ran (t: the application has stopped by then), except a release for a
    lost lease: it counts until the agent started it (t0), the instant the
    agent stopped counting itself primary, because the protocol gives such
    a hook only lease x drift + margin to take effect (docs/cli.md) and a
    Python hook's start-up on a loaded machine can take longer; the
    application's own guard there is the epoch."""
    cut = {}  # worker -> sorted list of (t, kind, lease end at a stop)
    for f in faults:
        t, w, kind = f[:3]
        cut.setdefault(w, []).append((t, kind, f[3] if len(f) > 3 else None))
    out = {}
    open_ = {}
    for rec in sorted(records, key=lambda r: r["t0"]):
        key = (rec["w"], rec["p"])
        if rec["ev"] == "acquire":
            open_[key] = (rec["t0"], rec["e"])
        elif rec["ev"] == "release" and key in open_:
            start, epoch = open_.pop(key)
            end = rec["t0"] if rec["reason"] == "lease_lost" else rec["t"]
            out.setdefault(rec["p"], []).append((start, end, rec["w"], epoch))
    for (w, p), (start, epoch) in open_.items():
        out.setdefault(p, []).append((start, now, w, epoch))
    # A kill ends every interval at the kill; a freeze ends it one lease
    # after the freeze.
    for p, ivs in out.items():
        fixed = []
        for start, end, w, epoch in ivs:
            for t, kind, lease_end in cut.get(w, []):
                if t < start or t > end:
                    continue
                if kind == "kill":
                    end = min(end, t)
                elif kind == "stop":
                    # Frozen, it cannot act past its lease: the end its
                    # --lease-file held when it stopped (at most a lease
                    # after the freeze).
                    end = min(end, max(lease_end, t))
            fixed.append((start, end, w, epoch))
        out[p] = fixed
    return out


def get(node, path):
    r = http(node.url + path)
    assert r.status == 200, (path, r.status, r.body)
    return json.loads(r.body)


def leader(cluster):
    return cluster.wait_leader()


def resource_map(cluster, resource="orders"):
    return get(leader(cluster), "/v1/resources/" + resource)["map"]


def settled(cluster, workers, avoid=(), replicas=2):
    """Every partition has a primary (not in avoid) whose acquire at its
    epoch is in the log, and R in-sync replicas none of which is in avoid."""
    m = resource_map(cluster)
    acquired = {(r["w"], r["p"], r["e"]) for r in workers.records() if r["ev"] == "acquire"}
    for row in m:
        if row["primary"] is None or row["primary"] in avoid:
            return None
        if (row["primary"], row["partition"], row["epoch"]) not in acquired:
            return None
        reps = row["replicas"]
        if len(reps) != replicas or any(x["state"] != "in_sync" or x["member"] in avoid for x in reps):
            return None
    return m
