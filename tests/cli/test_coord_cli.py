#!/usr/bin/env python3
"""Runs the built `corral coordinators`, `corral coordinator remove` and
`corral leader transfer` against an in-process stand-in of the
coordinator endpoints (docs/api.md): a "leader" that knows replication
progress, a "follower" that answers its own GETs (no progress: nulls) and
writes with 307 to the leader, an "orphan" follower whose leader's
address answers nothing, and a node that knows no leader. A DELETE
of "b" leaves it listed as "leaving" for three more GETs; "stuck" stays
listed; "busy" gets 409 conflict, "ghost" 404. Every request is recorded
with the time it arrived, so the checks see what was sent, how often the
list was polled, and that a refused argument sent nothing.
Usage: test_coord_cli.py CORRAL"""
import copy
import json
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
REQUESTS = []  # (role, method, path, raw query, query dict, monotonic time)
STATE = {"leader_url": None}

COORDS = [
    {"name": "a", "id": 1, "role": "voter", "cluster_addr": "127.0.0.1:8139",
     "http_addr": "127.0.0.1:8140", "leader": True, "match_index": 123, "last_contact_ms": 0},
    {"name": "b", "id": 2, "role": "voter", "cluster_addr": "127.0.0.1:8141",
     "http_addr": "127.0.0.1:8142", "leader": False, "match_index": 120,
     "last_contact_ms": 12},
    {"name": "c", "id": 3, "role": "learner", "cluster_addr": "10.1.2.3:8139",
     "http_addr": "10.1.2.3:8140", "leader": False, "match_index": 99,
     "last_contact_ms": 1500},
    {"name": "d", "id": 4, "role": "joining", "cluster_addr": "10.1.2.4:8139",
     "http_addr": "10.1.2.4:8140", "leader": False, "match_index": None,
     "last_contact_ms": None},
    {"name": "stuck", "id": 7, "role": "voter", "cluster_addr": "10.1.2.7:8139",
     "http_addr": "10.1.2.7:8140", "leader": False, "match_index": 5,
     "last_contact_ms": 40},
]
# name -> how many more GETs list it (as "leaving") after its DELETE;
# None: listed for ever.
LEAVING = {}


def check(name, cond, detail=""):
    if not cond:
        failures.append(f"{name}: {detail}")


def answer(role):
    out = []
    for c in COORDS:
        n = LEAVING.get(c["name"], -1)
        if n == 0:
            continue  # it has left Raft
        c = dict(c)
        if n is None or n > 0:
            c["role"] = "leaving"
        if role != "leader":
            c["match_index"] = c["last_contact_ms"] = None
        if c["name"] == "a" and role == "follower":
            c["http_addr"] = urllib.parse.urlsplit(STATE["leader_url"]).netloc
        if c["name"] == "a" and role == "orphan":
            c["http_addr"] = "127.0.0.1:9"  # nothing answers there
        if role == "noleader":
            c["leader"] = False
        out.append(c)
    return {"cluster_name": "corral", "cluster_id": "00112233445566ff",
            "leader": None if role == "noleader" else "a", "voters_target": 3,
            "coordinators": out}


class Handler(JsonHandler):
    role = "leader"

    def handle_any(self, method):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        with LOCK:
            REQUESTS.append((self.role, method, u.path, u.query, q, time.monotonic()))
        if method != "GET" and self.role == "noleader":
            return self.error(503, "no_leader", "no leader known", [("Retry-After", "1")])
        if method != "GET" and self.role == "follower":
            return self.error(307, "not_leader", "this node is a follower",
                              [("Location", STATE["leader_url"] + self.path)])
        parts = u.path.strip("/").split("/")
        if parts == ["v1", "coordinators"] and method == "GET":
            with LOCK:
                a = answer(self.role)
                for name, left in LEAVING.items():
                    if left:
                        LEAVING[name] = left - 1
            return self.reply(200, a)
        if parts[:2] == ["v1", "coordinators"] and len(parts) == 3 and method == "DELETE":
            return self.delete(parts[2])
        if parts == ["v1", "leader", "transfer"] and method == "POST":
            return self.transfer(q)
        self.error(404, "not_found", "no such route")

    def delete(self, name):
        if name == "busy":
            return self.error(409, "conflict", "a coordinator change is in flight")
        if name == "a":
            return self.error(409, "conflict", "removing a would lose quorum")
        c = next((c for c in COORDS if c["name"] == name), None)
        if c is None or name in LEAVING:
            return self.error(404, "not_found", "no such coordinator")
        with LOCK:
            LEAVING[name] = None if name == "stuck" else 3
        self.reply(200, {"name": name, "id": c["id"], "removed": True})

    def transfer(self, q):
        to = q.get("to", [None])[0]
        if to in ("a", "1"):
            return self.reply(409, {"error": {"code": "transfer_refused",
                                              "message": "node 1 is the leader"},
                                    "reason": "self"})
        if to is not None and to not in ("b", "2", "c.x-y_z"):
            return self.reply(409, {"error": {"code": "transfer_refused",
                                              "message": f"{to} is not a voter"},
                                    "reason": "not_voter"})
        self.reply(200, {"from": 1, "to": 2, "term": 7})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_DELETE(self):
        self.handle_any("DELETE")


def serve(role):
    cls = type(role, (Handler,), {"role": role})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), cls)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def run(ep, args, timeout_ms=5000):
    """Runs corral with args; returns (rc, stdout, stderr, requests sent,
    seconds it took)."""
    with LOCK:
        del REQUESTS[:]
        LEAVING.clear()
    start = time.monotonic()
    p = subprocess.run([CORRAL, *args, "--endpoints", ep, "--timeout-ms", str(timeout_ms)],
                       capture_output=True, timeout=60)
    took = time.monotonic() - start
    with LOCK:
        sent = list(REQUESTS)
    return (p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"),
            sent, took)


def rows(out):
    return [ln.split() for ln in out.splitlines() if ln.strip()]


def test_list(leader, follower, noleader, orphan):
    rc, out, err, sent, _ = run(leader, ["coordinators"])
    t = rows(out)
    check("list rc", rc == 0 and err == "", (rc, err))
    check("list summary", out.splitlines()[:1] ==
          ["cluster corral  id 00112233445566ff  leader a  voters-target 3"], out)
    check("list header", t[1:2] == [["NAME", "ID", "ROLE", "CLUSTER-ADDR", "HTTP-ADDR", "MATCH",
                                     "LAST-CONTACT"]], t)
    check("list rows", t[2:] == [
        ["a", "1", "voter*", "127.0.0.1:8139", "127.0.0.1:8140", "123", "0ms"],
        ["b", "2", "voter", "127.0.0.1:8141", "127.0.0.1:8142", "120", "12ms"],
        ["c", "3", "learner", "10.1.2.3:8139", "10.1.2.3:8140", "99", "1500ms"],
        ["d", "4", "joining", "10.1.2.4:8139", "10.1.2.4:8140", "-", "-"],
        ["stuck", "7", "voter", "10.1.2.7:8139", "10.1.2.7:8140", "5", "40ms"]], t)
    check("list request", [(r[1], r[2]) for r in sent] == [("GET", "/v1/coordinators")], sent)
    lines = out.splitlines()[1:]
    col = lines[0].index("LAST-CONTACT")
    check("list aligned", all(len(ln) > col and ln[col - 1] == " " and ln[col] != " "
                              for ln in lines[1:]), lines)

    # A follower's answer has no progress: the list is asked of the
    # leader it names, and the leader's is printed.
    rc, out, err, sent, _ = run(follower, ["coordinators"])
    t = rows(out)
    check("list follower asks the leader", rc == 0 and t[2] ==
          ["a", "1", "voter*", "127.0.0.1:8139", "127.0.0.1:8140", "123", "0ms"] and
          [(r[0], r[2]) for r in sent] == [("follower", "/v1/coordinators"),
                                            ("leader", "/v1/coordinators")], (rc, out, sent))
    # Its leader does not answer: the follower's list, as it was.
    rc, out, err, sent, took = run(orphan, ["coordinators"])
    t = rows(out)
    check("list follower, leader gone", rc == 0 and [r[5:] for r in t[2:]] == [["-", "-"]] * 5
          and t[2][2] == "voter*" and [r[0] for r in sent] == ["orphan", "orphan"] and took < 5,
          (rc, out, sent, took))
    rc, out, err, sent, _ = run(noleader, ["coordinators"])
    t = rows(out)
    check("list no leader", rc == 0 and "  leader -  " in out.splitlines()[0] and
          not any(r[2].endswith("*") for r in t[2:]), (rc, out))

    rc, out, err, sent, _ = run(leader, ["coordinators", "--json"])
    check("list --json", rc == 0 and out.count("\n") == 1 and
          json.loads(out) == answer("leader"), (rc, out))


def gets(sent):
    return [r for r in sent if r[1] == "GET"]


def test_remove(leader, follower):
    rc, out, err, sent, _ = run(leader, ["coordinator", "remove", "b"])
    check("remove", rc == 0 and out == "removed b (id 2)\n" and err == "", (rc, out, err))
    check("remove delete", [(r[1], r[2]) for r in sent if r[1] != "GET"] ==
          [("DELETE", "/v1/coordinators/b")], sent)
    g = gets(sent)
    # Listed as leaving by three GETs, gone from the fourth; none after.
    check("remove polls until gone", len(g) == 4 and sent[-1] is g[-1] and
          all(r[2] == "/v1/coordinators" for r in g), sent)
    gaps = [b[5] - a[5] for a, b in zip(g, g[1:])]
    check("remove polls every 200 ms", gaps and all(0.18 <= x < 0.6 for x in gaps), gaps)

    rc, out, err, sent, _ = run(follower, ["coordinator", "remove", "b"])
    check("remove via follower", rc == 0 and out == "removed b (id 2)\n", (rc, out, err))
    check("remove followed 307", [(r[0], r[1]) for r in sent if r[1] == "DELETE"] ==
          [("follower", "DELETE"), ("leader", "DELETE")], sent)
    check("remove polls the leader it was sent to", gets(sent) and
          all(r[0] == "leader" for r in gets(sent)), sent)

    rc, out, err, sent, _ = run(leader, ["coordinator", "remove", "b", "--no-wait"])
    check("remove --no-wait", rc == 0 and out == "removing b (id 2)\n" and
          [(r[1], r[2]) for r in sent] == [("DELETE", "/v1/coordinators/b")], (rc, out, sent))

    rc, out, err, sent, _ = run(leader, ["coordinator", "remove", "b", "--json"])
    check("remove --json", rc == 0 and out.count("\n") == 1 and
          json.loads(out) == {"name": "b", "id": 2, "removed": True} and len(gets(sent)) == 4,
          (rc, out, err, sent))

    rc, out, err, sent, took = run(leader, ["coordinator", "remove", "stuck"], timeout_ms=1000)
    check("remove timeout", rc == 1 and out == "" and "timed out" in err and
          "stuck (id 7)" in err and "still listed (role leaving) after 1000 ms" in err,
          (rc, out, err))
    check("remove timeout bounded", 0.9 <= took < 3 and 3 <= len(gets(sent)) <= 7,
          (took, len(gets(sent))))

    for name, message in (("busy", "conflict: a coordinator change is in flight"),
                          ("a", "conflict: removing a would lose quorum")):
        rc, out, err, sent, _ = run(leader, ["coordinator", "remove", name])
        check(f"remove 409 {name}", rc == 1 and out == "" and message in err and
              "HTTP 409" in err and gets(sent) == [], (rc, out, err, sent))
    rc, out, err, sent, _ = run(leader, ["coordinator", "remove", "busy", "--json"])
    check("remove 409 --json", rc == 1 and
          json.loads(out)["error"]["code"] == "conflict", (rc, out))
    rc, out, err, sent, _ = run(leader, ["coordinator", "remove", "ghost"])
    check("remove 404", rc == 3 and "not_found: no such coordinator" in err and
          gets(sent) == [], (rc, err, sent))


def test_transfer(leader, follower):
    rc, out, err, sent, _ = run(follower, ["leader", "transfer", "b"])
    check("transfer NAME", rc == 0 and out == "OK leader 1 -> 2 (term 7)\n", (rc, out, err))
    check("transfer NAME request", [(r[0], r[1], r[2], r[3]) for r in sent] ==
          [("follower", "POST", "/v1/leader/transfer", "to=b"),
           ("leader", "POST", "/v1/leader/transfer", "to=b")], sent)
    rc, out, err, sent, _ = run(leader, ["leader", "transfer", "c.x-y_z"])
    check("transfer NAME alphabet", rc == 0 and [r[3] for r in sent] == ["to=c.x-y_z"],
          (rc, err, sent))
    rc, out, err, sent, _ = run(leader, ["leader", "transfer", "2"])
    check("transfer ID", rc == 0 and [r[3] for r in sent] == ["to=2"], (rc, err, sent))
    rc, out, err, sent, _ = run(leader, ["leader", "transfer", "007"])
    check("transfer ID leading zeros", rc == 1 and [r[3] for r in sent] == ["to=7"],
          (rc, err, sent))
    rc, out, err, sent, _ = run(leader, ["leader", "transfer"])
    check("transfer any", rc == 0 and [r[3] for r in sent] == [""], (rc, err, sent))
    rc, out, err, sent, _ = run(leader, ["leader", "transfer", "a", "--json"])
    check("transfer NAME refused", rc == 1 and "transfer_refused" in err and
          json.loads(out)["reason"] == "self", (rc, out, err))
    rc, out, err, sent, _ = run(leader, ["leader", "transfer", "zz"])
    check("transfer NAME not a voter", rc == 1 and "zz is not a voter" in err, (rc, err))


def test_usage(leader):
    bad = [
        ["coordinator"], ["coordinator", "remove"], ["coordinator", "remove", "b", "c"],
        ["coordinator", "remove", "B"], ["coordinator", "remove", "a/b"],
        ["coordinator", "remove", "x" * 65], ["coordinator", "remove", ""],
        ["coordinator", "remove", "b c"], ["coordinator", "frob", "b"],
        ["coordinator", "remove", "b", "--no-wait=1"], ["coordinators", "extra"],
        ["coordinators", "--no-wait"], ["coordinators", "--bogus"],
        ["leader", "transfer", "B"], ["leader", "transfer", "a/b"], ["leader", "transfer", "0"],
        ["leader", "transfer", "x" * 65], ["leader", "transfer", "-1"],
        ["leader", "transfer", "99999999999"], ["leader", "transfer", "b", "c"],
    ]
    for args in bad:
        rc, out, err, sent, _ = run(leader, args)
        check(f"usage {args[:4]}", rc == 2 and out == "" and err.startswith("corral ") and
              sent == [], (rc, out, err, sent))
    rc, out, err, _, _ = run(leader, ["coordinator", "remove", "B"])
    check("name message", "a coordinator name is 1-64 characters of [a-z0-9._-]" in err, err)
    rc, out, err, _, _ = run(leader, ["coordinator"])
    check("no verb message", "missing command: remove" in err, err)
    for args in (["coordinators"], ["coordinator"], ["leader"]):
        rc, out, err, sent, _ = run(leader, [*args, "--help"])
        check(f"help {args}", rc == 0 and out.startswith("usage: corral ") and sent == [],
              (rc, err))
    rc, out, _, _, _ = run(leader, ["leader", "--help"])
    check("leader help names", "transfer [NAME|ID]" in out, out)
    p = subprocess.run([CORRAL, "--help"], capture_output=True, timeout=10)
    listed = p.stdout.decode()
    check("main help", all(f"  {c} " in listed for c in ("coordinators", "coordinator")),
          listed)


def main():
    servers = [serve(r) for r in ("leader", "follower", "noleader", "orphan")]
    (_, leader), (_, follower), (_, noleader), (_, orphan) = servers
    STATE["leader_url"] = leader
    pristine = copy.deepcopy(COORDS)
    test_list(leader, follower, noleader, orphan)
    test_remove(leader, follower)
    test_transfer(leader, follower)
    test_usage(leader)
    check("stand-in state unchanged", COORDS == pristine, "")
    for srv, _ in servers:
        srv.shutdown()
    for f in failures:
        print("FAIL", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
