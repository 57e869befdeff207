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
    seen = {}

    def ok():
        seen.clear()
        for name in want:
            c = group.coords[name]
            seen[name] = roles(c) if c.alive() else "not running"
        return all(v == want for v in seen.values())
    try:
        wait_until(f"roles {want}", ok, timeout)
    except BaseException:
        print("views:", seen)
        raise


def three(group):
    """a alone, then b and c by --join: three voters; returns a."""
    a = group.add("a").start()
    wait_roles(group, {"a": "voter"})
    group.add("b", join=[a]).start()
    group.add("c", join=[a]).start()
    wait_roles(group, {"a": "voter", "b": "voter", "c": "voter"})
    return a


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
        self.error = None
        self.stop_flag = threading.Event()

    def run(self):
        try:
            self.write()
        except Exception as e:  # noqa: BLE001 - shown by the test, not lost in a thread
            self.error = e

    def write(self):
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
        wait_until(f"{n} more acknowledged writes",
                   lambda: self.error is not None or len(self.acked) >= have + n, 20.0)
        assert self.error is None, f"the writer failed: {self.error!r}"

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
            assert r.json["name"] == name and r.json["removed"] is True, r.json
            assert isinstance(r.json["id"], int) and r.json["id"] > 0, r.json
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
        a = three(g)
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


def test_leave_on_stop(tmp_path):
    """SIGTERM with --leave-on-stop: a follower has the leader take it out,
    then stops; a leader takes itself out, hands over, and stops once
    its successor removed it. Both exit 0; writes go on; a coordinator
    without the flag stays in the roster when stopped."""
    g = Group(tmp_path)
    try:
        leave = ["--leave-on-stop"]
        a = g.add("a", extra=leave).start()
        wait_roles(g, {"a": "voter"})
        for name in ("b", "c"):
            g.add(name, join=[a], extra=leave).start()
        wait_roles(g, {"a": "voter", "b": "voter", "c": "voter"})
        g.add("d", join=[a]).start()
        wait_roles(g, {"a": "voter", "b": "voter", "c": "voter", "d": "learner"})
        lead = leader_of(g)
        follower = next(c for c in g.coords.values() if c is not lead and c.name != "d")
        assert follower.terminate() == 0
        assert "left the cluster" in follower.output(), follower.output()
        del g.coords[follower.name]
        # d, a learner, is promoted into the place the follower left.
        wait_roles(g, {n: "voter" for n in g.coords})
        assert lead.terminate() == 0
        assert "out of the roster; stopping" in lead.output(), lead.output()
        del g.coords[lead.name]
        rest = {n: "voter" for n in g.coords}
        wait_roles(g, rest)
        new = leader_of(g)
        r = new.put("after/leave", "ok", timeout=3.0)
        assert r is not None and r.status == 200, r
        # Without the flag: stopped, still listed.
        d = g.coords["d"]
        assert d.terminate() == 0
        time.sleep(0.5)
        other = next(c for c in g.live())
        assert "d" in roles(other), roles(other)
    finally:
        g.stop_all()


def test_leave_on_stop_of_one_of_two_voters(tmp_path):
    """A follower of a two-voter cluster leaves with --leave-on-stop: its
    removal needs its own vote, so it asks the leader while it still runs
    and stops once answered; the leader goes on alone and takes writes."""
    g = Group(tmp_path)
    try:
        a = g.add("a").start()
        wait_roles(g, {"a": "voter"})
        b = g.add("b", join=[a], extra=["--leave-on-stop"]).start()
        wait_roles(g, {"a": "voter", "b": "voter"})
        if leader_of(g) is b:
            r = http(b.url + "/v1/leader/transfer?to=a", "POST", None, 5.0)
            assert r is not None and r.status == 200, r
            wait_until("a leads", lambda: leader_of(g) is a, 10.0)
        assert b.terminate() == 0
        out = b.output()
        assert "while it still runs" in out and "left the cluster" in out, out
        del g.coords["b"]
        wait_roles(g, {"a": "voter"})
        r = a.put("after/two", "ok", timeout=3.0)
        assert r is not None and r.status == 200, r
    finally:
        g.stop_all()


def test_restart_elsewhere(tmp_path):
    """A coordinator stopped and started again with its data dir on other
    ports (no --join, no --peers): the leader learns the new addresses
    from its handshake and puts them in the roster; no new id, no
    duplicate; it catches up on what it missed."""
    g = Group(tmp_path)
    try:
        a = three(g)
        c = g.coords["c"]
        c_id = next(k["id"] for k in roster(c)["coordinators"] if k["name"] == "c")
        assert c.terminate() == 0
        lead = leader_of(g)
        for i in range(20):
            r = lead.put(f"missed/{i}", "x", timeout=3.0)
            assert r is not None and r.status == 200, r
        moved = Coord(g, "c", *free_ports(2), tmp_path)
        moved.data_dir = c.data_dir
        g.coords["c"] = moved
        moved.start()

        def moved_in_roster():
            d = roster(lead)
            k = [x for x in d["coordinators"] if x["name"] == "c"] if d else []
            return (len(k) == 1 and k[0]["cluster_addr"] == moved.cluster_addr
                    and k[0]["http_addr"] == moved.http_addr and k[0]["id"] == c_id
                    and k[0]["role"] == "voter")
        wait_until("c's new addresses in the roster", moved_in_roster, 20.0)
        assert len(roster(lead)["coordinators"]) == 3
        wait_until("c caught up", lambda: (list_all(moved, "missed/") or {}).keys()
                   == {f"missed/{i}" for i in range(20)}, 20.0)
        # And it still takes part: the two others alone can lose one.
        b = g.coords["b"]
        if leader_of(g) is b:
            a, b = b, a
        b.kill()
        r = leader_of(g).put("after/move", "ok", timeout=5.0)
        assert r is not None and r.status == 200, r
    finally:
        g.stop_all()


def test_force_new_cluster(tmp_path):
    """Quorum lost for good: 2 of 3 coordinators destroyed. The survivor,
    stopped and started once with --force-new-cluster, is a cluster of
    one with every acknowledged write, and grows again by --join. The
    flag is refused with --peers, with --join, and on an empty data dir."""
    g = Group(tmp_path)
    try:
        a = three(g)
        lead = leader_of(g)
        for i in range(30):
            r = lead.put(f"keep/{i}", f"v{i}", timeout=3.0)
            assert r is not None and r.status == 200, r
        survivor = next(c for c in g.coords.values() if c is not lead)
        # Wait until the survivor has them (a follower may lag by a beat).
        wait_until("survivor has every write",
                   lambda: len(list_all(survivor, "keep/") or {}) == 30, 10.0)
        for c in list(g.coords.values()):
            c.kill()
        for name in list(g.coords):
            if name != survivor.name:
                del g.coords[name]
        survivor.join = None  # it restarts from its data dir
        survivor.extra = ["--force-new-cluster"]
        survivor.start()
        wait_roles(g, {survivor.name: "voter"})
        assert "is now the only voter" in survivor.output(), survivor.output()
        got = list_all(survivor, "keep/")
        assert got == {f"keep/{i}": f"v{i}" for i in range(30)}, got
        r = survivor.put("after/force", "ok", timeout=3.0)
        assert r is not None and r.status == 200, r
        # Once is enough: restarted without the flag, it stays a cluster of one.
        survivor.terminate()
        survivor.extra = []
        survivor.start()
        wait_roles(g, {survivor.name: "voter"})
        g.add("d", join=[survivor]).start()
        wait_roles(g, {survivor.name: "voter", "d": "voter"})
        # Refusals (exit 2, a message, nothing started).
        for what in ("--peers", "--join"):
            bad = Coord(g, survivor.name, *free_ports(2), tmp_path)
            arg = f"{survivor.name}={bad.cluster_addr}" if what == "--peers" else "127.0.0.1:1"
            bad.extra = ["--force-new-cluster", what, arg]
            bad.data_dir = survivor.data_dir
            bad.start()
            assert bad.wait_exit(timeout=10) == 2, what
            assert "--force-new-cluster needs" in bad.output(), bad.output()
        empty = Coord(g, "z", *free_ports(2), tmp_path, extra=["--force-new-cluster"])
        empty.start()
        assert empty.wait_exit(timeout=10) == 2
        assert not os.path.exists(empty.data_dir)
    finally:
        g.stop_all()


def test_bad_membership_flags(tmp_path):
    """Bad membership flags exit 2 with a message and write nothing."""
    import subprocess
    d = str(tmp_path / "d")
    cases = [
        (["--name", "Bad_Name!"], "--name"),
        (["--name", "x" * 65], "--name"),
        (["--cluster-name", "a b"], "--cluster-name"),
        (["--voters", "4"], "--voters: '4' is not 1, 3, 5 or 7"),
        (["--voters", "0"], "--voters"),
        (["--join", "127.0.0.1:1", "--peers", "127.0.0.1:2"], "--join and --peers"),
        (["--peers", "a=127.0.0.1:2,127.0.0.1:3"], "every entry as NAME=HOST:PORT or none"),
        (["--peers", "a=127.0.0.1:2,a=127.0.0.1:3"], "the name 'a' appears twice"),
        (["--peers", "A=127.0.0.1:2"], "the name before '='"),
        (["--peers", "a=127.0.0.1:2,b=127.0.0.1:3", "--name", "c"],
         "--name c is not one of the names in --peers"),
        (["--peers", "127.0.0.1:2,127.0.0.1:3", "--id", "1", "--name", "zz"],
         "the names are node1..node2"),
        (["--leave-on-stop=maybe"], "--leave-on-stop: 'maybe' is not true or false"),
    ]
    for args, want in cases:
        p = subprocess.run([CORRAL_BIN, "server", "run", "--data-dir", d, *args],
                           capture_output=True, stdin=subprocess.DEVNULL, timeout=20)
        out = (p.stdout + p.stderr).decode(errors="replace")
        assert p.returncode == 2, (args, out)
        assert want in out, (args, out)
        assert not os.path.exists(d), args
