"""Coordinators that join and leave at run time (docs/operations.md,
"Membership"; docs/api.md, /v1/coordinators), on real processes.

- Grow a single coordinator to 3 and then 5 by `--join` while a client
  writes, and shrink back to 3 and to 2 by removing coordinators (the
  leader among them: it hands leadership over first); no acknowledged
  write is lost, and every coordinator ends with every write.
- Replace a coordinator killed with -9 by a new one on other ports.
- Refusals: a node of another --cluster-name; a voter's name joining
  again with an empty data dir (the message names the command that
  removes it); removing the last voter; neither refused joiner leaves
  a data dir behind."""
import os
import threading
import time

from harness import (CORRAL_BIN, ELECTION_TIMEOUT_MS, HEARTBEAT_MS, Node, free_ports, http,
                     wait_until)

JOIN_WAIT_S = 30.0


class Coord(Node):
    """A named coordinator: a cluster of one, or one that joins."""

    def __init__(self, cluster, name, cluster_port, http_port, tmp_path, join=None, extra=()):
        super().__init__(cluster, 0, cluster_port, http_port, str(tmp_path / name),
                         str(tmp_path / f"{name}.log"))
        self.name = name
        self.join = join
        self.extra = list(extra)

    def argv(self, peers=None, extra=()):
        a = [CORRAL_BIN, "server", "run", "--name", self.name, "--data-dir", self.data_dir,
             "--cluster-addr", self.cluster_addr, "--http-addr", self.http_addr,
             "--election-timeout-ms", str(ELECTION_TIMEOUT_MS), "--heartbeat-ms",
             str(HEARTBEAT_MS), *self.extra, *extra]
        if self.join:
            a += ["--join", ",".join(j.http_addr for j in self.join)]
        return a


class Group:
    """Named coordinators started by hand (the harness's Cluster is for a
    fixed --peers list)."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.started_pids = []
        self.coords = {}

    def add(self, name, join=None, extra=()):
        cp, hp = free_ports(2)
        c = Coord(self, name, cp, hp, self.tmp_path, join=join, extra=extra)
        self.coords[name] = c
        return c

    def live(self):
        # A copy: the writer thread calls this while the test adds nodes.
        return [c for c in list(self.coords.values()) if c.alive()]

    def stop_all(self):
        for c in self.coords.values():
            if c.alive():
                c.kill()


def roster(node):
    r = http(node.url + "/v1/coordinators", timeout=3.0)
    return r.json if r is not None and r.status == 200 else None


def roles(node):
    d = roster(node)
    return {c["name"]: c["role"] for c in d["coordinators"]} if d else None


def wait_roles(group, want, timeout=JOIN_WAIT_S):
    """Until every live coordinator in want lists exactly want's roles."""
    def ok():
        for name in want:
            c = group.coords[name]
            if not c.alive() or roles(c) != want:
                return False
        return True
    wait_until(f"roles {want}", ok, timeout)


def leader_of(group):
    for c in group.live():
        d = roster(c)
        if d and d.get("leader"):
            return group.coords.get(d["leader"])
    return None


class Writer(threading.Thread):
    """Writes unique keys through the live coordinators until stopped
    (bounded: at most 5000 writes, 120 s); keeps what was acknowledged."""

    def __init__(self, group):
        super().__init__(daemon=True)
        self.group = group
        self.acked = {}
        self.stop_flag = threading.Event()

    def run(self):
        t0 = time.monotonic()
        for i in range(5000):
            if self.stop_flag.is_set() or time.monotonic() - t0 > 120:
                break
            live = self.group.live()
            if not live:
                time.sleep(0.05)
                continue
            key, value = f"w/{i:05d}", f"v{i}"
            r = live[i % len(live)].put(key, value, timeout=3.0)
            if r is not None and r.status == 200:
                self.acked[key] = value
            time.sleep(0.005)

    def more(self, n=20):
        """Waits until n more writes were acknowledged: writes go on."""
        have = len(self.acked)
        wait_until(f"{n} more acknowledged writes", lambda: len(self.acked) >= have + n, 20.0)

    def stop(self):
        self.stop_flag.set()
        self.join(timeout=10)


def list_all(node, prefix):
    """Every key under prefix on node (stale reads, paged), or None."""
    got, after = {}, None
    for _ in range(100):
        q = f"prefix={prefix}&limit=1000&stale=1" + (f"&after={after}" if after else "")
        r = node.request("GET", "/v1/kv/?" + q, timeout=5.0)
        if r is None or r.status != 200:
            return None
        for it in r.json["items"]:
            got[it["key"]] = it.get("value")
        if not r.json.get("more"):
            return got
        after = r.json["items"][-1]["key"]
    return None


def check_writes(nodes, acked):
    assert len(acked) >= 100, f"too few writes acknowledged: {len(acked)}"
    for c in nodes:
        def has_all():
            got = list_all(c, "w/")
            return got is not None and all(got.get(k) == v for k, v in acked.items())
        wait_until(f"{c.name} has all {len(acked)} acknowledged writes", has_all, 20.0)


def remove(group, name):
    lead = leader_of(group)
    r = http(lead.url + f"/v1/coordinators/{name}", method="DELETE", timeout=5.0)
    return r


def test_grow_to_five_and_back(tmp_path):
    g = Group(tmp_path)
    try:
        five_flag = ["--voters", "5"]  # every node: the leader's flag counts
        a = g.add("a", extra=five_flag).start()
        wait_roles(g, {"a": "voter"})
        w = Writer(g)
        w.start()
        for name in ("b", "c"):
            g.add(name, join=[a], extra=five_flag).start()
        wait_roles(g, {"a": "voter", "b": "voter", "c": "voter"})
        w.more()
        for name in ("d", "e"):
            g.add(name, join=[g.coords["b"]], extra=five_flag).start()
        five = {n: "voter" for n in "abcde"}
        wait_roles(g, five)
        w.more()
        # A sixth stays a learner: --voters 5.
        g.add("f", join=[a], extra=five_flag).start()
        wait_roles(g, {**five, "f": "learner"})
        # Back: f, e, d removed one at a time; a learner is promoted in
        # no case (there are 5 - 1 voters < 5 but no learner left).
        for name, gone in (("f", "f"), ("e", "e"), ("d", "d")):
            r = remove(g, name)
            assert r is not None and r.status == 200, r
            assert r.json == {"name": name, "removed": True}
            g.coords[gone].kill()
            del g.coords[gone]
            want = {n: "voter" for n in g.coords}
            wait_roles(g, want)
            w.more()
        # The leader itself: it hands leadership over, then is removed.
        lead = leader_of(g)
        r = remove(g, lead.name)
        assert r is not None and r.status == 200, r
        left = {n: "voter" for n in g.coords if n != lead.name}
        wait_roles(g, left)
        lead.kill()
        del g.coords[lead.name]
        w.more()
        w.stop()
        check_writes(g.live(), w.acked)
        # The last voters: 2 left; removing one of 2 leaves 1 (allowed),
        # but not the last.
        names = sorted(g.coords)
        r = remove(g, names[0])
        assert r is not None and r.status == 200, r
        wait_roles(g, {names[1]: "voter"})
        r = remove(g, names[1])
        assert r is not None and r.status == 409, r
        assert "only voter" in r.json["error"]["message"]
    finally:
        g.stop_all()


def test_replace_and_refusals(tmp_path):
    g = Group(tmp_path)
    try:
        a = g.add("a").start()
        wait_roles(g, {"a": "voter"})
        g.add("b", join=[a]).start()
        g.add("c", join=[a]).start()
        wait_roles(g, {"a": "voter", "b": "voter", "c": "voter"})
        # Another cluster's node is refused and writes nothing.
        x = g.add("x", join=[a], extra=["--cluster-name", "other"])
        x.start()
        assert x.wait_exit(timeout=20) == 1
        assert "named 'corral'" in x.output(), x.output()
        assert not os.path.exists(x.data_dir)
        del g.coords["x"]
        # c is lost with its disk: a new process under the same name is
        # refused, with the command to run first.
        c = g.coords["c"]
        c.kill()
        again = Coord(g, "c", *free_ports(2), tmp_path / "fresh", join=[a])
        os.makedirs(tmp_path / "fresh", exist_ok=True)
        again.start()
        assert again.wait_exit(timeout=20) == 1
        assert "corral coordinator remove c" in again.output(), again.output()
        assert not os.path.exists(again.data_dir)
        # Replace it: remove c, add d on other ports.
        r = remove(g, "c")
        assert r is not None and r.status == 200, r
        del g.coords["c"]
        g.add("d", join=[g.coords["b"]]).start()
        wait_roles(g, {"a": "voter", "b": "voter", "d": "voter"})
        # Leadership moves by name.
        lead = leader_of(g)
        to = "d" if lead.name != "d" else "a"
        r = http(lead.url + f"/v1/leader/transfer?to={to}", method="POST", timeout=5.0)
        assert r is not None and r.status == 200, r
        wait_until(f"{to} leads", lambda: (leader_of(g) or lead).name == to, 10.0)
        # The cluster works and d has the data.
        lead = leader_of(g)
        r = lead.put("after/replace", "ok", timeout=3.0)
        assert r is not None and r.status == 200, r
        d = g.coords["d"]
        wait_until("d reads it", lambda: (d.get("after/replace", stale=True) or None) is not None
                   and d.get("after/replace", stale=True).status == 200, 10.0)
    finally:
        g.stop_all()
