"""Disk faults injected into real nodes with the LD_PRELOAD shim
tests/fault/diskfault.c (libdiskfault.so): fsync/fdatasync failing with
EIO, writes failing with ENOSPC or EIO, and short writes, only on files in the
node's data directory, switched on and off while the node runs.

For a single node, and for a follower and the leader of a 3-node cluster:
a client writes in a bounded loop and records which PUTs got 200; the
fault is switched on; a failed write or fsync stops the node (exit code 1,
never a signal) with a log line naming the error; a short write is
completed by the storage code's retry loop, and the node keeps serving.
Then the fault is switched off, whatever the node wrote but never synced
is cut from its WAL (a disk losing it), the node restarted, and every
acknowledged write must still be readable, with the data directory
opening cleanly."""
import os
import subprocess

import pytest

from harness import CONVERGE_WAIT_S, CORRAL_BIN, EXIT_WAIT_S, ROOT, wait_until

FAULT_LIB = os.environ.get("CORRAL_DISKFAULT") or os.path.join(
    ROOT, "build", "tests", "fault", "libdiskfault.so")

# mode: what the node's log must say when it stops (None: it must not stop).
FAULTS = {
    "fsync_eio": "input/output error",
    "write_enospc": "no space left on device",
    "write_eio": "input/output error",
    "write_short": None,
}

# PUTs tried after the fault is on (a bound, not a target).
WRITES_AFTER_FAULT = 120


def preload():
    """LD_PRELOAD for the shim. A sanitized build (make asan) needs its
    libasan loaded first, or ASan refuses to start: it goes in front."""
    try:
        out = subprocess.run(["ldd", CORRAL_BIN], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    first = [line.split("=>")[1].split()[0] for line in out.splitlines()
             if "libasan.so" in line and "=>" in line]
    return " ".join(first[:1] + [FAULT_LIB])


pytestmark = pytest.mark.skipif(not os.path.exists(FAULT_LIB),
                                reason=f"no fault shim at {FAULT_LIB}")

PRELOAD = preload() if os.path.exists(FAULT_LIB) else FAULT_LIB


class Fault:
    """The shim's control file for one node."""

    def __init__(self, node):
        self.path = node.log_path + ".fault"
        self.set("off")
        node.env = dict(os.environ, LD_PRELOAD=PRELOAD,
                        CORRAL_FAULT_DIR=os.path.realpath(node.data_dir),
                        CORRAL_FAULT_FILE=self.path)

    def set(self, mode):
        with open(self.path + ".new", "w") as f:
            f.write(mode + "\n")
        os.replace(self.path + ".new", self.path)  # read whole or not at all

    def drop_unsynced(self, data_dir):
        """Cuts every WAL segment back to its size at its last successful
        sync (the shim's .synced file; 0 when never synced), as a disk that
        lost what was never made durable would leave it (after a failed
        fsync the kernel may drop the dirty pages). Returns the bytes cut."""
        synced = {}
        try:
            with open(self.path + ".synced") as f:
                for line in f:
                    size, path = line.rstrip("\n").split(" ", 1)
                    synced[path] = int(size)
        except FileNotFoundError:
            pass
        cut = 0
        for name in os.listdir(data_dir):
            if name.startswith("wal-") and name.endswith(".log"):
                path = os.path.realpath(os.path.join(data_dir, name))
                keep, size = synced.get(path, 0), os.path.getsize(path)
                if size > keep:
                    os.truncate(path, keep)
                    cut += size - keep
        return cut

    def hits(self):
        try:
            return os.path.getsize(self.path + ".hits")
        except FileNotFoundError:
            return 0


class Writer:
    """PUTs of unique keys, each tried once; acked holds those that got 200."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.n = 0
        self.acked = {}
        self.failed = 0

    def put(self, nodes):
        """One PUT through the first running node of nodes (following 307s)."""
        key, value = f"{self.prefix}/{self.n:04d}", f"v{self.n}"
        self.n += 1
        live = [n for n in nodes if n.alive()]
        if not live:
            self.failed += 1
            return None
        r = live[self.n % len(live)].put(key, value, timeout=3.0)
        if r is not None and r.status == 200:
            self.acked[key] = value
        else:
            self.failed += 1
        return r


def read_value(node, key, stale=False):
    r = node.get(key, stale=stale, timeout=3.0)
    return r.json.get("value") if r is not None and r.status == 200 and r.json else None


def serving(node):
    r = node.request("GET", "/health", timeout=1.0) if node.alive() else None
    return r is not None and r.status == 200


def check_stopped(node, fault, mode, expect):
    """node met the fault and stopped on it, saying why, without a signal."""
    rc = node.wait_exit(timeout=EXIT_WAIT_S)
    out = node.output()
    assert fault.hits() > 0, f"{mode}: the fault was never met"
    assert rc is not None, f"{mode}: node {node.id} still runs after the fault:\n{out[-3000:]}"
    assert rc == 1, f"{mode}: exit code {rc} (negative: a signal):\n{out[-3000:]}"
    assert "Sanitizer" not in out
    assert expect in out.lower(), f"{mode}: the log does not say {expect!r}:\n{out[-3000:]}"


def restart_clean(node, fault):
    """Switches the fault off, drops what the node wrote but never synced,
    and restarts it: it must open its data directory (no refusal) and
    serve."""
    fault.set("off")
    if node.alive():
        assert node.terminate() == 0
    fault.drop_unsynced(node.data_dir)
    node.start()
    wait_until(f"node {node.id} to serve after the restart", lambda: serving(node), 15)
    out = node.output()
    assert "cannot use data dir" not in out and "Sanitizer" not in out, out[-3000:]


@pytest.mark.parametrize("mode", list(FAULTS))
def test_single_node_disk_fault(make_cluster, mode):
    c = make_cluster(size=1)
    node = c.node(1)
    fault = Fault(node)
    c.start()
    c.wait_leader()
    w = Writer("s")
    for _ in range(20):
        r = w.put([node])
        assert r is not None and r.status == 200, r
    fault.set(mode)
    before = len(w.acked)
    for _ in range(WRITES_AFTER_FAULT):
        if not node.alive():
            break
        w.put([node])
    if FAULTS[mode] is not None:
        # One voter: every PUT sent after the switch needs an fsync of its
        # own entry, which fails, so none of them may be acknowledged.
        assert len(w.acked) == before, \
            f"{len(w.acked) - before} PUTs acknowledged after {mode} was switched on"
    if FAULTS[mode] is None:
        assert fault.hits() > 0, f"{mode}: the fault was never met"
        assert node.alive(), node.output()[-3000:]
        assert w.failed == 0, f"{w.failed} writes failed under {mode}"
    else:
        check_stopped(node, fault, mode, FAULTS[mode])
    restart_clean(node, fault)
    c.wait_leader()
    for key, value in w.acked.items():
        assert read_value(node, key) == value, f"acknowledged {key} lost after {mode}"
    r = w.put([node])
    assert r is not None and r.status == 200, r


@pytest.mark.parametrize("role", ["follower", "leader"])
@pytest.mark.parametrize("mode", list(FAULTS))
def test_cluster_disk_fault(make_cluster, mode, role):
    c = make_cluster()
    faults = {n.id: Fault(n) for n in c.nodes}
    c.start()
    leader = c.wait_leader()
    victim = leader if role == "leader" else c.followers(leader)[0]
    fault = faults[victim.id]
    w = Writer("c")
    for _ in range(20):
        r = w.put([leader])
        assert r is not None and r.status == 200, r
    fault.set(mode)
    # Through every node in turn: each write also reaches the victim, as
    # the leader or as a follower receiving the entry.
    for _ in range(WRITES_AFTER_FAULT):
        w.put(c.nodes)
        if FAULTS[mode] is not None and not victim.alive() and len(w.acked) >= 60:
            break
    if FAULTS[mode] is None:
        assert fault.hits() > 0, f"{mode}: the fault was never met"
        assert victim.alive(), victim.output()[-3000:]
    else:
        check_stopped(victim, fault, mode, FAULTS[mode])
        # The other two carry on: a write after the stop is acknowledged.
        others = [n for n in c.nodes if n is not victim]
        new_leader = c.wait_leader(nodes=others)
        r = w.put([new_leader])
        assert r is not None and r.status == 200, r
        # Every acknowledged write is on the two that are left.
        for key, value in w.acked.items():
            assert read_value(new_leader, key) == value, \
                f"acknowledged {key} missing without node {victim.id}"
    restart_clean(victim, fault)
    leader = c.wait_leader(nodes=c.nodes)
    for key, value in w.acked.items():
        assert read_value(leader, key) == value, f"acknowledged {key} lost after {mode}"
    # The restarted node catches up and holds every acknowledged write.
    last = max(w.acked)
    wait_until(f"node {victim.id} caught up",
               lambda: read_value(victim, last, stale=True) == w.acked[last], CONVERGE_WAIT_S)
    for key, value in w.acked.items():
        assert read_value(victim, key, stale=True) == value, f"node {victim.id} lacks {key}"


@pytest.mark.parametrize("mode", [m for m in FAULTS if FAULTS[m] is not None])
def test_disk_fault_at_first_start(make_cluster, mode):
    """A fresh node on a failing disk exits 1 naming the error (it cannot
    write its meta file), and starts once the disk works."""
    c = make_cluster(size=1)
    node = c.node(1)
    fault = Fault(node)
    fault.set(mode)
    node.start()
    check_stopped(node, fault, mode, FAULTS[mode])
    assert "cannot use data dir" in node.output()
    restart_clean(node, fault)
    c.wait_leader()
    r = node.put("k", "v")
    assert r is not None and r.status == 200, r
