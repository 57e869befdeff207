"""Authentication (issue 13): a cluster token in --token-file. Peers prove
it in the transport handshake; HTTP writes (and with --auth-reads, reads but
/health) need it as a bearer token; the CLI and `corral agent` send it from
their own --token-file (or $CORRAL_TOKEN_FILE)."""
import json
import os
import subprocess
import time

from harness import CORRAL_BIN, EXIT_WAIT_S, kv_path, run_corral, wait_until

TOKEN = "s3cret-cluster-token-0123456789abcdef"
OTHER = "another-token-0123456789abcdefghij"


def token_file(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text + "\n")
    os.chmod(p, 0o600)
    return str(p)


def start_authed(cluster, path, extra=(), nodes=None):
    for n in nodes or cluster.nodes:
        n.headers = {"Authorization": f"Bearer {TOKEN}"}
        n.start(extra=("--token-file", path, *extra))
    return cluster


def bearer(tok):
    return {"Authorization": f"Bearer {tok}"}


def test_token_cluster_writes_redirects_cli_agent(make_cluster, tmp_path):
    c = make_cluster()
    tok = token_file(tmp_path, "token", TOKEN)
    start_authed(c, tok)
    leader = c.wait_leader()
    follower = c.followers(leader)[0]
    # A write through a follower: its 307 and the leader both need the token.
    r = follower.put("a", "1")
    assert r is not None and r.status == 200, r
    # Without a token, or with a wrong one: 401 everywhere, nothing changes.
    for node in (leader, follower):
        for hdr in ({}, bearer(OTHER), {"Authorization": TOKEN},
                    {"Authorization": f"Bearer {TOKEN}x"}):
            r = node.request("PUT", kv_path("a"), "2", headers=hdr)
            assert r.status == 401 and r.code == "unauthorized", (hdr, r)
            assert r.headers.get("WWW-Authenticate") == "Bearer", r.headers
            assert "leader" not in r.body.decode(), r  # a follower's 401 says nothing more
            r = node.request("DELETE", kv_path("a"), headers=hdr)
            assert r.status == 401, r
            r = node.request("PUT", "/v1/members/w9", json.dumps({"addr": "h:1"}), headers=hdr)
            assert r.status == 401, r
            r = node.request("POST", "/v1/members/w9/heartbeat", "{}", headers=hdr)
            assert r.status == 401, r
            r = node.request("PUT", "/v1/resources/r9", json.dumps({"partitions": 4}),
                             headers=hdr)
            assert r.status == 401, r
            r = node.request("POST", f"/v1/leader/transfer?to={follower.id}", "",
                             headers=hdr)
            assert r.status == 401, r
            # A route that does not exist is still behind the rule (by method).
            r = node.request("POST", "/v1/nothing-here", "", headers=hdr)
            assert r.status == 401, r
    assert c.wait_leader() is leader  # no transfer happened
    r = leader.get("a")
    assert r.status == 200 and r.json["value"] == "1", r
    assert leader.request("GET", "/v1/members/w9").status == 404
    # Reads stay open without --auth-reads (a linearizable read: a stale
    # one on a follower may run before it applied the write).
    r = follower.request("GET", kv_path("a"), headers={})
    assert r.status == 200, r
    assert follower.request("GET", "/metrics", headers={}).status == 200
    # The CLI: without the token 401 (exit 1), with --token-file or the env var OK,
    # through a follower's redirect.
    rc, out, err = run_corral(["kv", "put", "b", "x", "--endpoints", follower.url])
    assert rc != 0 and "unauthorized" in err, (rc, out, err)
    rc, out, err = run_corral(["kv", "put", "b", "x", "--endpoints", follower.url,
                               "--token-file", tok])
    assert rc == 0 and out.startswith("OK version"), (rc, out, err)
    env = dict(os.environ, CORRAL_TOKEN_FILE=tok)
    p = subprocess.run([CORRAL_BIN, "kv", "put", "b", "y", "--endpoints", follower.url],
                       capture_output=True, timeout=60, env=env)
    assert p.returncode == 0, p
    rc, out, err = run_corral(["kv", "get", "b", "--endpoints", leader.url])
    assert (rc, out) == (0, "y\n"), err
    rc, out, err = run_corral(["kv", "put", "b", "z", "--endpoints", follower.url,
                               "--token-file", str(tmp_path / "missing")])
    assert rc == 2 and "token" in err, (rc, err)
    # An agent with the token registers and heartbeats (through any node).
    log = open(tmp_path / "agent.log", "ab")
    coords = ",".join(n.http_addr for n in c.nodes)
    agent = subprocess.Popen([CORRAL_BIN, "agent", "--name", "w1", "--coordinators", coords,
                              "--token-file", tok], stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT)
    c.started_pids.append(agent.pid)
    try:
        def beating():
            # The current leader's view: heartbeat ages are the leader's.
            r = c.wait_leader().request("GET", "/v1/members/w1")
            return r is not None and r.status == 200 and \
                r.json.get("heartbeat_age_ms") is not None and \
                r.json["heartbeat_age_ms"] < 2000 and r.json
        wait_until("the agent heartbeating", beating, 20)
    finally:
        agent.terminate()
        try:
            agent.wait(timeout=EXIT_WAIT_S + 60)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        log.close()


def test_auth_reads_and_health(make_cluster, tmp_path):
    c = make_cluster()
    tok = token_file(tmp_path, "token", TOKEN)
    start_authed(c, tok, extra=("--auth-reads",))
    leader = c.wait_leader()
    assert leader.put("k", "v").status == 200
    for path in ("/health", "/health/ready"):
        r = leader.request("GET", path, headers={})
        assert r.status in (200, 503) and r.status != 401, (path, r)
    assert leader.request("GET", "/health", headers={}).status == 200
    for path in (kv_path("k"), "/v1/status", "/metrics", "/v1/members"):
        r = leader.request("GET", path, headers={})
        assert r.status == 401 and r.code == "unauthorized", (path, r)
        r = leader.request("GET", path, headers=bearer(OTHER))
        assert r.status == 401, (path, r)
        assert leader.request("GET", path).status == 200, path
    rc, out, err = run_corral(["kv", "get", "k", "--endpoints", leader.url])
    assert rc != 0 and "unauthorized" in err, (rc, err)
    rc, out, err = run_corral(["kv", "get", "k", "--endpoints", leader.url, "--token-file", tok])
    assert (rc, out) == (0, "v\n"), err


def wait_log(node, text, timeout=20):
    return wait_until(f"node {node.id} to log {text!r}", lambda: text in node.output(), timeout)


REFUSED_BOUND_S = 10  # REFUSED_EXIT_MS in src/runtime/node_impl.h


def assert_stops_for_token(bad, good, t0, why):
    """bad exits with 1 after about REFUSED_BOUND_S, naming every good node
    and the fix."""
    rc = bad.wait_exit(timeout=REFUSED_BOUND_S + 15)
    took = time.monotonic() - t0
    out = bad.output()
    assert rc == 1, (rc, out[-3000:])
    assert took >= REFUSED_BOUND_S - 1, (took, out[-3000:])
    assert "every peer refuses this node because no cluster token of ours matches" in out, \
        out[-3000:]
    assert "--token-file" in out, out[-3000:]
    for m in good:
        assert f"node {m.id} at {m.cluster_addr} ({why})" in out, out[-3000:]


def test_other_token_is_refused(make_cluster, tmp_path):
    c = make_cluster()
    tok = token_file(tmp_path, "token", TOKEN)
    start_authed(c, tok, nodes=c.nodes[:2])
    c.wait_leader(nodes=c.nodes[:2])
    bad = c.nodes[2]
    t0 = time.monotonic()
    bad.start(extra=("--token-file", token_file(tmp_path, "other", OTHER)))
    bad.headers = bearer(OTHER)
    # The outsider sees every peer refuse it. (The peers' own lines about
    # it are rate-limited per address: they had logged their failed dials
    # to it before it started, so they may stay silent now.)
    wait_log(bad, "failed to prove the cluster token")
    time.sleep(0.5)
    st = bad.status()
    assert st is not None and (st.get("leader") or {}).get("id") is None, st
    # The two good nodes keep serving; the outsider has no leader.
    leader = c.wait_leader(nodes=c.nodes[:2])
    assert leader.put("x", "1").status == 200
    r = bad.put("x", "2", follow=False)
    assert r is None or r.status != 200, r
    assert leader.get("x").json["value"] == "1"
    # Every peer refuses it for 10 s: it stops, and says what to fix.
    assert_stops_for_token(bad, c.nodes[:2], t0, "it proves a token that is none of ours")
    assert c.wait_leader(nodes=c.nodes[:2]).put("x", "3").status == 200


def test_no_token_node_cannot_join(make_cluster, tmp_path):
    c = make_cluster()
    tok = token_file(tmp_path, "token", TOKEN)
    start_authed(c, tok, nodes=c.nodes[:2])
    c.wait_leader(nodes=c.nodes[:2])
    open_node = c.nodes[2]
    open_node.headers = {}
    t0 = time.monotonic()
    open_node.start()
    wait_log(open_node, "the cluster is OPEN")
    wait_log(open_node, "no cluster token")
    time.sleep(0.5)  # the peers' lines may be rate-limited, as above
    st = open_node.status()
    assert st is not None and (st.get("leader") or {}).get("id") is None, st
    assert_stops_for_token(open_node, c.nodes[:2], t0, "it requires a token and we have none")


def test_token_node_in_open_cluster_stops(make_cluster, tmp_path):
    c = make_cluster()
    for n in c.nodes[:2]:
        n.headers = {}
        n.start()
    c.wait_leader(nodes=c.nodes[:2])
    authed = c.nodes[2]
    authed.headers = bearer(TOKEN)
    t0 = time.monotonic()
    authed.start(extra=("--token-file", token_file(tmp_path, "token", TOKEN)))
    assert_stops_for_token(authed, c.nodes[:2], t0, "it has no token and we have one")
    assert "this node has one" in authed.output()
    assert c.wait_leader(nodes=c.nodes[:2]).put("k", "v").status == 200


def test_rotation_skipped_node_keeps_running(make_cluster, tmp_path):
    """A rotation done wrong: nodes 1 and 2 prove "next" (step 2), node 3
    still has only "current" (step 1 skipped). Node 3 refuses their proofs
    both ways and never joins; but they accept its token (their dials send
    their proof only after checking its), so it shares one with them and
    must not stop: the fix is its token file, and it joins once restarted
    with it."""
    c = make_cluster()
    step2 = token_file(tmp_path, "step2", OTHER + "\n" + TOKEN)
    for n in c.nodes[:2]:
        n.headers = bearer(OTHER)
        n.start(extra=("--token-file", step2))
    c.wait_leader(nodes=c.nodes[:2])
    skipped = c.nodes[2]
    skipped.headers = bearer(TOKEN)
    skipped.start(extra=("--token-file", token_file(tmp_path, "current", TOKEN)))
    wait_log(skipped, "failed to prove the cluster token")
    time.sleep(REFUSED_BOUND_S + 3)
    assert skipped.alive(), skipped.output()[-3000:]
    assert "every peer refuses" not in skipped.output()
    st = skipped.status()
    assert st is not None and (st.get("leader") or {}).get("id") is None, st
    skipped.restart(extra=("--token-file", step2))
    skipped.headers = bearer(OTHER)
    leader = c.wait_leader()
    assert leader.put("joined", "1").status == 200
    def read_on_3():
        r = skipped.get("joined")
        return r is not None and r.status == 200 and r.json["value"] == "1"
    wait_until("node 3 to read the write", read_on_3, 20)


def test_token_file_checks(tmp_path):
    short = token_file(tmp_path, "short", "tooshort")
    rc, out, err = run_corral(["server", "run", "--token-file", short,
                               "--data-dir", str(tmp_path / "d")])
    assert rc == 2 and "16" in err, (rc, err)
    rc, out, err = run_corral(["server", "run", "--token-file", str(tmp_path / "none"),
                               "--data-dir", str(tmp_path / "d")])
    assert rc == 2 and "token" in err, (rc, err)
    rc, out, err = run_corral(["server", "run", "--auth-reads", "--data-dir", str(tmp_path / "d")])
    assert rc == 2 and "--token-file" in err, (rc, err)
    assert not os.path.exists(tmp_path / "d")


def test_loose_token_file_warns_and_open_cluster_warns(make_cluster, tmp_path):
    c = make_cluster(size=1)
    n = c.nodes[0]
    loose = tmp_path / "loose"
    loose.write_text(TOKEN + "\n")
    os.chmod(loose, 0o644)
    n.headers = bearer(TOKEN)
    n.start(peers=n.cluster_addr, extra=("--token-file", str(loose)))
    wait_log(n, "readable by group or other")
    c.wait_leader()
    assert "the cluster is OPEN" not in n.output()


def test_two_line_token_file_and_config_key(make_cluster, tmp_path):
    """A rotation's middle step: nodes with "current, next" and "next, current"
    files (the latter given by the config file) form one cluster; HTTP takes
    either token."""
    c = make_cluster()
    a = token_file(tmp_path, "a", TOKEN + "\n" + OTHER)
    b = token_file(tmp_path, "b", OTHER + "\n" + TOKEN)
    conf = tmp_path / "n3.ini"
    conf.write_text(f"token-file = {b}\n")
    for n in c.nodes[:2]:
        n.headers = bearer(TOKEN)
        n.start(extra=("--token-file", a))
    c.nodes[2].headers = bearer(OTHER)
    c.nodes[2].start(extra=("--config", str(conf)))
    leader = c.wait_leader()
    for tok in (TOKEN, OTHER):
        r = leader.request("PUT", kv_path("r"), tok, headers=bearer(tok))
        assert r.status == 200, (tok, r)
    r = leader.request("PUT", kv_path("r"), "no", headers=bearer("x" * 20))
    assert r.status == 401, r
    assert leader.get("r").json["value"] == OTHER
