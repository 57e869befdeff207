#!/usr/bin/env python3
"""Runs the built `corral status` and `corral kv` against an in-process
stand-in of the HTTP API (docs/api.md): a "leader" that keeps a store, a
"follower" that answers writes with 307 to the leader, and a node without a
leader that answers 503. Checks output, --json and exit codes (0 ok, 1
failure, 2 usage, 3 not found, 4 cas failed). The real cluster is tested by
tests/cluster. Usage: test_client_cli.py CORRAL"""
import base64
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import ThreadingHTTPServer

from standin import JsonHandler

CORRAL = sys.argv[1]
failures = []
LOCK = threading.Lock()
STORE = {}  # key -> (value bytes, or a canned dict of value fields, version)


def item(key):
    """The JSON item of key as the server gives it: "value" when UTF-8,
    else "value_base64" (docs/api.md); a canned dict as it is."""
    v, ver = STORE[key]
    if isinstance(v, dict):
        return {"key": key, **v, "version": ver}
    try:
        return {"key": key, "value": v.decode(), "version": ver}
    except UnicodeDecodeError:
        return {"key": key, "value_base64": base64.b64encode(v).decode(), "version": ver}
STATE = {"index": 0, "leader_url": None, "writes_seen": [], "dead_url": None}
COUNTS = {}  # role -> requests it was sent (the retry stand-ins)


def check(name, cond, detail=""):
    if not cond:
        failures.append(f"{name}: {detail}")


class Handler(JsonHandler):
    role = "leader"

    def parts(self):
        u = urllib.parse.urlsplit(self.path)
        return u.path, urllib.parse.parse_qs(u.query, keep_blank_values=True)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n)

    def count(self):
        with LOCK:
            COUNTS[self.role] = COUNTS.get(self.role, 0) + 1
            return COUNTS[self.role]

    def hang_up(self):
        """Reads the whole request, then closes without an answer."""
        self.body()
        self.close_connection = True

    def do_GET(self):
        if self.role == "closer":
            self.count()
            return self.hang_up()
        if self.role == "noleader":
            return self.error(503, "no_leader", "no leader", [("Retry-After", "1")])
        path, q = self.parts()
        if path == "/v1/status":
            return self.reply(200, status_body(self.role))
        if path == "/v1/kv/":
            return self.list(q)
        if path.startswith("/v1/kv/"):
            key = urllib.parse.unquote_to_bytes(path[len("/v1/kv/"):]).decode()
            with LOCK:
                if key not in STORE:
                    return self.error(404, "not_found", "no such key")
                it = item(key)
            return self.reply(200, it)
        self.error(404, "not_found", "no such route")

    def list(self, q):
        prefix = q.get("prefix", [""])[0]
        limit = int(q.get("limit", ["100"])[0])
        after = q.get("after", [None])[0]
        if limit > 1000:
            return self.error(400, "bad_request", "limit over 1000")
        with LOCK:
            keys = sorted(k for k in STORE if k.startswith(prefix) and (after is None or k > after))
            items = [item(k) for k in keys[:limit]]
        self.reply(200, {"items": items, "more": len(keys) > limit})

    def write(self, method):
        if self.role == "noleader":
            return self.error(503, "no_leader", "no leader", [("Retry-After", "1")])
        if self.role == "follower":
            loc = STATE["leader_url"] + self.path
            return self.error(307, "not_leader", "follower", [("Location", loc)])
        if self.role == "stale_follower":  # points at a dead leader twice
            n = self.count()
            loc = (STATE["dead_url"] if n <= 2 else STATE["leader_url"]) + self.path
            return self.error(307, "not_leader", "follower", [("Location", loc)])
        if self.role == "electing" and self.count() <= 2:
            self.body()
            return self.error(503, "no_leader", "no leader", [("Retry-After", "1")])
        if self.role == "closer":
            self.count()
            return self.hang_up()
        if self.role == "silent":  # reads the write, answers too late
            self.count()
            self.body()
            time.sleep(3)
            return self.error(500, "internal", "too late")
        path, q = self.parts()
        key = urllib.parse.unquote_to_bytes(path[len("/v1/kv/"):]).decode()
        value = self.body()
        with LOCK:
            STATE["writes_seen"].append((method, key, value))
            cur = STORE.get(key, (None, 0))[1]
            if "cas" in q and int(q["cas"][0]) != cur:
                return self.error(409, "cas_failed", "version mismatch", version=cur)
            if method == "DELETE" and key not in STORE:
                return self.error(404, "not_found", "no such key")
            STATE["index"] += 1
            ver = STATE["index"]
            if method == "PUT":
                STORE[key] = (value, ver)
                return self.reply(200, {"key": key, "version": ver})
            del STORE[key]
            return self.reply(200, {"key": key, "deleted": True, "version": ver})

    def do_PUT(self):
        self.write("PUT")

    def do_DELETE(self):
        self.write("DELETE")


def status_body(role):
    return {"id": 1 if role == "leader" else 2, "cluster_id": "00112233445566ff", "role": role,
            "term": 3, "leader": {"id": 1, "http": "127.0.0.1:8140"}, "commit": 7, "applied": 7,
            "http_addr": "127.0.0.1:8140", "cluster_addr": "127.0.0.1:8141",
            "peers": [{"id": 2, "cluster_addr": "127.0.0.1:8143", "http": None, "voter": True,
                       "match": 7, "last_contact_age_ms": None, "connected": False},
                      {"id": 3, "cluster_addr": "127.0.0.1:8145", "http": "127.0.0.1:8144",
                       "voter": True, "match": 7, "last_contact_age_ms": 42,
                       "connected": True}]}


def serve(role):
    cls = type(role, (Handler,), {"role": role})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), cls)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def run_bytes(ep, args, stdin=None, timeout_ms=5000):
    p = subprocess.run([CORRAL, *args, "--endpoints", ep, "--timeout-ms", str(timeout_ms)],
                       input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def run(ep, args, stdin=None, timeout_ms=5000):
    rc, out, err = run_bytes(ep, args, stdin, timeout_ms)
    return rc, out.decode(errors="replace"), err


def test_writes_reads(leader, follower):
    rc, out, err = run(follower, ["kv", "put", "cfg/a b%c", "hello"])
    check("put via follower", rc == 0 and out == "OK version 1\n", (rc, out, err))
    check("put reached leader", STATE["writes_seen"][-1] == ("PUT", "cfg/a b%c", b"hello"),
          STATE["writes_seen"])
    rc, out, err = run(follower, ["kv", "get", "cfg/a b%c"])
    check("get", rc == 0 and out == "hello\n", (rc, out, err))
    rc, out, err = run(leader, ["kv", "get", "cfg/a b%c", "-v"])
    check("get -v", rc == 0 and out == "hello\nversion 1\n", (rc, out, err))
    rc, out, _ = run(leader, ["kv", "get", "cfg/a b%c", "--json"])
    check("get --json", rc == 0 and json.loads(out)["version"] == 1 and out.count("\n") == 1, out)
    big = b"line1\nline2\n" * 20000
    rc, out, err = run(follower, ["kv", "put", "big", "-"], stdin=big)
    check("put stdin via follower", rc == 0 and STORE["big"][0] == big, (rc, err))
    rc, out, err = run(leader, ["kv", "get", "big", "--raw"])
    check("get --raw", rc == 0 and out.encode() == big, (rc, len(out), err))
    rc, out, err = run(leader, ["kv", "put", "e", ""])
    check("put empty value", rc == 0 and STORE["e"][0] == b"", (rc, err))


def test_errors(leader, follower, noleader):
    rc, out, err = run(leader, ["kv", "get", "missing"])
    check("not found exit", rc == 3 and "not_found" in err, (rc, err))
    rc, out, err = run(leader, ["kv", "get", "missing", "--json"])
    check("not found --json", rc == 3 and json.loads(out)["error"]["code"] == "not_found", out)
    rc, out, err = run(follower, ["kv", "put", "cfg/a b%c", "x", "--cas", "99"])
    check("cas failed exit", rc == 4 and "current version 1" in err, (rc, err))
    rc, out, err = run(leader, ["kv", "put", "cfg/a b%c", "x", "--cas", "0"])
    check("cas 0 on existing", rc == 4, (rc, err))
    rc, out, err = run(leader, ["kv", "put", "new", "x", "--cas", "0"])
    check("cas 0 on absent", rc == 0, (rc, err))
    rc, out, err = run(follower, ["kv", "del", "new", "--cas", "1"])
    check("del cas failed", rc == 4, (rc, err))
    rc, out, err = run(follower, ["kv", "del", "new"])
    check("del via follower", rc == 0 and out.startswith("OK deleted version "), (rc, out, err))
    rc, out, err = run(leader, ["kv", "del", "new"])
    check("del missing", rc == 3, (rc, err))
    # Retried once after its Retry-After (1 s); the next would pass 1500 ms.
    rc, out, err = run(noleader, ["kv", "put", "k", "v"], timeout_ms=1500)
    check("503 exit", rc == 1 and "no_leader" in err and "retry after 1 s" in err
          and "gave up after 2 tries" in err, (rc, err))
    rc, out, err = run("127.0.0.1:1", ["status"], timeout_ms=1000)
    check("unreachable", rc == 1 and "127.0.0.1:1" in err, (rc, err))
    for args in (["kv"], ["kv", "frob"], ["kv", "get"], ["kv", "get", "k", "--cas", "1"],
                 ["kv", "ls", "--limit", "0"], ["kv", "put", "k", "v", "--cas", "-1"],
                 ["status", "extra"], ["status", "--bogus"], ["kv", "get", "x" * 513]):
        rc, out, err = run(leader, args)
        check(f"usage {args[:4]}", rc == 2 and err.startswith("corral ") and out == "", (rc, err))
    # A bad --cas is refused before stdin is read: this stdin never ends.
    p = subprocess.Popen([CORRAL, "kv", "put", "k", "-", "--cas", "x", "--endpoints", leader],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        rc = p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "waited on stdin"
    p.stdin.close()
    check("bad --cas before stdin", rc == 2, rc)


def test_failover_status(leader, follower):
    rc, out, err = run(f"127.0.0.1:1,{follower}", ["kv", "put", "fo", "1"])
    check("failover", rc == 0, (rc, err))
    rc, out, err = run(leader, ["status"])
    check("status table", rc == 0 and "role leader" in out and "127.0.0.1:8143" in out, (rc, out))
    # The last column is last_contact_age_ms as sent: an age, not a clock.
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines() if ln[:1].isdigit()}
    check("status contact age", "LAST-CONTACT-AGE-MS" in out and rows["3"][-1] == "42"
          and rows["2"][-1] == "-", (rc, out))
    rc, out, err = run(leader, ["status", "--json"])
    check("status --json", rc == 0 and json.loads(out)["peers"][0]["id"] == 2, (rc, out))


def dead_port():
    """A port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def timed(ep, args, timeout_ms):
    t0 = time.monotonic()
    rc, out, err = run(ep, args, timeout_ms=timeout_ms)
    return rc, out, err, time.monotonic() - t0


def test_retries(leader):
    """Requests that were never served are retried until --timeout-ms; a
    write whose answer was lost is not (issue 13)."""
    STATE["dead_url"] = f"http://127.0.0.1:{dead_port()}"
    stale, _ = serve("stale_follower")
    electing, _ = serve("electing")
    closer, _ = serve("closer")
    silent, _ = serve("silent")
    silent_url = f"http://127.0.0.1:{silent.server_address[1]}"
    stale_url = f"http://127.0.0.1:{stale.server_address[1]}"
    electing_url = f"http://127.0.0.1:{electing.server_address[1]}"
    closer_url = f"http://127.0.0.1:{closer.server_address[1]}"

    # A follower's 307 points at a dead leader (twice), then at the live one.
    rc, out, err, took = timed(stale_url, ["kv", "put", "r/stale", "1"], 5000)
    check("307 to a dead leader is retried", rc == 0 and out.startswith("OK version ")
          and STORE["r/stale"][0] == b"1" and COUNTS.get("stale_follower") == 3, (rc, out, err))
    check("307 retry within the timeout", took < 5.0, took)

    # 503 no_leader (Retry-After: 1) twice, then served.
    rc, out, err, took = timed(electing_url, ["kv", "put", "r/elect", "2"], 5000)
    check("503 no_leader is retried", rc == 0 and STORE["r/elect"][0] == b"2"
          and COUNTS.get("electing") == 3, (rc, out, err, COUNTS))
    check("503 retry waits its Retry-After", 1.5 <= took < 5.0, took)

    # Nobody listens anywhere: tries until the deadline, then says so.
    dead = f"127.0.0.1:{dead_port()},127.0.0.1:{dead_port()}"
    rc, out, err, took = timed(dead, ["kv", "put", "r/none", "3"], 3000)
    check("all refusing exits 1", rc == 1 and "no endpoint answered within 3000 ms" in err
          and "Couldn't connect" in err and out == "", (rc, err))
    check("all refusing waits for the deadline", 2.5 <= took < 6.0, took)
    rc, out, err, took = timed(dead, ["kv", "get", "r/none"], 1000)
    check("all refusing, a read", rc == 1 and 0.7 <= took < 4.0, (rc, err, took))

    # The connection closes after the write was read: sent once, not
    # retried on the live leader after it, and its outcome is unknown.
    before = len(STATE["writes_seen"])
    rc, out, err, took = timed(f"{closer_url},{leader}", ["kv", "put", "r/lost", "4"], 5000)
    check("lost answer: one request", COUNTS.get("closer") == 1
          and len(STATE["writes_seen"]) == before and "r/lost" not in STORE, (COUNTS, err))
    check("lost answer: outcome unknown", rc == 1 and "outcome is unknown" in err
          and "not retried" in err, (rc, err))
    rc, out, err, took = timed(f"{closer_url},{leader}", ["kv", "del", "r/elect"], 5000)
    check("lost answer: delete not retried", rc == 1 and COUNTS.get("closer") == 2
          and "outcome is unknown" in err and "r/elect" in STORE, (rc, err, COUNTS))
    # The write was read and no answer came before the deadline.
    rc, out, err, took = timed(f"{silent_url},{leader}", ["kv", "put", "r/slow", "5"], 1000)
    check("timeout after sending: not retried", rc == 1 and COUNTS.get("silent") == 1
          and "outcome is unknown" in err and "r/slow" not in STORE and took < 2.5,
          (rc, err, took))
    # A read may be repeated: the leader answers it.
    rc, out, err, took = timed(f"{closer_url},{leader}", ["kv", "get", "r/elect"], 5000)
    check("lost answer: a read is retried", rc == 0 and out == "2\n"
          and COUNTS.get("closer") == 3, (rc, out, err, COUNTS))
    for srv in (stale, electing, closer, silent):
        srv.shutdown()


def test_ls(leader, follower):
    for i in range(250):
        STORE[f"ls/{i:04d}"] = (f"v{i}".encode(), 1000 + i)
    rc, out, err = run(follower, ["kv", "ls", "ls/", "--all"])
    lines = out.splitlines()
    check("ls --all", rc == 0 and len(lines) == 250 and lines[0] == "ls/0000\tv0", (rc, lines[:2]))
    rc, out, err = run(leader, ["kv", "ls", "ls/", "--limit", "120", "-v"])
    lines = out.splitlines()
    check("ls --limit", rc == 0 and len(lines) == 120 and "more keys" in err, (rc, err))
    check("ls -v", lines and lines[0] == "ls/0000\t1000\tv0", lines[:1])
    rc, out, err = run(leader, ["kv", "ls", "ls/", "--all", "--json"])
    obj = json.loads(out)
    check("ls --json", rc == 0 and len(obj["items"]) == 250 and obj["more"] is False, (rc, err))
    rc, out, err = run(leader, ["kv", "ls", "ls/"])
    check("ls default limit", rc == 0 and len(out.splitlines()) == 100, rc)
    # Tabs, newlines, CRs, backslashes and other control bytes in keys and
    # values are escaped, so every line is exactly KEY<TAB>VALUE; other
    # bytes (UTF-8 included) print as they are.
    STORE["esc/a\tb\\c"] = ("line1\nline2\r\x01\x7f\x1b[0m".encode(), 5)
    STORE["esc/n\nk"] = ("t\tv \u00e9".encode(), 6)
    rc, out, err = run(leader, ["kv", "ls", "esc/"])
    want = "esc/a\\tb\\\\c\tline1\\nline2\\r\\x01\\x7f\\x1b[0m\nesc/n\\nk\tt\\tv \u00e9\n"
    check("ls escapes", rc == 0 and out == want, (rc, out, want))
    rc, out, err = run(leader, ["kv", "ls", "esc/", "-v"])
    lines = out.split("\n")
    check("ls -v escapes", rc == 0 and len(lines) == 3 and lines[0].split("\t")[1] == "5"
          and all(len(ln.split("\t")) == 3 for ln in lines[:2]), (rc, lines))
    rc, out, err = run(leader, ["kv", "ls", "esc/", "--json"])
    obj = json.loads(out)
    check("ls --json unescaped", rc == 0 and obj["items"][1]["key"] == "esc/n\nk", (rc, out))


def test_binary(leader, follower):
    # A value that is not UTF-8 arrives as value_base64: get and ls print
    # it escaped (bytes outside UTF-8 as \xHH, control bytes and backslash
    # as ls does, valid UTF-8 sequences as they are); --raw the bytes.
    blob = b"a\x00b\xff\xfe\\\n\t\xe2\x82\xac\xc3"
    rc, out, err = run(follower, ["kv", "put", "bin/k", "-"], stdin=blob)
    check("put binary stdin", rc == 0 and STORE["bin/k"][0] == blob, (rc, err))
    esc = b"a\\x00b\\xff\\xfe\\\\\\n\\t\xe2\x82\xac\\xc3"
    rc, out, err = run_bytes(leader, ["kv", "get", "bin/k"])
    check("get binary escaped", rc == 0 and out == esc + b"\n", (rc, out, err))
    rc, out, err = run_bytes(leader, ["kv", "get", "bin/k", "-v"])
    check("get binary -v", rc == 0 and out == esc + b"\nversion %d\n" % STORE["bin/k"][1],
          (rc, out))
    rc, out, err = run_bytes(leader, ["kv", "get", "bin/k", "--raw"])
    check("get binary --raw", rc == 0 and out == blob, (rc, out, err))
    rc, out, err = run(leader, ["kv", "get", "bin/k", "--json"])
    check("get binary --json", rc == 0 and json.loads(out) == item("bin/k"), (rc, out))
    rc, out, err = run_bytes(leader, ["kv", "ls", "bin/", "-v"])
    check("ls binary", rc == 0 and out == b"bin/k\t%d\t%s\n" % (STORE["bin/k"][1], esc),
          (rc, out, err))
    # A UTF-8 value with a backslash still prints as it is in get.
    STORE["bin/t"] = (b"\\xff \xc3\xa9", 7)
    rc, out, err = run_bytes(leader, ["kv", "get", "bin/t"])
    check("get UTF-8 unescaped", rc == 0 and out == b"\\xff \xc3\xa9\n", (rc, out))
    STORE["bin/empty"] = (b"", 8)
    rc, out, err = run_bytes(leader, ["kv", "get", "bin/empty", "--raw"])
    check("get empty --raw", rc == 0 and out == b"", (rc, out))
    # A malformed answer is a failure, not garbage printed.
    for canned in ({"value_base64": "Zg="}, {"value_base64": "Zh=="}, {"value_base64": 3},
                   {"value": "x", "value_base64": "eA=="}, {}):
        STORE["bad/k"] = (canned, 9)
        for args in (["get", "bad/k"], ["get", "bad/k", "--raw"], ["ls", "bad/"]):
            rc, out, err = run(leader, ["kv", *args])
            check(f"malformed {canned} {args}", rc == 1 and "malformed" in err, (rc, out, err))
        rc, out, err = run(leader, ["kv", "get", "bad/k", "--json"])
        check(f"malformed {canned} --json as sent", rc == 0 and json.loads(out) == item("bad/k"),
              (rc, out))
    del STORE["bad/k"]


def main():
    servers = [serve(r) for r in ("leader", "follower", "noleader")]
    (_, leader), (_, follower), (_, noleader) = servers
    STATE["leader_url"] = leader
    test_writes_reads(leader, follower)
    test_errors(leader, follower, noleader)
    test_failover_status(leader, follower)
    test_retries(leader)
    test_ls(leader, follower)
    test_binary(leader, follower)
    for srv, _ in servers:
        srv.shutdown()
    for f in failures:
        print("FAIL", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
