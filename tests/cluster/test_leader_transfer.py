"""Leadership transfer on real 3-node clusters (docs/operations.md, "Leader
health and transfer"; docs/api.md, POST /v1/leader/transfer).

- An operator moves leadership to a given node (here by numeric id;
  test_membership moves it by name), to the most caught-up one without `to`, through the
  API and through `corral leader transfer`; writes keep working; a
  follower redirects; refusals are 409 transfer_refused with a reason;
  bad arguments are 400; the counter counts it.
- A slow leader: the node that leads runs under the LD_PRELOAD shim
  (tests/fault/diskfault.c) with fsync_slow_ms=150 switched on while a
  client writes; with --leader-degraded-ms it hands leadership over
  within a bound and no acknowledged write is lost; with automatic
  transfer off (--leader-degraded-ms 0) it stays leader for as long,
  which is what shows the first check needs the feature."""
import os
import re
import time

import pytest

from harness import api, run_corral
from test_disk_faults import FAULT_LIB, Fault, Writer, read_value


def transfer(node, query="", follow=False, timeout=5.0):
    path = "/v1/leader/transfer" + (f"?{query}" if query else "")
    return api(node, "POST", path, follow=follow, timeout=timeout)


def error_of(r):
    return r.code if r is not None else None


def metric(node, name):
    r = node.request("GET", "/metrics", timeout=3.0)
    assert r is not None and r.status == 200, r
    text = r.body.decode() if isinstance(r.body, bytes) else r.body
    m = re.search(r"^" + re.escape(name) + r" (\d+)$", text, re.M)
    return int(m.group(1)) if m else None


def test_operator_transfer(make_cluster):
    c = make_cluster()
    c.start()
    leader = c.wait_leader()
    term = leader.status()["term"]
    target = c.followers(leader)[0]
    r = leader.put("before", "1")
    assert r is not None and r.status == 200, r

    r = transfer(leader, f"to={target.id}")
    assert r is not None and r.status == 200, r
    assert r.json["from"] == leader.id and r.json["to"] == target.id, r.json
    assert r.json["term"] > term, r.json
    assert c.wait_leader() is target
    r = target.put("after", "2")
    assert r is not None and r.status == 200, r
    assert read_value(target, "before") == "1"
    assert metric(leader, 'corral_leader_transfers_total{reason="operator"}') == 1
    assert metric(target, 'corral_leader_transfers_total{reason="operator"}') == 0

    # Refusals, on the leader: an unknown id, itself.
    r = transfer(target, "to=9")
    assert r is not None and r.status == 409 and error_of(r) == "transfer_refused", r
    assert r.json["reason"] == "not_voter", r.json
    r = transfer(target, f"to={target.id}")
    assert r is not None and r.status == 409 and r.json["reason"] == "self", r
    # Bad arguments: 400 on any node, nothing moves.
    other = c.followers(target)[0]
    for q in ("to=abc", "to=0", "to=", "x=1", "to=1&to=2"):
        for n in (target, other):
            r = transfer(n, q)
            assert r is not None and r.status == 400 and error_of(r) == "bad_request", (q, r)
    r = api(target, "GET", "/v1/leader/transfer")
    assert r is not None and r.status == 405, r
    assert c.wait_leader() is target

    # A follower redirects to the leader, same path and query.
    r = transfer(other, f"to={leader.id}")
    assert r is not None and r.status == 307, r
    assert r.headers["Location"] == f"{target.url}/v1/leader/transfer?to={leader.id}", r.headers
    r = transfer(other, f"to={leader.id}", follow=True)
    assert r is not None and r.status == 200 and r.json["to"] == leader.id, r
    assert c.wait_leader() is leader

    # No `to`: the most caught-up voter in contact, through the CLI.
    rc, out, err = run_corral(["leader", "transfer", "--endpoints", other.url])
    assert rc == 0, (rc, out, err)
    m = re.match(r"OK leader (\d+) -> (\d+) \(term (\d+)\)$", out.strip())
    assert m and int(m.group(1)) == leader.id and int(m.group(2)) != leader.id, out
    new = c.wait_leader()
    assert new.id == int(m.group(2))
    rc, out, err = run_corral(["leader", "transfer", str(new.id), "--endpoints", leader.url,
                               "--json"])
    assert rc == 1 and "transfer_refused" in err and '"reason":"self"' in out, (rc, out, err)
    rc, out, err = run_corral(["leader", "transfer", "No-Such!", "--endpoints", leader.url])
    assert rc == 2, (rc, out, err)
    r = new.put("last", "3")
    assert r is not None and r.status == 200, r
    for k, v in (("before", "1"), ("after", "2"), ("last", "3")):
        assert read_value(new, k) == v


# Half the 300 ms election timeout: slow enough to be over the 100 ms
# limit on every write, not so slow that followers time out on their own
# (the loop, blocked in the fsync, sends no heartbeat meanwhile).
SLOW_MS = 150
# No snapshot during the test: saving one takes several fsyncs in a row,
# which block the loop past the election timeout, so the followers elect
# another leader by themselves (measured: about 7 s after the fault went
# on with the harness's 64 entries, transfer off). That is not what is
# tested here.
FLAGS = ["--leader-max-fsync-ms", "100", "--snapshot-entries", "100000"]
# From switching the fault on until leadership must have moved: the
# 1000 ms bound, a slow batch, an election (about 1.1 s when measured);
# more than three times that for a loaded machine. The variant with
# automatic transfer off must keep its leader for as long.
MOVE_WITHIN_S = 4.0


@pytest.mark.skipif(not os.path.exists(FAULT_LIB), reason=f"no fault shim at {FAULT_LIB}")
@pytest.mark.parametrize("degraded_ms", ["1000", "0"])
def test_slow_leader_hands_over(make_cluster, degraded_ms):
    c = make_cluster()
    faults = {n.id: Fault(n) for n in c.nodes}
    for n in c.nodes:
        n.start(extra=FLAGS + ["--leader-degraded-ms", degraded_ms])
    leader = c.wait_leader()
    others = c.followers(leader)
    w = Writer("slow")
    for _ in range(20):
        r = w.put([leader])
        assert r is not None and r.status == 200, r
    faults[leader.id].set(f"fsync_slow_ms={SLOW_MS}")
    start = time.monotonic()
    moved_to = None
    # Bounded in count and time: each PUT takes a slow fsync or less.
    for _ in range(400):
        if time.monotonic() - start > MOVE_WITHIN_S:
            break
        w.put(c.nodes)
        view = c.leader_view(others)
        if view is not None and view is not leader:
            moved_to = view
            break
    assert faults[leader.id].hits() > 0, "the slow fsync was never met"
    out = leader.output()
    if degraded_ms == "0":
        assert moved_to is None, f"leadership moved to {moved_to} with automatic transfer off"
        assert "automatic transfer is off" in out, out[-3000:]
        assert metric(leader, "corral_leader_degraded") == 1
        faults[leader.id].set("off")
        return
    assert moved_to is not None, \
        f"leadership did not leave the slow node {leader.id} within {MOVE_WITHIN_S} s"
    assert re.search(r"leader health: degraded for \d+ ms: a WAL fsync took \d+ ms, over the "
                     r"100 ms limit; handing leadership to node " + str(moved_to.id)
                     + r" \(match \d+ of \d+, reason fsync\)", out), out[-3000:]
    assert metric(leader, 'corral_leader_transfers_total{reason="fsync"}') == 1
    assert metric(leader, "corral_leader_degraded") == 0  # no longer the leader
    # Writes go on through the new leader, the slow node still slow.
    for _ in range(10):
        r = w.put([moved_to])
        assert r is not None and r.status == 200, r
    faults[leader.id].set("off")
    for key, value in w.acked.items():
        assert read_value(moved_to, key) == value, f"acknowledged {key} lost"
    assert len(w.acked) >= 30
