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
import threading
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


def http(url, method="GET", body=None, timeout=HTTP_TIMEOUT_S, headers=None):
    """One request, redirects not followed. Returns a Response, or None when
    no HTTP answer came (refused, reset, timed out)."""
    data = body.encode() if isinstance(body, str) else body
    if data is None and method in ("PUT", "POST"):
        data = b""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
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
        self.env = None  # the process environment (None: the harness's own)
        self.headers = {}  # sent on every request (an Authorization header)

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
                                         stdout=log, stderr=subprocess.STDOUT, env=self.env)
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
    def request(self, method, path, body=None, timeout=HTTP_TIMEOUT_S, headers=None):
        return http(self.url + path, method, body, timeout,
                    self.headers if headers is None else headers)

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
        return follow_redirects(url, method, value, timeout, headers=self.headers) if follow \
            else http(url, method, value, timeout, self.headers)

    def __repr__(self):
        return f"<node {self.id} {self.http_addr} pid {self.proc.pid if self.proc else None}>"


def follow_redirects(url, method, body, timeout, hops=3, headers=None):
    """A request that follows up to `hops` 307s, sending the body (and the
    headers) again."""
    r = http(url, method, body, timeout, headers)
    for _ in range(hops):
        if r is None or r.status != 307:
            break
        r = http(r.headers["Location"], method, body, timeout, headers)
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


# ---- members, resources and partitions (docs/api.md) ----

def api(node, method, path, obj=None, follow=True, timeout=HTTP_TIMEOUT_S):
    """A JSON request to node (a Node or a base URL): obj is sent as JSON
    (a str or bytes as is); 307s are followed unless follow is False."""
    base = node.url if isinstance(node, Node) else node
    body = obj if obj is None or isinstance(obj, (str, bytes)) else json.dumps(obj)
    if follow:
        return follow_redirects(base + path, method, body, timeout)
    return http(base + path, method, body, timeout)


def base_url(url):
    """http://host:port of a URL."""
    p = urllib.parse.urlsplit(url)
    return f"{p.scheme}://{p.netloc}"


class Member:
    """A simulated member: a thread that registers the member with PUT and
    then POSTs /v1/members/{name}/heartbeat every `interval` seconds to the
    leader, as a real member's agent would, with copies and releases taking
    no time:

    - it follows 307s (and remembers where they led), and on no answer or
      a 503 tries the next coordinator;
    - it sends `index`, the assignment index of the view it holds, and
      keeps the view of every answer's `assignment` (a full one replaces
      it, the `unchanged` marker only moves its index);
    - it reports `in_sync` for each replica its view shows copying, and
      `released` for each primary its view shows releasing, on every
      heartbeat while the view still shows them (agent.h A7);
    - a 409 (dead or left) makes it register again with PUT (a rejoin);
      a 404 (deleted) is counted and nothing more.

    Every request is bounded by http_timeout; stop() joins the thread."""

    def __init__(self, cluster, name, addr=None, zone=None, weight=None, interval=0.25,
                 http_timeout=2.0, first=None, load=None):
        self.cluster = cluster
        self.name = name
        self.addr = addr or f"127.0.0.1:{7000 + sum(map(ord, name)) % 1000}"
        self.body = {"addr": self.addr}
        if zone is not None:
            self.body["zone"] = zone
        if weight is not None:
            self.body["weight"] = weight
        self.load = load        # sent as the heartbeat's load when not None
        self.interval = interval
        self.http_timeout = http_timeout
        self.lock = threading.Lock()
        self.target = first.url if first is not None else cluster.nodes[0].url
        self.id = None
        self.view = {}          # (resource, partition) -> the view's entry
        self.view_index = 0     # the assignment index of the view held
        self.lease_index = 0
        self.lease_ms = None
        self.counts = {}        # outcome -> how many heartbeats ended so
        self.unexpected = []    # answers no member should get (the last few)
        self.last_ok = None     # time.monotonic() of the last 200
        self.last_ok_sent = None  # ... and when that heartbeat was sent (at the latest)
        self._stop = threading.Event()
        self._thread = None

    def _count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    def _urls(self):
        return [n.url for n in self.cluster.nodes]

    def _rotate(self):
        urls = self._urls()
        i = urls.index(self.target) if self.target in urls else -1
        self.target = urls[(i + 1) % len(urls)]

    def _post(self, method, path, body):
        """method path at the target, following 307s (the target becomes
        where they lead); rotates the target on no answer or a 503."""
        r = http(self.target + path, method, body, self.http_timeout)
        for _ in range(3):
            if r is None or r.status != 307:
                break
            with self.lock:
                self._count("redirect")
                self.target = base_url(r.headers["Location"])
            r = http(r.headers["Location"], method, body, self.http_timeout)
        if r is None or r.status == 503:
            with self.lock:
                self._count("no_answer" if r is None else "unavailable")
                self._rotate()
        return r

    def register(self):
        """PUT /v1/members/{name} once (each coordinator at most once);
        the Response of the last try."""
        r = None
        for _ in range(len(self.cluster.nodes)):
            r = self._post("PUT", f"/v1/members/{self.name}", json.dumps(self.body))
            if r is not None and r.status == 200:
                with self.lock:
                    self._count("registered")
                    self.id = r.json["id"]
                break
        return r

    def reports(self):
        out = []
        for (res, part), e in self.view.items():
            if e["role"] == "replica" and e["state"] == "copying":
                out.append({"resource": res, "partition": part, "epoch": e["epoch"],
                            "state": "in_sync"})
            elif e["role"] == "primary" and e["state"] == "releasing":
                out.append({"resource": res, "partition": part, "epoch": e["epoch"],
                            "state": "released"})
        return out

    def beat(self):
        """One heartbeat; returns its Response (or None)."""
        with self.lock:
            body = {"index": self.view_index, "progress": self.reports()}
            if self.load is not None:
                body["load"] = self.load
        sent = time.monotonic()
        r = self._post("POST", f"/v1/members/{self.name}/heartbeat", json.dumps(body))
        if r is None or r.status in (307, 503):
            return r
        if r.status == 200 and isinstance(r.json, dict):
            with self.lock:
                self._count("ok")
                self.last_ok = time.monotonic()
                self.last_ok_sent = sent
                self.lease_ms = r.json.get("lease_ms")
                self.lease_index = r.json.get("index")
                a = r.json.get("assignment")
                if a is not None and a.get("unchanged"):
                    self.view_index = a["index"]
                elif a is not None:
                    self.view = {(e["resource"], e["partition"]): e for e in a["partitions"]}
                    self.view_index = a["index"]
                    self._count("view")
        elif r.status == 409:
            with self.lock:
                self._count("conflict")
            self.register()
        elif r.status == 404:
            with self.lock:
                self._count("not_found")
        else:
            with self.lock:
                self._count("unexpected")
                self.unexpected = (self.unexpected + [r])[-5:]
        return r

    def _run(self):
        nxt = time.monotonic()
        while not self._stop.is_set():
            self.beat()
            nxt += self.interval
            now = time.monotonic()
            if nxt < now:
                nxt = now
            self._stop.wait(nxt - now)

    def start(self, fresh=False):
        """Registers (when it has no id yet) and starts heartbeating; fresh:
        forgets the view first, as a restarted member process would."""
        assert self._thread is None or not self._thread.is_alive(), f"{self.name} already runs"
        if fresh:
            with self.lock:
                self.view, self.view_index = {}, 0
        if self.id is None:
            r = self.register()
            assert r is not None and r.status == 200, f"registering {self.name}: {r!r}"
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"member-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops heartbeating: returns once no heartbeat is in flight."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.http_timeout * 8 + 5)
            assert not self._thread.is_alive(), f"{self.name}'s heartbeater did not stop"

    def running(self):
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self):
        """(view_index, view copy, counts copy) taken at once."""
        with self.lock:
            return self.view_index, dict(self.view), dict(self.counts)

    def __repr__(self):
        return f"<member {self.name} id {self.id} -> {self.target} {self.counts}>"
