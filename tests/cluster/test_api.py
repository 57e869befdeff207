"""The HTTP API's contract (docs/api.md) on a real cluster: limits, error
answers, compare-and-swap, paging, metrics, readiness and the connection
limit."""
import base64
import json
import select
import socket
import time

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
    assert_error(leader.request("POST", kv_path("a"), "v"), 405, "method_not_allowed")
    assert_error(leader.request("DELETE", "/v1/status"), 405, "method_not_allowed")
    assert_error(leader.request("GET", "/no/such/route"), 404, "not_found")
    assert_error(leader.request("GET", "/v1/kv/?limit=0"), 400, "bad_request")
    assert_error(leader.request("GET", "/v1/kv/?limit=1001"), 400, "bad_request")
    assert_error(leader.get("never-written"), 404, "not_found")
    assert_error(leader.delete("never-written"), 404, "not_found")


def test_values_are_bytes(cluster):
    """A value is any bytes (issue 13): one that is not UTF-8 is given as
    value_base64 in JSON, ?raw=1 answers the exact bytes, a UTF-8 one
    (NUL included) stays "value"."""
    leader = cluster.wait_leader()
    blob = b"a\x00b\xff\xfe\x80\\\n"
    r = leader.put("bin/blob", blob)
    assert r.status == 200, r
    version = r.json["version"]
    for key, value in (("bin/nul", b"x\x00y"), ("bin/text", "caf\u00e9".encode()),
                       ("bin/empty", b"")):
        assert leader.put(key, value).status == 200
    r = leader.get("bin/blob")
    assert r.status == 200, r
    assert r.json == {"key": "bin/blob", "value_base64": "YQBi//6AXAo=", "version": version}
    assert base64.b64decode(r.json["value_base64"], validate=True) == blob
    assert leader.get("bin/nul").json["value"] == "x\x00y"
    assert leader.get("bin/text").json["value"] == "caf\u00e9"
    assert leader.get("bin/empty").json["value"] == ""

    def raw(node, key, **query):
        return node.request("GET", kv_path(key, {"raw": "1", **query}))

    # ?raw=1: the bytes, with the version in a header; linearizable on a
    # follower too, and composed with stale.
    follower = cluster.followers(leader)[0]
    for node in (leader, follower):
        r = raw(node, "bin/blob")
        assert r.status == 200 and r.body == blob, r
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["X-Corral-Version"] == str(version)
    r = raw(leader, "bin/blob", stale="1")
    assert r.status == 200 and r.body == blob and r.headers["X-Corral-Version"] == str(version)
    for flag in ("", "true"):
        assert leader.request("GET", kv_path("bin/blob", {"raw": flag})).body == blob
    assert raw(leader, "bin/text").body == "caf\u00e9".encode()
    r = raw(leader, "bin/empty")
    assert r.status == 200 and r.body == b"", r
    assert_error(raw(leader, "bin/never-written"), 404, "not_found")
    for bad in ("0", "false", "yes"):
        assert_error(leader.request("GET", kv_path("bin/blob", {"raw": bad})), 400,
                     "bad_request")

    # The listing: each item as a GET gives it; raw is not its argument
    # and, as any unknown one on a read, is ignored.
    r = leader.request("GET", "/v1/kv/?prefix=bin/")
    assert r.status == 200, r
    items = {it["key"]: it for it in r.json["items"]}
    assert items["bin/blob"] == {"key": "bin/blob", "value_base64": "YQBi//6AXAo=",
                                 "version": version}
    assert items["bin/nul"]["value"] == "x\x00y" and "value_base64" not in items["bin/nul"]
    assert leader.request("GET", "/v1/kv/?prefix=bin/&raw=1&nope=2").json == r.json
    assert leader.request("GET", kv_path("bin/blob", {"nope": "1"})).json["value_base64"]

    # The size limit is the same for bytes.
    big = bytes(range(256)) * 1024
    assert leader.put("bin/big", big).status == 200
    assert raw(leader, "bin/big").body == big
    assert base64.b64decode(leader.get("bin/big").json["value_base64"]) == big
    assert_error(leader.put("bin/big", big + b"\xff"), 413, "too_large")


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


def http_port(node):
    return int(node.http_addr.rsplit(":", 1)[1])


def raw_exchange(node, data, timeout=5.0):
    """Sends data as is on a new connection and reads until the server
    closes it (bounded): (answer bytes, closed)."""
    with socket.create_connection(("127.0.0.1", http_port(node)), timeout=timeout) as s:
        s.sendall(data)
        answer, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return answer, True
            except socket.timeout:
                return answer, False
            if not chunk:
                return answer, True
            answer += chunk
    return answer, False


def parse_answers(data):
    """The HTTP/1.1 answers in data: [(status, {header: value}, body)]."""
    out = []
    while data.startswith(b"HTTP/"):
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        n = int(headers.get("content-length", "0"))
        out.append((int(lines[0].split(" ")[1]), headers, rest[:n]))
        data = rest[n:]
    return out


def assert_json_error(answer, status, code):
    status_got, headers, body = answer
    assert status_got == status, answer
    assert headers.get("content-type") == "application/json", answer
    err = json.loads(body)["error"]
    assert err["code"] == code and err["message"], answer


# Small enough to cross the soft limit and the hard cap (limit + 64) with a
# bounded number of loopback sockets.
MAX_CONNS = 4
HARD_CAP = MAX_CONNS + 64


def test_connection_limit_answers_busy_but_health(make_cluster):
    c = make_cluster(size=1)
    node = c.node(1)
    node.start(extra=["--max-connections", str(MAX_CONNS)])
    c.wait_leader()
    held = []
    try:
        for _ in range(MAX_CONNS + 2):
            held.append(socket.create_connection(("127.0.0.1", http_port(node)), timeout=5))
        # Past the limit: the API is busy, health checks still answer.
        r = node.request("GET", "/v1/status")
        assert_error(r, 503, "busy")
        assert r.headers.get("Retry-After") == "1"
        assert node.request("GET", "/health").status == 200
        r = node.request("GET", "/health/ready")
        assert r.status == 200 and r.json == {"ready": True}, r
        # On a held connection too (keep-alive).
        s = held[0]
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200 "), "health on a held connection"
        # Past the hard cap new connections are closed at once, not left
        # waiting in the listen backlog.
        extra = 100 - len(held)
        for _ in range(extra):
            held.append(socket.create_connection(("127.0.0.1", http_port(node)), timeout=5))
        closed, deadline = set(), time.monotonic() + 5.0
        while time.monotonic() < deadline and len(held) - len(closed) > HARD_CAP:
            ready, _, _ = select.select([x for x in held if x not in closed], [], [], 0.2)
            for x in ready:
                try:
                    data = x.recv(4096)
                except (ConnectionResetError, socket.timeout):
                    data = b""
                if data == b"":
                    closed.add(x)
        assert len(held) - len(closed) <= HARD_CAP, (len(held), len(closed))
        # Connections within the cap stay open (idle, not yet timed out).
        assert len(closed) <= len(held) - HARD_CAP + 2, len(closed)
        # Beyond the cap even a health check's connection is closed.
        assert http(node.url + "/health", timeout=3) is None
    finally:
        for x in held:
            x.close()
    ok = None
    for _ in range(50):
        ok = http(node.url + "/health")
        if ok is not None and ok.status == 200:
            break
        time.sleep(0.1)
    assert ok is not None and ok.status == 200, ok
    r = node.request("GET", "/v1/status")
    assert r.status == 200, r


def test_ambiguous_framing_is_refused(cluster):
    leader = cluster.wait_leader()
    head = b"PUT /v1/kv/smuggled HTTP/1.1\r\nHost: x\r\n"
    smuggled = b"PUT /v1/kv/smuggled2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nz"
    cases = [
        head + b"Content-Length: 1\r\nContent-Length: 3\r\n\r\nabc",
        head + b"Content-Length: 3\r\nContent-Length: 1\r\n\r\nabc",
        # Chunked says the body ends at once; Content-Length takes in the
        # next request: one of the two readings smuggles it.
        head + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (5 + len(smuggled)) + smuggled,
        head + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        head + b"Transfer-Encoding: gzip\r\n\r\nabc",
        head + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    ]
    for data in cases:
        answer, closed = raw_exchange(leader, data)
        answers = parse_answers(answer)
        assert len(answers) == 1 and closed, (data, answer)
        assert_json_error(answers[0], 400, "bad_request")
    for key in ("smuggled", "smuggled2"):
        assert_error(leader.get(key), 404, "not_found")
    # Sound framings still work: one length, a repeated equal one, chunked.
    for data, value in ((head + b"Content-Length: 3\r\n\r\nabc", "abc"),
                        (head + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nde", "de"),
                        (head + b"Transfer-Encoding: chunked\r\n\r\n2\r\nfg\r\n0\r\n\r\n", "fg")):
        answer, _ = raw_exchange(leader, data.replace(b"Host: x", b"Host: x\r\nConnection: close"))
        assert parse_answers(answer)[0][0] == 200, answer
        assert leader.get("smuggled").json["value"] == value


def test_server_errors_are_json(cluster):
    """Every error the server answers itself is in the JSON error shape;
    libmicrohttpd's own parse errors (docs/api.md lists them) keep its
    fixed body but close the connection."""
    leader = cluster.wait_leader()
    own = [
        (b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 300000\r\n\r\n", 413, "too_large"),
        (b"GET /v1/kv/a%00b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
        (b"PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "bad_request"),
        (b"PUT /v1/kv/k?nope=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 400, "bad_request"),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found"),
        (b"POST /v1/status HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "method_not_allowed"),
    ]
    for data, status, code in own:
        data = data.replace(b"Host: x", b"Host: x\r\nConnection: close")
        answer, _ = raw_exchange(leader, data)
        answers = parse_answers(answer)
        assert answers, (data, answer)
        assert_json_error(answers[0], status, code)
    mhd = [
        # Beyond the 32 KiB pool (HTTP_POOL_BYTES): libmicrohttpd's own.
        (b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431),
        (b"GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400),
        (b"GET /health HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    ]
    for data, status in mhd:
        answer, closed = raw_exchange(leader, data)
        answers = parse_answers(answer)
        assert answers and answers[0][0] == status and closed, (status, answer[:300])
    assert leader.request("GET", "/health").status == 200


TARGET_MAX = 8 * 1024  # CORRAL_HTTP_TARGET_BYTES_MAX in src/runtime/http.h
HEADERS_MAX = 16 * 1024  # CORRAL_HTTP_HEADER_BYTES_MAX


def header_lines(total, line=1000):
    """Header lines "X-Pn: aaa\\r\\n" of total bytes in all (line bytes each,
    the last shorter), Host and Connection included."""
    out = b"Host: x\r\nConnection: close\r\n"
    i = 0
    while len(out) < total:
        name = b"X-P%d: " % i
        left = total - len(out)
        n = max(1, min(line, left) - len(name) - 2)
        out += name + b"a" * n + b"\r\n"
        i += 1
    assert len(out) == total, (len(out), total)
    return out


def test_request_target_and_header_limits(cluster):
    """A request target over 8 KiB gets a JSON 414, header lines over
    16 KiB a JSON 431 (both too_large, the connection closed), up to
    libmicrohttpd's pool; at the limits the request is served."""
    leader = cluster.wait_leader()

    def get(target, headers):
        return raw_exchange(leader, b"GET " + target + b" HTTP/1.1\r\n" + headers + b"\r\n")

    def target(n):
        return b"/health?pad=" + b"a" * (n - len(b"/health?pad="))
    small = header_lines(60)
    answer, _ = get(target(TARGET_MAX), header_lines(HEADERS_MAX))
    assert parse_answers(answer)[0][0] == 200, answer[:300]
    for data in (target(TARGET_MAX + 1), b"/v1/kv/" + b"k" * (10 * 1024)):
        answer, closed = get(data, small)
        answers = parse_answers(answer)
        assert len(answers) == 1 and closed, answer[:300]
        assert_json_error(answers[0], 414, "too_large")
        assert "8 KiB" in json.loads(answers[0][2])["error"]["message"]
    # 80-byte lines: about 200 headers, each also indexed in the pool.
    for headers in (header_lines(HEADERS_MAX + 1), header_lines(20 * 1024),
                    header_lines(HEADERS_MAX + 1, line=80)):
        answer, closed = get(b"/health", headers)
        answers = parse_answers(answer)
        assert len(answers) == 1 and closed, (len(headers), answer[:300])
        assert_json_error(answers[0], 431, "too_large")
        assert "16 KiB" in json.loads(answers[0][2])["error"]["message"]
    # Both at once with 100 header lines (docs/api.md): at the limits
    # served, just over them ours.
    answer, _ = get(target(TARGET_MAX), header_lines(HEADERS_MAX, line=164))
    assert parse_answers(answer)[0][0] == 200, answer[:300]
    answer, _ = get(target(TARGET_MAX + 1), header_lines(HEADERS_MAX + 1, line=164))
    assert_json_error(parse_answers(answer)[0], 414, "too_large")
    # Beyond the pool: libmicrohttpd's HTML answer and a closed connection,
    # and the node serves on.
    for data, status in ((b"GET /" + b"a" * (64 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
                         (b"GET /health HTTP/1.1\r\n" + header_lines(64 * 1024) + b"\r\n", 431)):
        answer, closed = raw_exchange(leader, data)
        answers = parse_answers(answer)
        assert closed and (not answers or answers[0][0] == status), answer[:300]
    assert leader.put("after-big", "1").status == 200
    assert leader.request("GET", "/health").status == 200


def test_write_query_arguments_are_strict(cluster):
    leader = cluster.wait_leader()

    def refused(method, path, body=None, name=None, node=leader):
        r = node.request(method, path, body)
        assert_error(r, 400, "bad_request")
        if name is not None:
            assert f'"{name}"' in r.json["error"]["message"], r

    refused("PUT", "/v1/kv/q?ttl=5", "v", "ttl")
    refused("PUT", "/v1/kv/q?cas=0&cas=0", "v", "cas")
    refused("PUT", "/v1/kv/q?cas=0&stale=1", "v", "stale")
    refused("DELETE", "/v1/kv/q?force=1", None, "force")
    assert_error(leader.get("q"), 404, "not_found")
    # A follower refuses too, rather than redirecting.
    refused("PUT", "/v1/kv/q?ttl=5", "v", "ttl", node=cluster.followers(leader)[0])
    assert leader.request("PUT", "/v1/kv/q?cas=0", "v").status == 200
    # stale takes only "", 1 or true.
    for bad in ("yes", "0", "false", "2"):
        refused("GET", f"/v1/kv/q?stale={bad}", None)
        refused("GET", f"/v1/kv/?stale={bad}", None)
    for good in ("", "1", "true"):
        assert leader.request("GET", f"/v1/kv/q?stale={good}").status == 200
        assert leader.request("GET", f"/v1/kv/?stale={good}").status == 200
    assert leader.request("GET", "/v1/kv/q?stale").status == 200
    # Members: PUT and the POSTs take none, DELETE wait and force.
    body = json.dumps({"addr": "127.0.0.1:9"})
    refused("PUT", "/v1/members/w1?force=1", body, "force")
    assert leader.request("PUT", "/v1/members/w1", body).status == 200
    refused("POST", "/v1/members/w1/heartbeat?index=1", "{}", "index")
    refused("POST", "/v1/members/w1/drain?wait=1s", "", "wait")
    refused("POST", "/v1/members/w1/activate?x", "", "x")
    refused("DELETE", "/v1/members/w1?wait=1s&wait=2s", None, "wait")
    refused("DELETE", "/v1/members/w1?force=1&force=1", None, "force")
    refused("DELETE", "/v1/members/w1?purge=1", None, "purge")
    refused("DELETE", "/v1/members/w1?force=yes", None, "force")
    assert leader.request("GET", "/v1/members/w1").json["status"] == "active"
    # Resources: PUT takes force, DELETE none.
    rbody = json.dumps({"partitions": 2, "replicas": 1})
    refused("PUT", "/v1/resources/r?replicas=3", rbody, "replicas")
    refused("PUT", "/v1/resources/r?force=1&force=1", rbody, "force")
    refused("PUT", "/v1/resources/r?force=no", rbody, "force")
    assert leader.request("PUT", "/v1/resources/r?force=1", rbody).status == 200
    refused("DELETE", "/v1/resources/r?force=1", None, "force")
    assert leader.request("GET", "/v1/resources/r").status == 200
    assert leader.request("DELETE", "/v1/resources/r").status == 200
    assert leader.request("DELETE", "/v1/members/w1?wait=5s&force=1").status == 200



NUL_KEYS = ("acct\0shadow", "acct\0", "\0acct")


def made_acct(cluster):
    """The leader and acct's version, acct written as "real"."""
    leader = cluster.wait_leader()
    made = leader.put("acct", "real")
    assert made.status == 200, made
    return leader, made.json["version"]


def acct_unchanged(node, version):
    r = node.get("acct")
    assert r.status == 200 and r.json["value"] == "real" and r.json["version"] == version, r


# A decoded %00 must not cut a key short: "acct%00shadow" is not "acct".
def test_nul_in_key_put_is_refused(cluster):
    leader, version = made_acct(cluster)
    for key in NUL_KEYS:
        assert_error(leader.put(key, "forged"), 400, "bad_request")
        acct_unchanged(leader, version)
        assert_error(leader.put(key, "forged", cas=version), 400, "bad_request")
        acct_unchanged(leader, version)
    # A follower refuses too, rather than redirecting the cut-short key.
    follower = cluster.followers(leader)[0]
    assert_error(follower.put("acct\0shadow", "forged", follow=False), 400, "bad_request")
    acct_unchanged(leader, version)
    # A NUL in a query value (cas=N%00) is refused as well.
    r = leader.request("PUT", kv_path("acct") + "?cas=%d%%00" % version, "forged")
    assert_error(r, 400, "bad_request")
    acct_unchanged(leader, version)
    # Other escapes still decode.
    odd = leader.put("acct%x y/\u00e9", "fine")
    assert odd.status == 200 and odd.json["key"] == "acct%x y/\u00e9", odd
    assert leader.get("acct%x y/\u00e9").json["value"] == "fine"


def test_nul_in_key_get_is_refused(cluster):
    leader, version = made_acct(cluster)
    for key in NUL_KEYS:
        assert_error(leader.get(key), 400, "bad_request")
        assert_error(leader.get(key, stale=True), 400, "bad_request")
        acct_unchanged(leader, version)


def test_nul_in_key_delete_is_refused(cluster):
    leader, version = made_acct(cluster)
    for key in NUL_KEYS:
        assert_error(leader.delete(key), 400, "bad_request")
        acct_unchanged(leader, version)
        assert_error(leader.delete(key, cas=version), 400, "bad_request")
        acct_unchanged(leader, version)
    follower = cluster.followers(leader)[0]
    assert_error(follower.delete("acct\0x", follow=False), 400, "bad_request")
    acct_unchanged(leader, version)


def test_nul_in_listing_prefix_or_after_is_refused(cluster):
    leader = cluster.wait_leader()
    for k in ("acct", "acct/a", "acct/b"):
        assert leader.put(k, "v").status == 200
    ok = leader.request("GET", "/v1/kv/?prefix=acct%2F&after=acct%2Fa")
    assert ok.status == 200 and [it["key"] for it in ok.json["items"]] == ["acct/b"], ok
    for query in ("prefix=acct%00zzz", "prefix=%00", "after=acct%00", "after=%00",
                  "prefix=acct&after=acct%2Fa%00", "prefix=acct&stale=1&after=%00"):
        assert_error(leader.request("GET", "/v1/kv/?" + query), 400, "bad_request")
    # Nor does a NUL cut another route's path short.
    assert_error(leader.request("GET", "/health%00x"), 400, "bad_request")


def raw_request(node, data):
    """Sends data as is on a new connection; the status of the answer."""
    host, port = node.url.split("//")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(data)
        answer = b""
        while b"\r\n" not in answer:
            chunk = s.recv(4096)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ")[1]) if answer.startswith(b"HTTP/") else None


def test_raw_nul_byte_in_request_line_is_refused(cluster):
    # MHD takes a raw NUL in the request line; the key must not end there.
    leader, version = made_acct(cluster)
    for line in (b"PUT /v1/kv/acct\0shadow HTTP/1.1", b"PUT /v1/kv/acct\0HTTP/1.1 HTTP/1.1",
                 b"DELETE /v1/kv/acct\0x HTTP/1.1", b"GET /v1/kv/?prefix=acct\0x HTTP/1.1"):
        req = line + b"\r\nHost: x\r\nContent-Length: 6\r\nConnection: close\r\n\r\nforged"
        assert raw_request(leader, req) == 400, line
        acct_unchanged(leader, version)


def test_follower_with_a_frozen_leader_answers_no_leader(cluster):
    """A follower that names a leader it has not heard from for over an
    election timeout (here: the leader and the other follower frozen, so
    no new leader can be elected) answers 503 no_leader with Retry-After
    instead of a 307 that would send clients to the frozen node."""
    leader = cluster.wait_leader()
    a, b = cluster.followers(leader)
    # While the leader is heard, a write at a follower is redirected.
    r = http(a.url + kv_path("k"), "PUT", b"v")
    assert r.status == 307, r
    leader.pause()
    b.pause()
    try:
        import time
        # Past the base election timeout (its randomized timer, up to twice
        # that, may not have fired yet: it still names the frozen leader),
        # then well past it (it has given the leader up).
        for wait in (1.1, 3.0):
            time.sleep(wait * ELECTION_TIMEOUT_MS / 1000.0)
            r = http(a.url + kv_path("k"), "PUT", b"v")
            assert_error(r, 503, "no_leader")
            assert r.headers.get("Retry-After") == "1", r.headers
        # Reads that need the leader fail the same way or time out; a stale
        # read still answers from the local copy.
        r = http(a.url + kv_path("k", {"stale": "1"}))
        assert r.status in (200, 404), r
    finally:
        leader.resume()
        b.resume()
    cluster.wait_leader()
