"""The HTTP API's contract (docs/api.md) on a real cluster: limits, error
answers, compare-and-swap, paging, metrics, readiness and the connection
limit."""
import socket

from harness import ELECTION_TIMEOUT_MS, http, kv_path


def assert_error(r, status, code):
    assert r is not None and r.status == status, r
    assert r.code == code and r.json["error"].get("message"), r


def test_limits_and_bad_requests(cluster):
    leader = cluster.wait_leader()
    assert_error(leader.put("big", "x" * (256 * 1024 + 1)), 413, "too_large")
    assert leader.put("exactly-256k", "x" * (256 * 1024)).status == 200
    assert_error(leader.put("k" * 513, "v"), 413, "too_large")
    assert leader.put("k" * 512, "v").status == 200
    assert_error(leader.request("PUT", kv_path("a", {"cas": "abc"}), "v"), 400, "bad_request")
    assert_error(leader.request("PUT", kv_path("a", {"cas": "-1"}), "v"), 400, "bad_request")
    assert_error(leader.request("PUT", kv_path("bin"), b"\xff\xfe"), 400, "bad_request")
    assert_error(leader.request("POST", kv_path("a"), "v"), 405, "method_not_allowed")
    assert_error(leader.request("DELETE", "/v1/status"), 405, "method_not_allowed")
    assert_error(leader.request("GET", "/no/such/route"), 404, "not_found")
    assert_error(leader.request("GET", "/v1/kv/?limit=0"), 400, "bad_request")
    assert_error(leader.request("GET", "/v1/kv/?limit=1001"), 400, "bad_request")
    assert_error(leader.get("never-written"), 404, "not_found")
    assert_error(leader.delete("never-written"), 404, "not_found")


def test_compare_and_swap(cluster):
    leader = cluster.wait_leader()
    created = leader.put("cas/k", "one", cas=0)
    assert created.status == 200, created
    v1 = created.json["version"]
    assert_error(leader.put("cas/k", "again", cas=0), 409, "cas_failed")
    stale = leader.put("cas/k", "two", cas=v1 - 1)
    assert_error(stale, 409, "cas_failed")
    assert stale.json["version"] == v1
    updated = leader.put("cas/k", "two", cas=v1)
    assert updated.status == 200 and updated.json["version"] > v1, updated
    assert_error(leader.delete("cas/k", cas=v1), 409, "cas_failed")
    gone = leader.delete("cas/k", cas=updated.json["version"])
    assert gone.status == 200 and gone.json["deleted"] is True, gone
    assert_error(leader.put("cas/k", "three", cas=updated.json["version"]), 409, "cas_failed")


def test_prefix_listing_pages_in_order(cluster):
    leader = cluster.wait_leader()
    keys = [f"list/{i:03d}" for i in range(25)]
    for k in reversed(keys):
        assert leader.put(k, "v-" + k).status == 200
    assert leader.put("listx", "outside the prefix").status == 200
    seen, after = [], None
    for _ in range(10):
        q = {"prefix": "list/", "limit": "10"}
        if after:
            q["after"] = after
        r = leader.request("GET", "/v1/kv/?" + "&".join(f"{a}={b}" for a, b in q.items()))
        assert r.status == 200, r
        items = r.json["items"]
        seen += [it["key"] for it in items]
        assert all(it["value"] == "v-" + it["key"] for it in items)
        if not r.json["more"]:
            break
        after = items[-1]["key"]
    assert seen == keys
    follower = cluster.followers(leader)[0]
    r = follower.request("GET", "/v1/kv/?prefix=list/&limit=1000&stale=1")
    assert r.status == 200 and len(r.json["items"]) <= 25


def test_metrics_status_and_ready(cluster):
    leader = cluster.wait_leader()
    for i in range(20):
        assert leader.put(f"m/{i}", "v").status == 200
    text = leader.request("GET", "/metrics").body.decode()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    assert values["corral_is_leader"] == 1
    assert values["corral_proposals_total"] >= 20
    assert values["corral_commit_latency_seconds_count"] >= 20
    assert values["corral_fsync_latency_seconds_count"] > 0
    assert values['corral_http_requests_total{code="200"}'] >= 20
    for f in cluster.followers(leader):
        assert f'corral_peer_replication_lag_entries{{peer="{f.id}"}}' in values
    # On the leader: how long ago each peer was heard from, by its own clock
    # (heartbeats keep it well under an election timeout), not a clock reading.
    for p in leader.status()["peers"]:
        assert "last_contact_ms" not in p, p
        assert 0 <= p["last_contact_age_ms"] < 10 * ELECTION_TIMEOUT_MS, p
    for f in cluster.followers(leader):
        assert all(p["last_contact_age_ms"] is None for p in f.status()["peers"])
    for n in cluster.nodes:
        s = n.status()
        assert s["leader"]["id"] == leader.id and s["cluster_id"] == leader.status()["cluster_id"]
        r = n.request("GET", "/health/ready")
        assert r.status == 200 and r.json == {"ready": True}, r
        assert n.request("GET", "/health").json["id"] == n.id


def test_connection_limit_answers_busy(make_cluster):
    c = make_cluster(size=1)
    node = c.node(1)
    node.start(extra=["--max-connections", "4"])
    c.wait_leader()
    held = []
    try:
        for _ in range(6):
            s = socket.create_connection(("127.0.0.1", int(node.http_addr.rsplit(":", 1)[1])), timeout=5)
            held.append(s)
        r = node.request("GET", "/health")
        assert_error(r, 503, "busy")
        assert r.headers.get("Retry-After") == "1"
    finally:
        for s in held:
            s.close()
    ok = None
    for _ in range(50):
        ok = http(node.url + "/health")
        if ok is not None and ok.status == 200:
            break
    assert ok is not None and ok.status == 200, ok
