"""Elections, redirects, and what survives crashes, pauses, restarts and the
loss of a quorum, on a real 3-node cluster."""
import threading
import time

from harness import CONVERGE_WAIT_S, LEADER_WAIT_S, wait_until


def stale_value(node, key):
    r = node.get(key, stale=True, timeout=2.0)
    return r.json["value"] if r is not None and r.status == 200 else None


def test_election_one_leader_all_agree(cluster):
    leader = cluster.wait_leader()
    statuses = [n.status() for n in cluster.nodes]
    assert [s["role"] for s in statuses].count("leader") == 1, statuses
    assert {s["leader"]["id"] for s in statuses} == {leader.id}
    assert {s["leader"]["http"] for s in statuses} == {leader.http_addr}
    assert len({s["cluster_id"] for s in statuses}) == 1
    for n, s in zip(cluster.nodes, statuses):
        assert s["id"] == n.id and s["http_addr"] == n.http_addr
        assert s["cluster_addr"] == n.cluster_addr
        assert {p["id"] for p in s["peers"]} == {1, 2, 3} - {n.id}
    r = leader.request("GET", "/health")
    assert r.status == 200 and r.json == {"status": "ok", "id": leader.id}
    for n in cluster.nodes:
        r = wait_until("ready", lambda n=n: (x := n.request("GET", "/health/ready")) is not None
                       and x.status == 200 and x, LEADER_WAIT_S)
        assert r.json == {"ready": True}


def test_writes_via_leader_and_followers(cluster):
    leader = cluster.wait_leader()
    r = leader.put("cfg/leader", "L", follow=False)
    assert r.status == 200 and r.json["key"] == "cfg/leader" and r.json["version"] > 0, r
    for f in cluster.followers(leader):
        key = f"cfg/from-{f.id} x"  # a space: percent-encoded in the path and Location
        r = f.put(key, "v1", follow=False)
        assert r.status == 307 and r.code == "not_leader", r
        loc = r.headers["Location"]
        assert loc.startswith(f"http://{leader.http_addr}/v1/kv/cfg/from-{f.id}"), loc
        assert r.json["error"].get("leader") in (None, f"http://{leader.http_addr}"), r
        r = f.put(key, "v1")
        assert r.status == 200 and r.json["key"] == key, r
    # Linearizable reads: every node sees the latest write at once.
    for i in range(5):
        writer = cluster.nodes[i % 3]  # via followers too, following the 307
        v = writer.put("cfg/counter", f"value-{i}")
        assert v.status == 200, v
        for n in cluster.nodes:
            r = n.get("cfg/counter")
            assert r.status == 200 and r.json["value"] == f"value-{i}", (n, r)
            assert r.json["version"] == v.json["version"]


class Writer(threading.Thread):
    """Writes key w/0000.. in order to whichever node answers, recording
    each acknowledged write (200) with its version."""

    def __init__(self, cluster, total):
        super().__init__(daemon=True)
        self.cluster, self.total = cluster, total
        self.acked = {}
        self.errors = []
        self.stop = threading.Event()

    def run(self):
        i = 0
        while len(self.acked) < self.total and not self.stop.is_set() and i < 100 * self.total:
            key, value = f"w/{i:04d}", f"value-{i}"
            for n in self.cluster.nodes:
                if not n.alive():
                    continue
                r = n.put(key, value, timeout=3.0)
                if r is not None and r.status == 200:
                    self.acked[key] = (value, r.json["version"])
                    break
                if r is not None and r.status not in (503, 307):
                    self.errors.append((key, r))
            i += 1


def test_kill_leader_keeps_acknowledged_writes(cluster):
    leader = cluster.wait_leader()
    w = Writer(cluster, 200)
    w.start()
    wait_until("100 acknowledged writes", lambda: len(w.acked) >= 100, 60)
    leader.kill()
    w.join(timeout=120)
    w.stop.set()
    assert not w.is_alive() and len(w.acked) >= 200, len(w.acked)
    assert not w.errors, w.errors[:5]
    new = cluster.wait_leader(exclude=(leader,))
    assert new is not leader
    for key, (value, version) in w.acked.items():
        r = new.get(key)
        assert r.status == 200 and r.json["value"] == value, (key, r)
        assert r.json["version"] >= version
    # The old leader comes back as a follower and has everything too.
    leader.start()
    cluster.wait_leader(nodes=cluster.nodes)
    last = max(w.acked)
    wait_until("old leader caught up", lambda: stale_value(leader, last) == w.acked[last][0],
               CONVERGE_WAIT_S)


def test_restarted_follower_catches_up_from_snapshot(cluster):
    leader = cluster.wait_leader()
    follower = cluster.followers(leader)[0]
    assert follower.terminate() == 0
    for i in range(300):
        r = leader.put(f"s/{i:03d}", f"v{i}")
        assert r is not None and r.status == 200, (i, r)
    wait_until("a snapshot on the leader", leader.snapshots, 10)
    follower.start()
    wait_until("follower has the last key", lambda: stale_value(follower, "s/299") == "v299",
               CONVERGE_WAIT_S)
    for i in range(300):
        assert stale_value(follower, f"s/{i:03d}") == f"v{i}", i
    assert cluster.wait_leader(nodes=cluster.nodes) is not None


def test_full_cluster_restart_keeps_data(cluster):
    leader = cluster.wait_leader()
    versions = {}
    for i in range(100):  # past --snapshot-entries, so a snapshot is involved too
        r = leader.put(f"r/{i:03d}", f"v{i}")
        assert r.status == 200, r
        versions[f"r/{i:03d}"] = (f"v{i}", r.json["version"])
    for n in cluster.nodes:
        assert n.terminate() == 0, n.output()[-2000:]
    cluster.start()
    leader = cluster.wait_leader()
    for key, (value, version) in versions.items():
        r = leader.get(key)
        assert r.status == 200 and r.json["version"] == version, (key, r)
        assert r.json["value"] == value, (key, r)
    assert leader.put("r/after", "x").status == 200


def test_two_of_three_dead(cluster):
    leader = cluster.wait_leader()
    assert leader.put("q/before", "b").status == 200
    survivor = cluster.followers(leader)[0]
    # An acknowledged write is on a quorum, not necessarily applied on this
    # follower yet: wait for that before cutting it off.
    wait_until("the survivor applying q/before",
               lambda: stale_value(survivor, "q/before") == "b", LEADER_WAIT_S)
    dead = [n for n in cluster.nodes if n is not survivor]
    for n in dead:
        n.kill()

    def refused_write():
        r = survivor.put("q/during", "d", timeout=10.0)
        return r if r is not None and r.status == 503 else None
    r = wait_until("a 503 write", refused_write, LEADER_WAIT_S + 10, interval=0.2)
    assert r.code in ("no_leader", "timeout"), r
    assert r.headers.get("Retry-After") is not None, r
    assert stale_value(survivor, "q/before") == "b"

    def not_ready():
        x = survivor.request("GET", "/health/ready", timeout=2.0)
        return x if x is not None and x.status == 503 else None
    r = wait_until("/health/ready 503", not_ready, LEADER_WAIT_S)
    assert r.code == "not_ready", r
    assert survivor.request("GET", "/health").status == 200

    dead[0].start()
    cluster.wait_leader(nodes=[survivor, dead[0]])
    r = wait_until("a write with quorum back",
                   lambda: (x := survivor.put("q/after", "a")) is not None and x.status == 200,
                   LEADER_WAIT_S)
    assert survivor.get("q/after").json["value"] == "a"


def test_sigstop_leader(cluster):
    old = cluster.wait_leader()
    old_term = old.status()["term"]
    assert old.put("p/1", "before").status == 200
    old.pause()
    others = [n for n in cluster.nodes if n is not old]
    new = cluster.wait_leader(nodes=others)
    assert new is not old and new.status()["term"] > old_term
    r = new.put("p/1", "during")
    assert r.status == 200, r
    time.sleep(0.5)  # several election timeouts pass while old is stopped
    old.resume()

    def follows_new():
        s = old.status()
        return s is not None and s["role"] == "follower" and (s["leader"] or {}).get("id") == new.id
    wait_until("the old leader to follow the new one", follows_new, LEADER_WAIT_S)
    wait_until("the old leader caught up", lambda: stale_value(old, "p/1") == "during",
               CONVERGE_WAIT_S)
    r = old.get("p/1")
    assert r.status == 200 and r.json["value"] == "during", r
