"""The members, resources and partitions API (docs/api.md, "Members,
resources and partitions"; the lease rules of docs/partitions.md) on real
`corral server run` processes, over HTTP only. Members are simulated by
harness.Member: one heartbeater thread per member that registers with PUT,
heartbeats the leader every 250 ms (following 307s), keeps its view and
reports copies and releases as done at once.

Timings (defaults: lease 1000 ms, drift 10 %, margin 50 ms, Raft election
timeout 300 ms so max_election_timeout 600 ms): a silent member's lease is
certainly over 1.15 s after the leader last answered it, and a new leader
declares nobody dead for (600 + 1000) x 1.1 + 50 = 1.81 s after it took
office. Bounds below are generous multiples of those.

Two tests fail on purpose until the server is fixed (each docstring says
what is wrong): test_encoded_slash_in_a_member_name_is_a_bad_name and
test_never_heard_member_gets_no_partitions_in_the_new_leader_wait."""
import json
import threading
import time
import urllib.parse

import pytest

from harness import Member, api

P, R = 16, 2
NAMES = ("w1", "w2", "w3")
SETTLE_S = 20.0        # a map converging after a change (copies, hand-offs, drops)
POLL_S = 0.05


# ---- helpers ----

def assert_error(r, status, code):
    """r is the JSON error shape with this status and code."""
    assert r is not None and r.status == status, r
    assert (r.headers.get("Content-Type") or "").startswith("application/json"), r.headers
    assert isinstance(r.json, dict) and set(r.json) >= {"error"}, r
    assert r.code == code and isinstance(r.json["error"].get("message"), str) \
        and r.json["error"]["message"], r


def ok(r, status=200):
    assert r is not None and r.status == status, r
    return r.json


def fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xffffffffffffffff
    return h


def metrics(node):
    text = node.request("GET", "/metrics")
    assert text is not None and text.status == 200, text
    values = {}
    for line in text.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def member(node, name):
    return ok(node.request("GET", f"/v1/members/{name}"))


def resource(node, name="r"):
    return ok(node.request("GET", f"/v1/resources/{name}"))


def events(node, index=0, wait=None, timeout=10.0):
    q = f"/v1/events?index={index}" + (f"&wait={wait}" if wait else "")
    return ok(node.request("GET", q, timeout=timeout))


def quiet(node, secs="1s", tries=15):
    """Waits until a blocking events query waits out `secs` with no event
    (the map has stopped moving); returns the last event index."""
    last = events(node, 0)["index"]
    for _ in range(tries):
        got = events(node, last, wait=secs)
        if not got["events"]:
            return last
        last = got["index"]
    pytest.fail(f"events never stopped for {secs}: last {got['events'][-3:]}")


def settle(what, probe, timeout=SETTLE_S):
    """Polls probe() -> (problems, value) until problems is empty; returns
    value, or fails with the last problems."""
    deadline = time.monotonic() + timeout
    while True:
        problems, value = probe()
        if not problems:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}: {problems[:8]}")
        time.sleep(POLL_S)


def map_problems(res, hosts, replicas=R):
    """What keeps res's map from being complete and balanced over hosts:
    every partition with `replicas` in-sync replicas on distinct hosts, a
    primary among them with epoch >= 1, not releasing, and each host
    holding primaries and replicas within 1 of the fair share."""
    problems = []
    prim, reps = {h: 0 for h in hosts}, {h: 0 for h in hosts}
    for row in res["map"]:
        on = [x["member"] for x in row["replicas"]]
        if len(on) != replicas or len(set(on)) != len(on):
            problems.append(f"partition {row['partition']}: replicas {on}")
        if set(on) - set(hosts):
            problems.append(f"partition {row['partition']}: replica off the hosts {on}")
        if any(x["state"] != "in_sync" for x in row["replicas"]):
            problems.append(f"partition {row['partition']}: not all in sync {row['replicas']}")
        if row["primary"] not in on or row["epoch"] < 1 or row["releasing"]:
            problems.append(f"partition {row['partition']}: primary {row['primary']} "
                            f"epoch {row['epoch']} releasing {row['releasing']}")
        if row["primary"] in prim:
            prim[row["primary"]] += 1
        for m in on:
            if m in reps:
                reps[m] += 1
    n = res["partitions"]
    for h in hosts:
        if abs(prim[h] - n / len(hosts)) > 1:
            problems.append(f"{h} holds {prim[h]} primaries of {n}")
        if abs(reps[h] - n * replicas / len(hosts)) > 1:
            problems.append(f"{h} holds {reps[h]} replicas of {n * replicas}")
    return problems


def balanced(node, hosts, name="r", replicas=R, timeout=SETTLE_S):
    def probe():
        res = resource(node, name)
        return map_problems(res, hosts, replicas), res
    return settle(f"{name} balanced over {hosts}", probe, timeout)


def primaries(res):
    """{partition: (primary, epoch)}."""
    return {row["partition"]: (row["primary"], row["epoch"]) for row in res["map"]}


def wait_settled(node, timeout=10):
    """Until the leader's new-leader wait is over (ownership.settled)."""
    return settle("the new-leader wait to end", lambda: (
        [] if ok(node.request("GET", "/v1/status"))["ownership"].get("settled") else ["not yet"],
        None), timeout)


@pytest.fixture
def heartbeaters():
    """Makes harness.Member heartbeaters; stops every one at teardown."""
    made = []

    def make(cluster, name, **kw):
        m = Member(cluster, name, **kw)
        made.append(m)
        return m

    yield make
    for m in made:
        m.stop()


def single_node_map(make_cluster, heartbeaters, names=NAMES):
    """A 1-node cluster, heartbeating members and resource r (P, R)
    balanced over them: (cluster, node, {name: Member}, the resource)."""
    c = make_cluster(size=1).start()
    node = c.wait_leader()
    wait_settled(node)  # leases and deaths as after the new-leader wait
    ms = {n: heartbeaters(c, n).start() for n in names}
    created = ok(api(node, "PUT", "/v1/resources/r", {"partitions": P, "replicas": R}))
    assert created["partitions"] == P and created["replicas"] == R, created
    balanced(node, names)
    quiet(node, "500ms")  # the engine's last moves, if any, are over
    return c, node, ms, balanced(node, names)


# ---- 1. bad input: a clear 4xx in the JSON error shape, and nothing changes ----

VOLATILE_MEMBER = ("heartbeat_age_ms", "lease_ms_left")


def observable_state(node):
    """Everything the API shows of the cluster state, minus what moves with
    the clock (heartbeat ages, leases, counters)."""
    ms = ok(node.request("GET", "/v1/members"))
    for m in ms["members"]:
        for k in VOLATILE_MEMBER:
            m.pop(k)
    rs = ok(node.request("GET", "/v1/resources"))
    maps = {r["name"]: resource(node, r["name"]) for r in rs["resources"]}
    own = ok(node.request("GET", "/v1/status"))["ownership"]
    for k in ("heartbeats", "controller", "settled"):
        own.pop(k, None)
    return {"members": ms, "resources": rs, "maps": maps, "events": events(node, 0),
            "ownership": own}


def test_bad_input_answers_4xx_and_changes_nothing(make_cluster, heartbeaters):
    c = make_cluster(size=1).start()
    node = c.wait_leader()
    wait_settled(node)  # w2 below would be a host until then: see test_never_heard_...
    heartbeaters(c, "w1").start()
    # w2 is registered but never heartbeats: a refused heartbeat must not
    # count as one (its heartbeat_age_ms stays null).
    ok(api(node, "PUT", "/v1/members/w2", {"addr": "127.0.0.1:7002"}))
    ok(api(node, "PUT", "/v1/resources/r", {"partitions": 4, "replicas": 1}))
    balanced(node, ["w1"], replicas=1)
    time.sleep(0.5)  # let the last steps' events land
    before = observable_state(node)
    assert before["members"]["members"][1]["name"] == "w2"

    good_member = json.dumps({"addr": "127.0.0.1:7009"})
    good_res = json.dumps({"partitions": 4, "replicas": 1})

    def by_name(n):
        return [("GET", f"/v1/members/{n}", None), ("PUT", f"/v1/members/{n}", good_member),
                ("DELETE", f"/v1/members/{n}", None),
                ("POST", f"/v1/members/{n}/heartbeat", "{}"),
                ("GET", f"/v1/members/{n}/assignment?wait=0s", None),
                ("GET", f"/v1/members/{n}/stoppable", None),
                ("POST", f"/v1/members/{n}/drain", None),
                ("POST", f"/v1/members/{n}/activate", None),
                ("PUT", f"/v1/resources/{n}", good_res), ("GET", f"/v1/resources/{n}", None),
                ("DELETE", f"/v1/resources/{n}", None),
                ("GET", f"/v1/resources/{n}/lookup?key=a", None),
                ("GET", f"/v1/resources/{n}/plan", None)]

    cases = []  # (method, path, body, status, code)
    # Bad names: uppercase, 65 characters, an encoded slash alone, a space,
    # a non-ASCII letter; and the empty name before a subpath.
    for bad in ("W1", "a" * 65, "%2F", "w%201", "w%C3%A9", "w1%00"):
        cases += [(m, p, b, 400, "bad_request") for m, p, b in by_name(bad)]
    for m, p, b in by_name(""):
        if p.startswith("/v1/members//") or p.startswith("/v1/resources//"):
            cases.append((m, p, b, 400, "bad_request"))
    # 64 characters is a good name (only unknown).
    cases.append(("GET", "/v1/members/" + "a" * 64, None, 404, "not_found"))
    # Unknown member / resource.
    for m, p, b in by_name("nobody"):
        if "/members/" in p and m != "PUT":
            cases.append((m, p, b, 404, "not_found"))
    for m, p, b in by_name("nores"):
        if "/resources/" in p and m != "PUT":
            cases.append((m, p, b, 404, "not_found"))
    # Member bodies.
    long_meta = {"k": "v" * 1100}
    for body in ("not json", "[1,2]", "", "{\"addr\":\"h:1\"", "null", "\"h:1\"",
                 {"addr": "h:1", "unknown": 1}, {}, {"zone": "a"}, {"addr": ""},
                 {"addr": "h 1"}, {"addr": "h:1\n"}, {"addr": "h" * 261}, {"addr": 7},
                 {"addr": "h:1", "weight": 0}, {"addr": "h:1", "weight": 1001},
                 {"addr": "h:1", "weight": "x"}, {"addr": "h:1", "weight": 1.5},
                 {"addr": "h:1", "zone": "A"}, {"addr": "h:1", "zone": "z" * 65},
                 {"addr": "h:1", "zone": 3}, {"addr": "h:1", "meta": [1]},
                 {"addr": "h:1", "meta": "x"}, {"addr": "h:1", "meta": long_meta},
                 {"addr": "h:1", "role": "boss"}):
        for n in ("w2", "fresh"):  # an update and a registration
            cases.append(("PUT", f"/v1/members/{n}",
                          body if isinstance(body, str) else json.dumps(body),
                          400, "bad_request"))
    # Heartbeat bodies (w2 exists; none of these may count as a heartbeat).
    for body in ("not json", "[1]", '{"index":"x"}', '{"index":-1}', '{"load":3}',
                 '{"unknown":1}', '{"progress":{}}', '{"progress":[1]}',
                 '{"progress":[{"resource":"r","partition":0,"epoch":1}]}',
                 '{"progress":[{"resource":"r","partition":0,"epoch":1,"state":"done"}]}',
                 '{"progress":[{"resource":"r","partition":0,"epoch":1,"state":"in_sync",'
                 '"extra":1}]}',
                 '{"progress":[{"resource":"r","partition":-1,"epoch":1,"state":"in_sync"}]}',
                 '{"progress":[{"resource":"r","partition":0,"epoch":"1","state":"in_sync"}]}',
                 '{"progress":[{"resource":"r","partition":0,"epoch":1,"state":"released"},'
                 '{"resource":"r","partition":1,"epoch":1,"state":"bogus"}]}'):
        cases.append(("POST", "/v1/members/w2/heartbeat", body, 400, "bad_request"))
    # Resource bodies.
    for body in ("not json", "[4,1]", "", {"partitions": 0, "replicas": 1},
                 {"partitions": 65537, "replicas": 1}, {"partitions": "x", "replicas": 1},
                 {"partitions": -1, "replicas": 1}, {"partitions": 4, "replicas": 0},
                 {"partitions": 4, "replicas": 8}, {"partitions": 4, "replicas": "x"},
                 {"partitions": 4}, {"partitions": 4, "replicas": 1, "zones": 2}):
        cases.append(("PUT", "/v1/resources/new", body if isinstance(body, str)
                      else json.dumps(body), 400, "bad_request"))
    # More replicas than registered workers (2), without ?force=1; a new
    # partition count for an existing resource.
    cases.append(("PUT", "/v1/resources/new", json.dumps({"partitions": 4, "replicas": 3}),
                  409, "conflict"))
    cases.append(("PUT", "/v1/resources/r", json.dumps({"partitions": 5, "replicas": 1}),
                  409, "conflict"))
    # wait and index arguments.
    for q in ("wait=abc", "wait=301s", "wait=-1", "wait=1h", "wait=300001ms", "wait=1.5s", "index=x",
              "index=-1", "index=", "index=1e3"):
        cases.append(("GET", f"/v1/members/w1/assignment?{q}", None, 400, "bad_request"))
        cases.append(("GET", f"/v1/events?{q}", None, 400, "bad_request"))
    cases.append(("DELETE", "/v1/members/w1?wait=abc", None, 400, "bad_request"))
    cases.append(("GET", "/v1/resources/r/lookup", None, 400, "bad_request"))
    # Wrong methods.
    for m, p in (("POST", "/v1/members"), ("DELETE", "/v1/members"), ("PUT", "/v1/members"),
                 ("POST", "/v1/members/w1"), ("GET", "/v1/members/w1/heartbeat"),
                 ("PUT", "/v1/members/w1/heartbeat"), ("POST", "/v1/members/w1/assignment"),
                 ("DELETE", "/v1/members/w1/stoppable"), ("GET", "/v1/members/w1/drain"),
                 ("PUT", "/v1/members/w1/activate"), ("POST", "/v1/resources"),
                 ("PUT", "/v1/resources"), ("POST", "/v1/resources/r"),
                 ("PUT", "/v1/resources/r/lookup"), ("DELETE", "/v1/resources/r/plan"),
                 ("POST", "/v1/events"), ("DELETE", "/v1/events")):
        cases.append((m, p, "{}" if m in ("PUT", "POST") else None, 405, "method_not_allowed"))
    # Unknown subpaths.
    for m, p in (("GET", "/v1/members/w1/nope"), ("POST", "/v1/members/w1/heartbeat/x"),
                 ("GET", "/v1/members/w1/"), ("GET", "/v1/members/w1/assignment/"),
                 ("GET", "/v1/resources/r/nope"), ("GET", "/v1/resources/r/lookup/x"),
                 ("GET", "/v1/eventsx"), ("GET", "/v1/events/1"), ("GET", "/v1/membersx")):
        cases.append((m, p, "{}" if m == "POST" else None, 404, "not_found"))

    failures = []
    for method, path, body, status, code in cases:
        r = node.request(method, path, body)
        try:
            assert_error(r, status, code)
        except AssertionError:
            failures.append(f"{method} {path} {body!r:.60}: wanted {status} {code}, got {r!r:.200}")
    assert not failures, f"{len(failures)} of {len(cases)} answers wrong:\n" + "\n".join(failures)

    after = observable_state(node)
    assert after == before
    assert member(node, "w2")["heartbeat_age_ms"] is None
    # ... and what was refused works when asked right.
    forced = ok(api(node, "PUT", "/v1/resources/forced?force=1",
                    {"partitions": 2, "replicas": 3}))
    assert forced["replicas"] == 3 and forced["partitions"] == 2, forced
    ok(api(node, "PUT", "/v1/members/w2", {"addr": "127.0.0.1:7002", "weight": 1000,
                                          "zone": "", "meta": {"k": "v" * 1000}}))


def test_encoded_slash_in_a_member_name_is_a_bad_name(make_cluster, heartbeaters):
    """A member name holding an encoded '/' is not a name ("w1/drain" is
    outside [a-z0-9._-]): it must be refused as one, not routed as w1's
    drain. (Fails today: src/runtime/http.c hands the routes only the
    percent-decoded path, so POST /v1/members/w1%2Fdrain reaches
    api_members() as /w1/drain and drains w1.)"""
    c = make_cluster(size=1).start()
    node = c.wait_leader()
    heartbeaters(c, "w1").start()
    r = node.request("POST", "/v1/members/w1%2Fdrain")
    assert member(node, "w1")["status"] == "active", "POST /v1/members/w1%2Fdrain drained w1"
    assert_error(r, 400, "bad_request")
    for method, path in (("GET", "/v1/members/w1%2Fstoppable"),
                         ("DELETE", "/v1/members/w1%2F"), ("PUT", "/v1/resources/r%2Fx")):
        assert_error(node.request(method, path, "{}" if method == "PUT" else None),
                     400, "bad_request")


def test_never_heard_member_gets_no_partitions_in_the_new_leader_wait(make_cluster, heartbeaters):
    """A member registered but never heard from is no host: a resource
    created during the new-leader wait must not be placed and granted on
    it. (Placed there, with R = 1 such a partition's only replica sits on a
    member that is then declared dead, and it stays without a primary for
    good: the controller counts it as lost.) Fails today: until the wait
    ends every lease counts as running (liveness.h L2), a never-heard
    member's included, so the controller takes it as a placement host and
    places and grants fresh partitions on it in sync at once."""
    c = make_cluster(size=1).start()
    node = c.wait_leader()
    heartbeaters(c, "w1").start()
    ok(api(node, "PUT", "/v1/members/ghost", {"addr": "127.0.0.1:7666"}))
    assert ok(node.request("GET", "/v1/status"))["ownership"]["settled"] is False
    ok(api(node, "PUT", "/v1/resources/r", {"partitions": 8, "replicas": 1}))
    wait_settled(node)
    time.sleep(1.5)  # the ghost's "lease" is over by now in any case
    res = resource(node)
    assert [row["partition"] for row in res["map"] if row["primary"] != "w1"] == [], \
        [(row["partition"], row["primary"], row["replicas"]) for row in res["map"]]


# ---- 2. flows on a single node ----

def test_map_lookup_events_status_and_metrics(make_cluster, heartbeaters):
    c, node, ms, res = single_node_map(make_cluster, heartbeaters)
    assert res["partitions"] == P and res["replicas"] == R and len(res["map"]) == P
    epochs = [row["epoch"] for row in res["map"]]
    assert len(set(epochs)) == P, f"two grants share an epoch: {epochs}"
    # Members: the counts match the map; the leader knows their heartbeats.
    listing = ok(node.request("GET", "/v1/members"))
    assert [m["name"] for m in listing["members"]] == list(NAMES)
    assert listing["index"] >= res["index"] > 0
    ids = set()
    for m in listing["members"]:
        assert m["status"] == "active" and m["role"] == "worker" and m["addr"] == ms[m["name"]].addr
        assert m["primaries"] == sum(row["primary"] == m["name"] for row in res["map"]), m
        assert m["replicas"] == sum(m["name"] in [x["member"] for x in row["replicas"]]
                                    for row in res["map"]), m
        # lease_ms_left is the leader's certain end of the lease: at most
        # lease x 1.1 + 50 ms after the last heartbeat.
        assert 0 <= m["heartbeat_age_ms"] < 1000 and 0 < m["lease_ms_left"] <= 1150, m
        ids.add(m["id"])
    assert len(ids) == 3
    # The assignment watch and the heartbeaters' own views match the map.
    for name, mem in ms.items():
        view = ok(node.request("GET", f"/v1/members/{name}/assignment"))
        assert view["lease_ms"] == 1000 and view["index"] >= res["index"]
        mine = {row["partition"]: row for row in res["map"]
                if name in [x["member"] for x in row["replicas"]]}
        got = {e["partition"]: e for e in view["partitions"]}
        assert set(got) == set(mine), (name, view)
        for p, e in got.items():
            row = mine[p]
            assert e["resource"] == "r" and e["resource_id"] == res["id"] and e["epoch"] == row["epoch"]
            assert e["role"] == ("primary" if row["primary"] == name else "replica"), (e, row)
            assert e["state"] == "in_sync", e
            if e["role"] == "replica":
                assert e["copy_from"]["name"] == row["primary"], (e, row)
                assert e["copy_from"]["addr"] == ms[row["primary"]].addr
            else:
                assert e["copy_from"] is None
        settle(f"{name}'s heartbeat view", lambda: (
            [] if {p: e["epoch"] for (_, p), e in mem.snapshot()[1].items()} ==
            {p: e["epoch"] for p, e in got.items()} else [mem.snapshot()[1]], None), 5)
    # Lookup: the partition every client computes (FNV-1a 64, checked on
    # the published test vectors first), and its primary.
    assert (fnv1a64(b"a"), fnv1a64(b"foobar")) == (0xaf63dc4c8601ec8c, 0x85944171f73967e8)
    keys = [f"user-{i}" for i in range(40)] + ["", "a b&c=d", "caf\u00e9", "k/with/slashes", "%41"]
    seen = set()
    for key in keys:
        q = urllib.parse.urlencode({"key": key})
        lk = ok(node.request("GET", f"/v1/resources/r/lookup?{q}"))
        part = fnv1a64(key.encode()) % P
        seen.add(part)
        row = res["map"][part]
        assert lk["partition"] == part, (key, lk)
        assert lk["epoch"] == row["epoch"] and lk["primary"]["name"] == row["primary"], (key, lk)
        assert lk["primary"]["addr"] == ms[row["primary"]].addr
        assert sorted(x["name"] for x in lk["replicas"]) == \
            sorted(x["member"] for x in row["replicas"])
    assert len(seen) >= 10
    # The plan of a balanced map moves nothing.
    plan = ok(node.request("GET", "/v1/resources/r/plan"))
    assert plan["moves"] == [] and plan["moves_total"] == 0, plan
    # Events from the start: joins, the resource, the copies and grants.
    ev = events(node, 0)
    kinds = [e["type"] for e in ev["events"]]
    assert ev["index"] == ev["events"][-1]["index"]
    assert [e["index"] for e in ev["events"]] == sorted(e["index"] for e in ev["events"])
    assert [e["member"] for e in ev["events"] if e["type"] == "member_join"] == list(NAMES)
    assert [e["resource"] for e in ev["events"] if e["type"] == "resource_put"] == ["r"]
    assert kinds.index("resource_put") > max(i for i, k in enumerate(kinds) if k == "member_join")
    copies = {(e["partition"], e["member"]) for e in ev["events"] if e["type"] == "copy"}
    assert copies >= {(row["partition"], x["member"]) for row in res["map"]
                      for x in row["replicas"]}
    grants = {e["partition"]: (e["member"], e["epoch"]) for e in ev["events"]
              if e["type"] == "grant" and e["resource"] == "r"}
    assert grants == primaries(res), (grants, primaries(res))
    # Nothing moves: a blocking query on the last index waits its 2 s out.
    t0 = time.monotonic()
    idle = events(node, ev["index"], wait="2s")
    waited = time.monotonic() - t0
    assert idle["events"] == [] and idle["index"] == ev["index"], idle
    assert 1.8 <= waited < 6, waited
    # /v1/status and /metrics.
    own = ok(node.request("GET", "/v1/status"))["ownership"]
    assert own["leading"] is True and own["settled"] is True, own
    assert own["members"] == {"active": 3, "draining": 0, "dead": 0, "left": 0}, own
    assert (own["resources"], own["partitions"], own["without_primary"],
            own["under_replicated"], own["moving"]) == (1, P, 0, 0, 0), own
    assert own["assign_index"] >= res["index"]
    assert own["heartbeats"] > 0
    v = metrics(node)
    assert v["corral_partitions"] == P and v["corral_resources"] == 1
    assert v["corral_partitions_without_primary"] == 0
    assert v["corral_partitions_under_replicated"] == 0 and v["corral_moves_in_flight"] == 0
    assert v['corral_members{status="active"}'] == 3 and v['corral_members{status="dead"}'] == 0
    assert v["corral_member_heartbeats_total"] > 0
    assert v["corral_grants_total"] >= P and v["corral_copies_total"] >= P * R
    assert v["corral_lease_expiries_total"] == 0
    assert v["corral_controller_evaluations_total"] > 0


def watch(node, name, index, wait, timeout=40):
    t0 = time.monotonic()
    r = node.request("GET", f"/v1/members/{name}/assignment?index={index}&wait={wait}",
                     timeout=timeout)
    return ok(r), time.monotonic() - t0


def test_assignment_watch_blocks_and_wakes_on_change(make_cluster, heartbeaters):
    c, node, ms, res = single_node_map(make_cluster, heartbeaters)
    now = ok(node.request("GET", "/v1/members/w1/assignment"))
    idx = now["index"]
    # Nothing changes: each wait is served in full.
    for wait, secs in (("2s", 2.0), ("1500ms", 1.5), ("1", 1.0)):
        got, took = watch(node, "w1", idx, wait)
        assert 0.9 * secs <= took < secs + 4, (wait, took)
        assert got["partitions"] == now["partitions"], got
    # A change of w1's view ends the wait early: a resource on every member.
    box = {}
    t = threading.Thread(target=lambda: box.update(zip(("got", "took"),
                                                       watch(node, "w1", idx, "30s"))))
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "the watch answered with nothing changed"
    ok(api(node, "PUT", "/v1/resources/extra", {"partitions": 2, "replicas": 3}))
    t.join(35)
    assert not t.is_alive()
    assert box["took"] < 10, box["took"]
    assert box["got"]["index"] > idx
    assert {(e["resource"], e["partition"]) for e in box["got"]["partitions"]} >= \
        {("extra", 0), ("extra", 1)}, box["got"]
    # ... and so does the resource's deletion.
    balanced(node, NAMES, name="extra", replicas=3)
    idx2 = ok(node.request("GET", "/v1/members/w1/assignment"))["index"]
    box.clear()
    t = threading.Thread(target=lambda: box.update(zip(("got", "took"),
                                                       watch(node, "w1", idx2, "30s"))))
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "the watch answered with nothing changed"
    gone = ok(api(node, "DELETE", "/v1/resources/extra"))
    assert gone == {"name": "extra", "deleted": True}, gone
    t.join(35)
    assert not t.is_alive() and box["took"] < 10, box
    assert all(e["resource"] == "r" for e in box["got"]["partitions"]), box["got"]
    assert_error(node.request("GET", "/v1/resources/extra"), 404, "not_found")
    # An unknown member's watch is a 404, at once.
    assert_error(node.request("GET", f"/v1/members/nobody/assignment?index={idx}&wait=5s"),
                 404, "not_found")


def test_dead_member_fails_over_and_rejoins(make_cluster, heartbeaters):
    c, node, ms, res = single_node_map(make_cluster, heartbeaters)
    before = primaries(res)
    w3_parts = {p: e for p, (m, e) in before.items() if m == "w3"}
    assert w3_parts
    w3_id = member(node, "w3")["id"]
    lease_s = ms["w3"].lease_ms / 1000
    ms["w3"].stop()
    t_stop = time.monotonic()
    last_sent = ms["w3"].last_ok_sent
    # Watch the map until w3 is dead and its primaries have moved.
    first_change = dead_at = None
    without_primary = []
    deadline = t_stop + 10
    while time.monotonic() < deadline:
        now = time.monotonic()
        cur = resource(node)
        without_primary += [row["partition"] for row in cur["map"] if row["primary"] is None]
        moved = {p for p in w3_parts if primaries(cur)[p][0] != "w3"}
        if moved and first_change is None:
            first_change = now
        if dead_at is None and member(node, "w3")["status"] == "dead":
            dead_at = time.monotonic()
        if dead_at is not None and moved == set(w3_parts):
            break
        time.sleep(POLL_S)
    assert dead_at is not None, "w3 was not declared dead within 10 s"
    # The lease w3 got with its last answered heartbeat runs lease_ms from
    # when it sent it (no later than last_sent): no primary of w3's may
    # move before then (the leader waits lease x 1.1 + 50 ms from receipt).
    assert first_change is not None and first_change >= last_sent + lease_s, \
        (first_change - t_stop, last_sent - t_stop)
    assert 0.8 <= dead_at - t_stop <= 6.0, dead_at - t_stop
    assert without_primary == [], f"partitions seen without a primary: {without_primary}"
    after = primaries(resource(node))
    for p, epoch in w3_parts.items():
        assert after[p][0] in ("w1", "w2") and after[p][1] > epoch, (p, epoch, after[p])
    # w3 ends holding nothing, and the map is whole on the others.
    balanced(node, ("w1", "w2"))
    settle("w3 holds nothing", lambda: (
        [m] if (m := member(node, "w3"))["replicas"] != 0 else [], None))
    assert member(node, "w3")["status"] == "dead"
    ev = events(node, 0)["events"]
    assert {"type": "member_status", "member": "w3", "status": "dead"} in \
        [{k: e[k] for k in ("type", "member", "status") if k in e} for e in ev]
    clears = {e["partition"]: e["epoch"] for e in ev if e["type"] == "clear" and
              e["member"] == "w3"}
    assert clears == w3_parts, (clears, w3_parts)
    for name in ("w1", "w2"):
        assert member(node, name)["status"] == "active"
    # It comes back: the 409 makes it register again, under the same id,
    # and it gets partitions back.
    ms["w3"].start(fresh=True)
    m = settle("w3 active again", lambda: ([] if (m := member(node, "w3"))["status"] == "active"
                                           else [m], m), 10)
    assert m["id"] == w3_id, m
    counts = ms["w3"].snapshot()[2]
    assert counts.get("conflict", 0) >= 1 and counts.get("registered") == 2, counts
    final = balanced(node, NAMES)
    assert sum(row["primary"] == "w3" for row in final["map"]) >= 4
    assert member(node, "w3")["replicas"] >= 10
    v = metrics(node)
    assert v["corral_lease_expiries_total"] >= 1 and v['corral_members{status="dead"}'] == 0


def test_drain_activate_and_delete(make_cluster, heartbeaters):
    c, node, ms, res = single_node_map(make_cluster, heartbeaters)
    st = ok(node.request("GET", "/v1/members/w2/stoppable"))
    assert st["stoppable"] is False and st["reasons"], st
    assert all(x.startswith("r/") for x in st["reasons"]), st
    # Drain w1: it ends holding nothing, the others balanced, and it never
    # dies (it kept heartbeating).
    drained = ok(api(node, "POST", "/v1/members/w1/drain"))
    assert drained["name"] == "w1" and drained["status"] == "draining", drained
    balanced(node, ("w2", "w3"))
    m = settle("w1 drained", lambda: ([] if (m := member(node, "w1"))["replicas"] == 0
                                      else [m], m))
    assert m["status"] == "draining" and m["primaries"] == 0, m
    st = ok(node.request("GET", "/v1/members/w1/stoppable"))
    assert st["stoppable"] is True and st["reasons"] == [], st
    assert ok(node.request("GET", "/v1/members/w1/assignment"))["partitions"] == []
    # Activate: it gets its share back.
    back = ok(api(node, "POST", "/v1/members/w1/activate"))
    assert back["status"] == "active", back
    balanced(node, NAMES)
    # DELETE of a member holding replicas: drained first; a short wait ends
    # in 409 with the replicas it still holds, a long one in the deletion.
    r = node.request("DELETE", "/v1/members/w2?wait=0s")
    assert_error(r, 409, "conflict")
    assert isinstance(r.json.get("replicas"), int) and r.json["replicas"] > 0, r
    assert member(node, "w2")["status"] == "draining"
    t0 = time.monotonic()
    gone = ok(node.request("DELETE", "/v1/members/w2?wait=30s", timeout=40))
    took = time.monotonic() - t0
    assert gone == {"name": "w2", "deleted": True}, gone
    assert took < 30, took
    assert_error(node.request("GET", "/v1/members/w2"), 404, "not_found")
    deletes = [e for e in events(node, 0)["events"] if e["type"] == "member_delete"]
    assert len(deletes) == 1, deletes
    balanced(node, ("w1", "w3"))
    settle("w2's heartbeats answered 404", lambda: (
        [] if ms["w2"].snapshot()[2].get("not_found") else [ms["w2"]], None), 5)
    ms["w2"].stop()
    assert_error(node.request("POST", "/v1/members/w2/heartbeat", "{}"), 404, "not_found")
    # DELETE of a member holding nothing: at once.
    ok(api(node, "PUT", "/v1/members/idle", {"addr": "127.0.0.1:7100"}))
    t0 = time.monotonic()
    gone = ok(node.request("DELETE", "/v1/members/idle?wait=30s"))
    assert gone == {"name": "idle", "deleted": True} and time.monotonic() - t0 < 2, gone
    assert_error(node.request("GET", "/v1/members/idle"), 404, "not_found")
    ev = [e for e in events(node, 0)["events"] if e["type"].startswith("member_")]
    statuses = [(e["member"], e["status"]) for e in ev if e["type"] == "member_status"]
    assert ("w1", "draining") in statuses and ("w1", "active") in statuses, statuses
    assert ("w2", "draining") in statuses and not any(s == "dead" for _, s in statuses), statuses
    assert sum(e["type"] == "member_delete" for e in ev) == 2, ev
    assert [x["name"] for x in ok(node.request("GET", "/v1/members"))["members"]] == ["w1", "w3"]


# ---- 3. a 3-node cluster: redirects, follower reads, the leader killed ----

def test_three_nodes_redirects_follower_reads_and_leader_kill(cluster, heartbeaters):
    leader = cluster.wait_leader()
    f1, f2 = cluster.followers(leader)
    # Writes on a follower: 307 to the same request at the leader, whatever
    # the follower's own (maybe stale) state holds; here none of the names
    # exists yet, and there are no workers for R = 2.
    for method, path, body in (("PUT", "/v1/members/m1", {"addr": "127.0.0.1:7201"}),
                               ("PUT", "/v1/resources/r", {"partitions": P, "replicas": R}),
                               ("PUT", "/v1/resources/r?force=1", {"partitions": P, "replicas": R}),
                               ("POST", "/v1/members/m1/heartbeat", {}),
                               ("POST", "/v1/members/m1/drain", None),
                               ("POST", "/v1/members/m1/activate", None),
                               ("DELETE", "/v1/members/m1?wait=1s", None),
                               ("DELETE", "/v1/resources/r", None)):
        r = api(f1, method, path, body, follow=False)
        assert_error(r, 307, "not_leader")
        assert r.headers["Location"] == leader.url + path, r.headers["Location"]
        assert r.json["error"]["leader"] == leader.url, r
    # Members register and heartbeat through a follower, following the 307s.
    names = ("m1", "m2", "m3", "m4")
    ms = {n: heartbeaters(cluster, n, first=f1 if i % 2 else f2,
                          load={"qps": i + 1, "who": n}).start()
          for i, n in enumerate(names)}
    ok(api(f2, "PUT", "/v1/resources/r", {"partitions": P, "replicas": R}))
    res = balanced(leader, names)
    for i, m in enumerate(ms.values()):
        assert m.snapshot()[2].get("redirect", 0) >= 1 and m.target == leader.url, m
        # The leader shows the last heartbeat's load (followers: {}).
        assert member(leader, m.name)["load"] == {"qps": i + 1, "who": m.name}
    # Reads on a follower answer from its own state (no 307).
    def follower_map(f):
        # A follower's state may lag the leader's by a heartbeat: until it
        # applies the PUT, it has no such resource (404) yet.
        r = f.request("GET", "/v1/resources/r")
        if r is None or r.status == 404:
            return ["not applied yet"], None
        return ([] if primaries(ok(r)) == primaries(resource(leader)) else ["differs"]), None

    for f in (f1, f2):
        settle(f"node {f.id}'s map", lambda: follower_map(f), 5)
        fl = ok(f.request("GET", "/v1/members"))
        assert [m["name"] for m in fl["members"]] == list(names)
        assert all(m["heartbeat_age_ms"] is None and m["lease_ms_left"] is None and
                   m["load"] == {} for m in fl["members"]), fl
        lk = ok(f.request("GET", "/v1/resources/r/lookup?key=order-7"))
        assert lk["partition"] == fnv1a64(b"order-7") % P
        assert lk["primary"]["name"] == res["map"][lk["partition"]]["primary"]
        view = ok(f.request("GET", "/v1/members/m1/assignment"))
        lview = ok(leader.request("GET", "/v1/members/m1/assignment"))
        assert view["partitions"] == lview["partitions"]
        fev = events(f, 0)["events"]
        assert sorted((e["partition"], e["epoch"]) for e in fev if e["type"] == "grant") == \
            sorted((p, e) for p, (_, e) in primaries(res).items())
        own = ok(f.request("GET", "/v1/status"))["ownership"]
        assert own["leading"] is False and own["without_primary"] == 0 and "settled" not in own
    assert ok(leader.request("GET", "/v1/status"))["ownership"]["leading"] is True
    # A quiet map: nothing moved for a second.
    quiet(leader)
    before = primaries(resource(leader))
    # Kill -9 the leader, and silence m4 at the same moment: the others go
    # on heartbeating and find the new leader by 307s and retries.
    ms["m4"].stop()
    t_kill = time.monotonic()
    leader.kill()
    new = cluster.wait_leader(exclude=(leader,))
    t_elect = time.monotonic()
    survivors = [n for n in cluster.nodes if n is not leader]
    # The new-leader wait: for the first second after the election nobody
    # is declared dead and no partition changes its primary or its epoch,
    # m4's included.
    assert ok(new.request("GET", "/v1/status"))["ownership"]["settled"] is False
    seen = 0
    while time.monotonic() < t_elect + 1.0:
        cur = primaries(resource(new))
        assert cur == before, {p: (before[p], cur[p]) for p in cur if cur[p] != before[p]}
        sts = {m["name"]: m["status"] for m in ok(new.request("GET", "/v1/members"))["members"]}
        assert set(sts.values()) == {"active"}, sts
        seen += 1
        time.sleep(POLL_S)
    assert seen >= 5
    # The heartbeating members found the new leader.
    for n in ("m1", "m2", "m3"):
        settle(f"{n} heartbeating the new leader", lambda: (
            [] if ms[n].target == new.url and
            (member(new, n)["heartbeat_age_ms"] or 10 ** 9) < 1000 else [ms[n]], None), 10)
    # Then m4, silent since before the election, is dead, no earlier than
    # the new leader's wait allows, and its primaries move.
    m4_at = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if member(new, "m4")["status"] == "dead":
            m4_at = time.monotonic()
            break
        cur = resource(new)
        assert all(row["primary"] is not None for row in cur["map"]), cur
        time.sleep(POLL_S)
    assert m4_at is not None, "m4 was not declared dead within 15 s of the election"
    assert m4_at - t_kill >= 1.8, m4_at - t_kill
    final = balanced(new, ("m1", "m2", "m3"))
    for p, (m, epoch) in before.items():
        if m == "m4":
            assert final["map"][p]["primary"] != "m4" and final["map"][p]["epoch"] > epoch
    # The members that kept heartbeating were never declared dead, on any
    # surviving node (a follower's state may trail the leader's by a
    # heartbeat: it is polled until it has applied m4's death).
    def seen_dead(n):
        dead = [e["member"] for e in events(n, 0)["events"]
                if e["type"] == "member_status" and e["status"] == "dead"]
        sts = {m["name"]: m["status"] for m in ok(n.request("GET", "/v1/members"))["members"]}
        return ([] if dead and sts["m4"] == "dead" else ["m4 not dead yet"]), (dead, sts)

    for n in survivors:
        dead, sts = settle(f"node {n.id} to apply m4's death", lambda: seen_dead(n), 5)
        assert dead == ["m4"], (n, dead)
        assert sts == {"m1": "active", "m2": "active", "m3": "active", "m4": "dead"}, sts
    for n in ("m1", "m2", "m3"):
        counts = ms[n].snapshot()[2]
        assert counts.get("conflict", 0) == 0 and counts.get("unexpected", 0) == 0, counts
