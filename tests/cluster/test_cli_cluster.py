"""`corral status` and `corral kv` against a real cluster: output, --json,
exit codes (0 ok, 1 failure, 2 usage, 3 not found, 4 cas failed),
writes sent to a follower reaching the leader through its 307, binary
values, and a write during an election retried until it lands."""
import base64
import json
import subprocess
import time

from harness import CORRAL_BIN, ELECTION_TIMEOUT_MS, run_corral


def kv(node, *args, stdin=None):
    return run_corral(["kv", *args, "--endpoints", node.url], stdin=stdin)


def test_cli_kv_round_trip_through_a_follower(cluster):
    leader = cluster.wait_leader()
    follower = cluster.followers(leader)[0]
    rc, out, err = kv(follower, "put", "app/name", "corral")
    assert rc == 0 and out.startswith("OK version "), (rc, out, err)
    version = int(out.split()[-1])
    rc, out, err = kv(leader, "get", "app/name")
    assert (rc, out) == (0, "corral\n"), err
    rc, out, err = kv(follower, "get", "app/name", "--json")
    obj = json.loads(out)
    assert rc == 0 and obj == {"key": "app/name", "value": "corral", "version": version}
    rc, out, err = kv(follower, "put", "app/blob", "-", stdin=b"two\nlines\n")
    assert rc == 0, err
    rc, out, err = kv(leader, "get", "app/blob", "--raw")
    assert (rc, out) == (0, "two\nlines\n"), err
    rc, out, err = kv(follower, "get", "app/name", "--stale", "-v")
    assert rc == 0 and out == f"corral\nversion {version}\n", (out, err)


def test_cli_kv_exit_codes(cluster):
    leader = cluster.wait_leader()
    follower = cluster.followers(leader)[0]
    rc, out, err = kv(follower, "get", "nope")
    assert rc == 3 and "not_found" in err, (rc, err)
    rc, out, err = kv(follower, "get", "nope", "--json")
    assert rc == 3 and json.loads(out)["error"]["code"] == "not_found", (rc, out)
    rc, out, err = kv(leader, "put", "c", "1", "--cas", "0")
    assert rc == 0, err
    version = int(out.split()[-1])
    rc, out, err = kv(follower, "put", "c", "2", "--cas", "0")
    assert rc == 4 and f"current version {version}" in err, (rc, err)
    rc, out, err = kv(follower, "put", "c", "2", "--cas", str(version), "--json")
    assert rc == 0 and json.loads(out)["version"] > version, (rc, out, err)
    rc, out, err = kv(follower, "del", "c", "--cas", str(version))
    assert rc == 4, (rc, err)
    rc, out, err = kv(follower, "del", "c")
    assert rc == 0 and out.startswith("OK deleted version "), (rc, out, err)
    rc, out, err = kv(leader, "get", "c")
    assert rc == 3, (rc, out, err)
    rc, out, err = kv(leader, "get")
    assert rc == 2 and out == "", (rc, err)
    rc, out, err = run_corral(["status", "--endpoints", "127.0.0.1:1", "--timeout-ms", "2000"])
    assert rc == 1 and "127.0.0.1:1" in err, (rc, err)


def test_cli_kv_ls_pages(cluster):
    leader = cluster.wait_leader()
    for i in range(150):
        assert leader.put(f"ls/{i:03d}", f"v{i}").status == 200
    assert leader.put("other", "x").status == 200
    follower = cluster.followers(leader)[0]
    rc, out, err = kv(follower, "ls", "ls/", "--all")
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 150, (rc, len(lines), err)
    assert lines[0] == "ls/000\tv0" and lines[-1] == "ls/149\tv149"
    rc, out, err = kv(follower, "ls", "ls/", "--limit", "120")
    assert rc == 0 and len(out.splitlines()) == 120 and "more keys" in err, (rc, err)
    rc, out, err = kv(leader, "ls", "--all", "--json")
    obj = json.loads(out)
    assert rc == 0 and obj["more"] is False and len(obj["items"]) == 151, (rc, err)


def test_cli_kv_binary_values(cluster):
    """Values are bytes: put - sends stdin exactly, get --raw gives it
    back, get and ls print it escaped, --json as the server sent it."""
    leader = cluster.wait_leader()
    follower = cluster.followers(leader)[0]

    def raw_get(node, key):
        p = subprocess.run([CORRAL_BIN, "kv", "get", key, "--raw", "--endpoints", node.url],
                           capture_output=True, timeout=60)
        return p.returncode, p.stdout

    every = bytes(range(256)) * 64  # 16 KiB, every byte value, NUL and 0xff included
    rc, out, err = kv(follower, "put", "bin/every", "-", stdin=every)
    assert rc == 0, (rc, out, err)
    assert raw_get(leader, "bin/every") == (0, every)
    assert raw_get(follower, "bin/every") == (0, every)
    blob = b"\x00\xff b\\ \n\xe2\x82\xac\xc3\x7f"
    rc, out, err = kv(leader, "put", "bin/k", "-", stdin=blob)
    assert rc == 0, (rc, out, err)
    version = int(out.split()[-1])
    assert raw_get(follower, "bin/k") == (0, blob)
    escaped = "\\x00\\xff b\\\\ \\n\u20ac\\xc3\\x7f"
    rc, out, err = kv(follower, "get", "bin/k", "-v")
    assert (rc, out) == (0, f"{escaped}\nversion {version}\n"), (rc, out, err)
    rc, out, err = kv(leader, "ls", "bin/k")
    assert (rc, out) == (0, f"bin/k\t{escaped}\n"), (rc, out, err)
    rc, out, err = kv(leader, "get", "bin/k", "--json")
    assert rc == 0 and json.loads(out) == {"key": "bin/k", "value_base64": base64.b64encode(
        blob).decode(), "version": version}, (rc, out)
    rc, out, err = kv(leader, "ls", "bin/", "--json")
    items = json.loads(out)["items"]
    assert rc == 0 and [base64.b64decode(it["value_base64"]) for it in items] == [every, blob]


def test_cli_status(cluster):
    leader = cluster.wait_leader()
    follower = cluster.followers(leader)[0]
    rc, out, err = run_corral(["status", "--endpoints", follower.url])
    assert rc == 0, err
    assert f"node {follower.id}  role follower" in out, out
    assert f"leader {leader.id} at {leader.http_addr}" in out, out
    for n in cluster.nodes:
        if n is not follower:
            assert n.cluster_addr in out, out
    # On the leader the last column is an age in ms, kept small by heartbeats.
    rc, out, err = run_corral(["status", "--endpoints", leader.url])
    assert rc == 0 and "LAST-CONTACT-AGE-MS" in out, (rc, out, err)
    ages = [ln.split()[-1] for ln in out.splitlines() if ln[:1].isdigit()]
    assert len(ages) == len(cluster.nodes) - 1, out
    assert all(a.isdigit() and int(a) < 10 * ELECTION_TIMEOUT_MS for a in ages), out
    rc, out, err = run_corral(["status", "--json", "--endpoints", f"127.0.0.1:1,{leader.url}"])
    obj = json.loads(out)
    assert rc == 0 and obj["role"] == "leader" and obj["id"] == leader.id, (rc, out, err)
    assert out.count("\n") == 1


def test_cli_kv_put_rides_out_an_election(cluster):
    """Issue 13: the leader is killed; a put sent at once, while the
    followers still redirect to the dead leader (then answer no_leader),
    is retried until a new leader takes it, within --timeout-ms."""
    leader = cluster.wait_leader()
    followers = cluster.followers(leader)
    # Followers first: their 307 points at the dead leader.
    endpoints = ",".join(n.url for n in [*followers, leader])
    leader.kill()
    t0 = time.monotonic()
    rc, out, err = run_corral(["kv", "put", "elect/k", "survived", "--endpoints", endpoints,
                               "--timeout-ms", "5000"])
    took = time.monotonic() - t0
    assert rc == 0 and out.startswith("OK version "), (rc, out, err)
    assert took < 5.5, took
    rc, out, err = run_corral(["kv", "get", "elect/k", "--endpoints", endpoints,
                               "--timeout-ms", "5000"])
    assert (rc, out) == (0, "survived\n"), (rc, out, err)
    new_leader = cluster.wait_leader(exclude=(leader,))
    assert new_leader.get("elect/k").json["value"] == "survived"


def test_cli_coordinators_through_a_follower_shows_the_leaders_progress(cluster):
    """Match indexes and contact ages are the leader's: `corral
    coordinators` asked of a follower prints them, from the leader."""
    leader = cluster.wait_leader()
    follower = cluster.followers(leader)[0]
    rc, out, err = run_corral(["coordinators", "--endpoints", follower.url])
    assert rc == 0, (rc, out, err)
    rows = [ln.split() for ln in out.splitlines()[2:] if ln.strip()]
    assert len(rows) == 3, out
    for r in rows:
        assert r[5].isdigit() and r[6].endswith("ms") and r[6][:-2].isdigit(), out
    assert sum(r[2] == "voter*" for r in rows) == 1, out
