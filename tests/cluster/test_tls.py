"""TLS on the HTTP API (docs/operations.md, "Security: TLS"): a throwaway
CA, server and client certificates made with the openssl command in
tmp_path; a 3-node cluster served over https (the CLI with --cacert,
redirects that stay https, plain http refused, a client without the CA
failing verification, an agent that registers and heartbeats), and a node
run with --tls-ca that refuses clients without a certificate it signed."""
import os
import shutil
import signal
import ssl
import subprocess
import urllib.request

import pytest

import harness
from harness import CORRAL_BIN, EXIT_WAIT_S, kv_path, run_corral, wait_until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="needs the openssl command (scripts/deps.sh)")


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture
def pki(tmp_path):
    """ca.pem, server.pem/.key (SAN IP:127.0.0.1), client.pem/.key, and a
    second CA (other-ca.pem) that signed nothing here."""
    d = tmp_path / "pki"
    d.mkdir()
    p = {k: str(d / k) for k in ("ca.pem", "ca.key", "server.pem", "server.key", "server.csr",
                                 "client.pem", "client.key", "client.csr", "other-ca.pem",
                                 "other-ca.key", "server.ext", "client.ext")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl("req", "-x509", *ec, "-keyout", p["ca.key"], "-out", p["ca.pem"], "-days", "2",
            "-subj", "/CN=corral-test-ca")
    openssl("req", "-x509", *ec, "-keyout", p["other-ca.key"], "-out", p["other-ca.pem"],
            "-days", "2", "-subj", "/CN=corral-other-ca")
    with open(p["server.ext"], "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\n")
    with open(p["client.ext"], "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        openssl("req", *ec, "-keyout", p[f"{who}.key"], "-out", p[f"{who}.csr"],
                "-subj", f"/CN=corral-test-{who}")
        openssl("x509", "-req", "-in", p[f"{who}.csr"], "-CA", p["ca.pem"], "-CAkey", p["ca.key"],
                "-CAcreateserial", "-out", p[f"{who}.pem"], "-days", "2",
                "-extfile", p[f"{who}.ext"])
    return p


def use_tls(monkeypatch, pki, client_cert=False):
    """The harness's HTTP (urllib) trusts the test CA (and presents the
    client certificate); redirects are still not followed."""
    ctx = ssl.create_default_context(cafile=pki["ca.pem"])
    if client_cert:
        ctx.load_cert_chain(pki["client.pem"], pki["client.key"])
    opener = urllib.request.build_opener(harness.NoRedirect,
                                         urllib.request.HTTPSHandler(context=ctx))
    monkeypatch.setattr(harness, "OPENER", opener)


def tls_start(cluster, pki, ca=False):
    extra = ["--tls-cert", pki["server.pem"], "--tls-key", pki["server.key"]]
    if ca:
        extra += ["--tls-ca", pki["ca.pem"]]
    for n in cluster.nodes:
        n.url = f"https://{n.http_addr}"
        n.start(extra=extra)
    return cluster


def no_cacert_env():
    env = dict(os.environ)
    env.pop("CORRAL_CACERT", None)
    return env


def test_tls_cluster(make_cluster, pki, monkeypatch, tmp_path):
    use_tls(monkeypatch, pki)
    c = tls_start(make_cluster(3), pki)
    leader = c.wait_leader()
    follower = c.followers(leader)[0]
    eps = f"https://{follower.http_addr}"

    # The CLI over https, through a follower: its 307 names an https leader.
    rc, out, err = run_corral(["kv", "put", "tls/a", "one", "--endpoints", eps,
                               "--cacert", pki["ca.pem"]])
    assert rc == 0, err
    rc, out, err = run_corral(["kv", "get", "tls/a", "--endpoints", eps,
                               "--cacert", pki["ca.pem"]])
    assert rc == 0 and out.strip() == "one", (out, err)
    env = dict(os.environ, CORRAL_CACERT=pki["ca.pem"])
    p = subprocess.run([CORRAL_BIN, "kv", "get", "tls/a", "--endpoints", eps],
                       capture_output=True, timeout=60, env=env)
    assert p.returncode == 0 and p.stdout.decode().strip() == "one", p.stderr

    # Redirects stay https: Location and the error's leader.
    r = follower.put("tls/b", "two", follow=False)
    assert r is not None and r.status == 307, r
    assert r.headers["Location"].startswith(f"https://{leader.http_addr}/"), r.headers["Location"]
    assert r.json["error"]["leader"] == f"https://{leader.http_addr}"
    r = follower.put("tls/b", "two")
    assert r is not None and r.status == 200, r
    assert leader.request("GET", "/health").status == 200

    # Plain http to the TLS port gets no HTTP answer.
    assert harness.http(f"http://{leader.http_addr}/health", timeout=3) is None
    rc, out, err = run_corral(["kv", "get", "tls/a", "--endpoints", f"http://{leader.http_addr}",
                               "--timeout-ms", "1500"])
    assert rc != 0 and "https://" in err, err

    # Without the CA the server's certificate does not verify: a clear
    # message, at once (not retried until the deadline).
    p = subprocess.run([CORRAL_BIN, "kv", "get", "tls/a", "--endpoints", eps],
                       capture_output=True, timeout=60, env=no_cacert_env())
    err = p.stderr.decode()
    assert p.returncode == 1 and "did not verify" in err and "--cacert" in err, err
    p = subprocess.run([CORRAL_BIN, "kv", "get", "tls/a", "--endpoints", eps,
                        "--cacert", pki["other-ca.pem"]], capture_output=True, timeout=60)
    assert p.returncode == 1 and "did not verify" in p.stderr.decode(), p.stderr

    # An agent over https registers and heartbeats: the member is active.
    coords = ",".join(f"https://{n.http_addr}" for n in c.nodes)
    with open(tmp_path / "agent.log", "ab") as log:
        agent = subprocess.Popen([CORRAL_BIN, "agent", "--name", "w1", "--coordinators", coords,
                                  "--addr", "127.0.0.1:7000", "--cacert", pki["ca.pem"]],
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 env=no_cacert_env())
    c.started_pids.append(agent.pid)
    try:
        def active():
            # The leader's view (heartbeat_age_ms is the leader's own); on
            # a loaded machine leadership may have moved since the start.
            r = c.wait_leader().request("GET", "/v1/members/w1")
            return r is not None and r.status == 200 and r.json.get("status") == "active" and \
                r.json.get("heartbeat_age_ms") is not None and r.json
        wait_until("agent w1 active over https", active, 20)
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(timeout=EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait(timeout=EXIT_WAIT_S)


def test_tls_client_certificates(make_cluster, pki, monkeypatch):
    use_tls(monkeypatch, pki, client_cert=True)
    c = tls_start(make_cluster(1), pki, ca=True)
    node = c.wait_leader()
    eps = ["--endpoints", f"https://{node.http_addr}", "--cacert", pki["ca.pem"]]

    # No client certificate: 401 in the error shape, every path.
    rc, out, err = run_corral(["kv", "put", "k", "v", *eps])
    assert rc == 1 and "unauthenticated" in err and "client certificate" in err, err
    use_tls(monkeypatch, pki, client_cert=False)
    r = node.request("GET", "/health")
    assert r is not None and r.status == 401 and r.code == "unauthenticated", r

    # With one the CA signed: served.
    use_tls(monkeypatch, pki, client_cert=True)
    rc, out, err = run_corral(["kv", "put", "k", "v", *eps, "--cert", pki["client.pem"],
                               "--key", pki["client.key"]])
    assert rc == 0, err
    rc, out, err = run_corral(["kv", "get", "k", *eps, "--cert", pki["client.pem"],
                               "--key", pki["client.key"]])
    assert rc == 0 and out.strip() == "v", (out, err)
    assert node.request("GET", kv_path("k")).status == 200

    # --cert without --key is a usage error.
    rc, out, err = run_corral(["kv", "get", "k", *eps, "--cert", pki["client.pem"]])
    assert rc == 2 and "--key" in err, err


def test_tls_bad_flags(tmp_path, pki):
    data = str(tmp_path / "data")
    base = ["server", "run", "--data-dir", data, "--http-addr", "127.0.0.1:1",
            "--cluster-addr", "127.0.0.1:2"]
    cases = [
        (["--tls-cert", pki["server.pem"]], "--tls-key"),
        (["--tls-key", pki["server.key"]], "--tls-cert"),
        (["--tls-cert", pki["server.pem"], "--tls-key", str(tmp_path / "missing.key")],
         "cannot read"),
        (["--tls-cert", pki["server.pem"], "--tls-key", pki["client.key"]], "do not match"),
        (["--tls-cert", pki["server.ext"], "--tls-key", pki["server.key"]], "not a PEM file"),
        (["--tls-cert", pki["server.pem"], "--tls-key", pki["server.key"],
          "--tls-ca", pki["server.key"]], "no PEM certificate"),
    ]
    for extra, what in cases:
        rc, out, err = run_corral([*base, *extra], timeout=20)
        assert rc == 2 and what in err, (extra, rc, err)
        assert not os.path.exists(data), extra


def test_tls_join_and_leave(tmp_path, pki, monkeypatch):
    """A coordinator joins a TLS cluster whose nodes ask for client
    certificates: its --join entries default to https, --cacert verifies
    the others, and its own --tls-cert is its client certificate; its
    --leave-on-stop goes over https too. Without the CA the join fails at
    once, naming --cacert, and writes nothing."""
    from test_membership import Group, leader_of, roles, wait_roles
    use_tls(monkeypatch, pki, client_cert=True)
    tls = ["--tls-cert", pki["server.pem"], "--tls-key", pki["server.key"],
           "--tls-ca", pki["ca.pem"]]
    g = Group(tmp_path)
    try:
        a = g.add("a", extra=tls)
        a.url = f"https://{a.http_addr}"
        a.start()
        wait_roles(g, {"a": "voter"})
        # Three voters: a follower leaves after its stop, which needs a
        # quorum without it.
        for name in ("b", "d"):
            x = g.add(name, join=[a], extra=[*tls, "--cacert", pki["ca.pem"], "--leave-on-stop"])
            x.url = f"https://{x.http_addr}"
            x.env = no_cacert_env()
            x.start()
            wait_roles(g, {n: "voter" for n in g.coords})
            assert "joined cluster" in x.output(), x.output()

        # No CA for the others' certificates: refused at once, nothing written.
        c = g.add("c", join=[a], extra=tls)
        c.env = no_cacert_env()
        c.start()
        assert c.wait_exit(timeout=20) == 1, c.output()
        assert "did not verify" in c.output() and "--cacert" in c.output(), c.output()
        assert not os.path.exists(c.data_dir) or os.listdir(c.data_dir) == []
        del g.coords["c"]

        # A bad --cacert is a usage error before anything else.
        rc, out, err = run_corral(["server", "run", "--data-dir", str(tmp_path / "bad-cacert"),
                                   "--cacert", pki["server.ext"]], timeout=20)
        assert rc == 2 and "--cacert" in err and "not a PEM file" in err, err
        assert not os.path.exists(tmp_path / "bad-cacert")

        # A follower that joined leaves over https on SIGTERM.
        lead = leader_of(g)
        follower = next(g.coords[n] for n in ("b", "d") if g.coords[n] is not lead)
        assert follower.terminate() == 0
        assert "left the cluster" in follower.output(), follower.output()
        del g.coords[follower.name]
        wait_roles(g, {n: "voter" for n in g.coords})
        assert follower.name not in roles(a)
    finally:
        g.stop_all()
