"""Cluster test harness: real `corral server run` processes on 127.0.0.1,
ports chosen at run time, data directories under tmp_path, faults injected
with signals and by editing files, and HTTP through urllib without
following redirects (so 307s can be checked). Every wait is bounded, and
teardown kills only the processes this harness started.

CORRAL_BIN names the binary (default: build/src/cli/corral in the tree)."""
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORRAL_BIN = os.environ.get("CORRAL_BIN") or os.path.join(ROOT, "build", "src", "cli", "corral")

# Timing flags every node gets; the waits below are multiples of them.
ELECTION_TIMEOUT_MS = 300
HEARTBEAT_MS = 50
SNAPSHOT_ENTRIES = 64
# Upper bounds on waits: an election takes a few timeouts, catching up
# after a snapshot a few seconds on a loaded machine.
LEADER_WAIT_S = 15.0
CONVERGE_WAIT_S = 30.0
EXIT_WAIT_S = 10.0
HTTP_TIMEOUT_S = 10.0  # above the server's 5 s request timeout
# No single test may run longer than this (SIGALRM; pytest-timeout is not
# a dependency).
TEST_TIMEOUT_S = 180


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (bind port 0, all held at once
    so that none repeats, then released for the servers to take)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError carrying the 3xx


OPENER = urllib.request.build_opener(NoRedirect)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body
        try:
            self.json = json.loads(body) if body else None
        except ValueError:
            self.json = None

    @property
    def code(self):
        """error.code of an error answer, else None."""
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"].get("code")
        return None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


def http(url, method="GET", body=None, timeout=HTTP_TIMEOUT_S):
    """One request, redirects not followed. Returns a Response, or None when
    no HTTP answer came (refused, reset, timed out)."""
    data = body.encode() if isinstance(body, str) else body
    if data is None and method in ("PUT", "POST"):
        data = b""
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with OPENER.open(req, timeout=timeout) as r:
            return Response(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return Response(e.code, e.headers, e.read())
    except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
        return None


def kv_path(key, query=None):
    path = "/v1/kv/" + urllib.parse.quote(key, safe="/")
    return path + ("?" + urllib.parse.urlencode(query) if query else "")


def tree_digest(path):
    """{relative name: sha256} of every file under path."""
    out = {}
    for d, _, files in os.walk(path):
        for f in files:
            full = os.path.join(d, f)
            with open(full, "rb") as fh:
                out[os.path.relpath(full, path)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def wait_until(what, fn, timeout, interval=0.05):
    """Polls fn until it returns something truthy; fails the test after
    timeout seconds, saying what it waited for and fn's last result."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


class Node:
    def __init__(self, cluster, node_id, cluster_port, http_port, data_dir, log_path):
        self.cluster = cluster
        self.id = node_id
        self.cluster_addr = f"127.0.0.1:{cluster_port}"
        self.http_addr = f"127.0.0.1:{http_port}"
        self.url = f"http://{self.http_addr}"
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc = None
        self.log_offset = 0
        self.stopped = False  # SIGSTOPped

    def argv(self, peers=None, extra=()):
        return [CORRAL_BIN, "server", "run", "--id", str(self.id), "--data-dir", self.data_dir,
                "--cluster-addr", self.cluster_addr, "--http-addr", self.http_addr,
                "--peers", peers or self.cluster.peers,
                "--election-timeout-ms", str(ELECTION_TIMEOUT_MS),
                "--heartbeat-ms", str(HEARTBEAT_MS),
                "--snapshot-entries", str(SNAPSHOT_ENTRIES), *extra]

    def start(self, peers=None, extra=()):
        assert not self.alive(), f"node {self.id} is already running"
        with open(self.log_path, "ab") as log:
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(self.argv(peers, extra), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT)
        self.cluster.started_pids.append(self.proc.pid)
        self.stopped = False
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        assert self.alive(), f"node {self.id} is not running"
        os.kill(self.proc.pid, sig)

    def kill(self):
        """kill -9 and reap."""
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=EXIT_WAIT_S)
        self.stopped = False

    def terminate(self):
        """SIGTERM and wait (bounded) for the exit; returns the exit code."""
        if self.stopped:
            self.resume()
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"node {self.id} did not exit within {EXIT_WAIT_S} s of SIGTERM")

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.stopped = False

    def restart(self, **kw):
        if self.alive():
            self.kill()
        return self.start(**kw)

    def wait_exit(self, timeout=EXIT_WAIT_S):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self):
        """What the node printed since its last start."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_offset)
            return f.read().decode(errors="replace")

    def wal_segments(self):
        return sorted(f for f in os.listdir(self.data_dir)
                      if f.startswith("wal-") and f.endswith(".log"))

    def snapshots(self):
        return sorted(f for f in os.listdir(self.data_dir)
                      if f.startswith("snap-") and f.endswith(".snap"))

    # HTTP against this node.
    def request(self, method, path, body=None, timeout=HTTP_TIMEOUT_S):
        return http(self.url + path, method, body, timeout)

    def status(self, timeout=2.0):
        r = self.request("GET", "/v1/status", timeout=timeout)
        return r.json if r is not None and r.status == 200 and isinstance(r.json, dict) else None

    def get(self, key, stale=False, timeout=HTTP_TIMEOUT_S):
        return self.request("GET", kv_path(key, {"stale": "1"} if stale else None),
                            timeout=timeout)

    def put(self, key, value, cas=None, follow=True, timeout=HTTP_TIMEOUT_S):
        return self.write("PUT", key, value, cas, follow, timeout)

    def delete(self, key, cas=None, follow=True, timeout=HTTP_TIMEOUT_S):
        return self.write("DELETE", key, None, cas, follow, timeout)

    def write(self, method, key, value, cas, follow, timeout):
        url = self.url + kv_path(key, {"cas": str(cas)} if cas is not None else None)
        return follow_redirects(url, method, value, timeout) if follow else \
            http(url, method, value, timeout)

    def __repr__(self):
        return f"<node {self.id} {self.http_addr} pid {self.proc.pid if self.proc else None}>"


def follow_redirects(url, method, body, timeout, hops=3):
    """A request that follows up to `hops` 307s, sending the body again."""
    r = http(url, method, body, timeout)
    for _ in range(hops):
        if r is None or r.status != 307:
            break
        r = http(r.headers["Location"], method, body, timeout)
    return r


class Cluster:
    def __init__(self, tmp_path, size=3):
        self.tmp_path = tmp_path
        self.started_pids = []
        ports = free_ports(2 * size)
        self.nodes = []
        for i in range(size):
            data_dir = str(tmp_path / f"node{i + 1}")
            log = str(tmp_path / f"node{i + 1}.log")
            self.nodes.append(Node(self, i + 1, ports[2 * i], ports[2 * i + 1], data_dir, log))
        self.peers = ",".join(n.cluster_addr for n in self.nodes)

    def node(self, node_id):
        return self.nodes[node_id - 1]

    def start(self):
        for n in self.nodes:
            n.start()
        return self

    def running(self):
        return [n for n in self.nodes if n.alive() and not n.stopped]

    def leader_view(self, nodes):
        """The leader every node in nodes names, with exactly one of them in
        role leader at the highest term, or None."""
        statuses = [n.status() for n in nodes]
        if any(s is None for s in statuses):
            return None
        leaders = {(s.get("leader") or {}).get("id") for s in statuses}
        if len(leaders) != 1 or None in leaders:
            return None
        lid = leaders.pop()
        term = max(s["term"] for s in statuses)
        in_role = [s for s in statuses if s["role"] == "leader" and s["term"] == term]
        if len(in_role) != 1 or in_role[0]["id"] != lid:
            return None
        return self.node(lid)

    def wait_leader(self, nodes=None, exclude=(), timeout=LEADER_WAIT_S):
        """Waits until the given (default: running) nodes agree on one leader
        that is not in exclude; returns its Node."""
        def probe():
            view = self.leader_view(nodes if nodes is not None else self.running())
            return view if view is not None and view not in exclude else None
        return wait_until("an agreed leader", probe, timeout)

    def followers(self, leader):
        return [n for n in self.running() if n is not leader]

    def stop_all(self):
        """Teardown: SIGCONT then SIGKILL every process this harness started
        that still runs; nothing else is signalled."""
        for n in self.nodes:
            if n.alive():
                try:
                    os.kill(n.proc.pid, signal.SIGCONT)
                    os.kill(n.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                n.proc.wait(timeout=EXIT_WAIT_S)

    def logs(self, tail_bytes=4000):
        out = []
        for n in self.nodes:
            if os.path.exists(n.log_path):
                with open(n.log_path, "rb") as f:
                    data = f.read()[-tail_bytes:].decode(errors="replace")
                out.append(f"--- node {n.id} ({n.log_path}) ---\n{data}")
        return "\n".join(out)


def run_corral(args, stdin=None, timeout=60):
    """Runs the corral command; returns (exit code, stdout, stderr)."""
    p = subprocess.run([CORRAL_BIN, *args], input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
