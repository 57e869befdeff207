"""Partition ownership end to end: 3 coordinators (`corral server run`) and
5 workers, each a `corral agent` whose hooks append what they do, with a
CLOCK_MONOTONIC timestamp, to one shared log. From the merged log the test
checks what a user of a serious coordinator needs: balanced maps, a new
primary for every partition of a killed worker (epoch + 1), no two workers
acting as primary of one partition at any moment, a paused worker that
stops counting as primary when its lease ends (its --lease-file), a drain that moves
everything with only the hand-offs' gaps, a leader killed during a
rebalance, and a rejoin under the same name.

A worker acts as primary of (partition, epoch) from the start of its
acquire hook until the end of its release hook; a worker killed with -9
stops acting at the kill; a worker frozen with SIGSTOP cannot act past the
end of its lease, which its agent's --lease-file holds (read once the
process is stopped), so its acting is cut there (the application's own
fencing is the epoch, partitions.md). own_harness.intervals says which
instant of each hook counts."""
import json
import sys
import time

import pytest

from harness import http, wait_until
from own_harness import Workers, get, intervals, leader, resource_map, settled

P = 64
R = 2
WORKERS = 5

def check_no_overlap(workers):
    ivs = intervals(workers.records(), workers.faults, time.monotonic())
    for p, lst in ivs.items():
        lst.sort()
        for a, b in zip(lst, lst[1:]):
            assert a[1] <= b[0] or a[2] == b[2], (
                f"partition {p}: {a[2]} (epoch {a[3]}) acted until {a[1]:.3f} and "
                f"{b[2]} (epoch {b[3]}) from {b[0]:.3f}: two primaries at once")
    # Epochs acted on grow per partition (I4).
    for p, lst in ivs.items():
        epochs = [iv[3] for iv in sorted(lst)]
        assert epochs == sorted(epochs), f"partition {p}: epochs went back: {epochs}"
    return ivs


def check_balanced(m, members):
    prim = {w: 0 for w in members}
    reps = {w: 0 for w in members}
    for row in m:
        names = [x["member"] for x in row["replicas"]]
        assert len(set(names)) == len(names), f"partition {row['partition']}: {names}"
        prim[row["primary"]] += 1
        for x in names:
            reps[x] += 1
    lo, hi = P // len(members), -(-P // len(members))
    assert all(lo <= v <= hi for v in prim.values()), f"primaries unbalanced: {prim}"
    lo, hi = P * R // len(members), -(-P * R // len(members))
    assert all(lo <= v <= hi for v in reps.values()), f"replicas unbalanced: {reps}"


@pytest.fixture
def world(make_cluster, tmp_path, request):
    c = make_cluster(3).start()
    c.wait_leader()
    w = Workers(tmp_path, c)
    yield c, w
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        print(w.agent_logs(), file=sys.stderr)
    w.close()


def start_world(c, w):
    names = [f"w{i}" for i in range(WORKERS)]
    for n in names:
        w.start(n)
    lead = leader(c)
    wait_until("5 active workers", lambda: sum(
        m["status"] == "active" for m in get(lead, "/v1/members")["members"]) == WORKERS
        or None, 20)
    r = http(leader(c).url + "/v1/resources/orders", "PUT",
             json.dumps({"partitions": P, "replicas": R}).encode())
    assert r.status == 200, r.body
    m = wait_until("the map placed and acquired", lambda: settled(c, w), 30)
    check_balanced(m, names)
    return names


def test_failover_pause_drain_rejoin(world):
    c, w = world
    names = start_world(c, w)
    check_no_overlap(w)

    # kill -9 a worker: its primaries go to in-sync replicas with epoch + 1.
    before = {row["partition"]: row for row in resource_map(c)}
    w.kill("w0")
    t_kill = time.monotonic()
    m = wait_until("w0's partitions served elsewhere",
                   lambda: settled(c, w, avoid=("w0",)), 30)
    for row in m:
        if before[row["partition"]]["primary"] == "w0":
            assert row["epoch"] > before[row["partition"]]["epoch"]
    gaps = [r["t"] - t_kill for r in w.records()
            if r["ev"] == "acquire" and r["t"] > t_kill
            and before[r["p"]]["primary"] == "w0"]
    assert gaps, "no acquire after the kill"
    print(f"failover: {len(gaps)} acquires, last at {max(gaps):.3f} s after the kill")
    check_no_overlap(w)
    status = {m["name"]: m["status"] for m in get(leader(c), "/v1/members")["members"]}
    assert status["w0"] == "dead", status

    # Rejoin under the same name: same id, no duplicate, work comes back.
    ids = {m["name"]: m["id"] for m in get(leader(c), "/v1/members")["members"]}
    w.start("w0")
    m = wait_until("w0 back and balanced", lambda: (
        lambda mm: mm if mm and sum(row["primary"] == "w0" for row in mm) >= P // WORKERS
        else None)(settled(c, w)), 60)
    members = get(leader(c), "/v1/members")["members"]
    assert sorted(x["name"] for x in members) == sorted(names)
    assert {x["name"]: x["id"] for x in members}["w0"] == ids["w0"]
    check_balanced(m, names)
    check_no_overlap(w)

    # SIGSTOP a worker for 3 s: its lease ends, its primaries move, no
    # overlap; after SIGCONT it releases with lease_lost and rejoins.
    held = {row["partition"] for row in resource_map(c) if row["primary"] == "w1"}
    w.stop("w1")
    time.sleep(3.0)
    w.cont("w1")
    t_cont = time.monotonic()
    check_no_overlap(w)
    lost = wait_until("w1's lease_lost releases", lambda: (
        lambda s: s if s >= held else None)({
            r["p"] for r in w.records()
            if r["w"] == "w1" and r["ev"] == "release" and r["reason"] == "lease_lost"
            and r["t"] >= t_cont - 0.1}), 20)
    assert lost >= held
    wait_until("settled after the pause", lambda: settled(c, w), 60)
    check_no_overlap(w)

    # Drain a worker: everything moves off it; the gap per partition is the
    # hand-off (release end to acquire start), never a lease wait.
    prim_w2 = {row["partition"] for row in resource_map(c) if row["primary"] == "w2"}
    t_drain = time.monotonic()
    r = http(leader(c).url + "/v1/members/w2/drain", "POST", b"")
    assert r.status == 200, r.body
    wait_until("w2 drained", lambda: (
        lambda mm: mm if mm and all(x["member"] != "w2" for row in mm for x in row["replicas"])
        else None)(settled(c, w, avoid=("w2",))), 90)
    ivs = check_no_overlap(w)
    handoff = []
    for p in prim_w2:
        lst = sorted(ivs[p])
        for a, b in zip(lst, lst[1:]):
            if a[2] == "w2" and a[1] >= t_drain:
                handoff.append(b[0] - a[1])
    assert handoff, "no hand-off seen"
    print(f"drain: {len(handoff)} hand-offs, gap max {max(handoff):.3f} s")
    # A hand-off, not a lease wait: w2 kept its lease (it heartbeats all
    # along) and released each partition because it was asked to. (The gap
    # itself is a speed, measured in docs/benchmarks.md, not asserted here:
    # on a loaded machine it can pass a lease's length legitimately.)
    reasons = {(r["p"], r["reason"]) for r in w.records()
               if r["w"] == "w2" and r["ev"] == "release" and r["t"] >= t_drain
               and r["p"] in prim_w2}
    assert {p for p, _ in reasons} == prim_w2, reasons
    assert all(reason == "handoff" for _, reason in reasons), reasons
    assert not any(f[1] == "w2" for f in w.faults)


def test_leader_killed_during_rebalance(world):
    c, w = world
    names = start_world(c, w)
    # Start a rebalance (a new worker), then kill the coordinator leader.
    w.start("w5")
    time.sleep(0.3)
    old = leader(c)
    before = {row["partition"]: row for row in get(old, "/v1/resources/orders")["map"]}
    old.kill()
    new = c.wait_leader()
    t_new = time.monotonic()
    # The new leader keeps every assignment: for a while nothing that had a
    # primary loses it (members keep their leases; the new leader waits out
    # the old one's grants before any lease counts as over).
    time.sleep(0.5)
    now = {row["partition"]: row for row in get(new, "/v1/resources/orders")["map"]}
    for p, row in before.items():
        if row["primary"] is not None and not row["releasing"]:
            assert now[p]["primary"] is not None, f"partition {p} lost its primary"
    assert time.monotonic() - t_new < 5
    m = wait_until("balanced over 6 after the leader change", lambda: (
        lambda mm: mm if mm and sum(row["primary"] == "w5" for row in mm) >= P // 6
        else None)(settled(c, w)), 90)
    check_balanced(m, names + ["w5"])
    check_no_overlap(w)
    old.start()
    c.wait_leader()
