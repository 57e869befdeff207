#!/usr/bin/env python3
"""Runs the built `corral members|member|resources|resource|lookup|plan|events`
against an in-process stand-in of the HTTP API's members, resources and
partitions endpoints (docs/api.md): a "leader" answering from canned state,
a "follower" that answers writes (and the leader-only plan) with 307 to the
leader, and a node without a leader that answers writes with 503. Every
request is recorded, so the checks see the method, path, query and body the
command sent, and that a refused argument sent nothing. Checks tables,
--json, exit codes (0 ok, 1 failure, 2 usage, 3 not found, 5 not
stoppable) and that `events --follow` stops on SIGINT.
Usage: test_ownership_cli.py CORRAL"""
import copy
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import ThreadingHTTPServer

from standin import JsonHandler

CORRAL = sys.argv[1]
failures = []
LOCK = threading.Condition()
REQUESTS = []  # (role, method, path, query dict, body bytes, content type)
STATE = {"leader_url": None}

MEMBERS = [
    {"name": "w1", "id": 3, "role": "worker", "status": "active", "addr": "10.0.0.5:7000",
     "zone": "a", "weight": 1, "meta": {"version": "1.2"}, "heartbeat_age_ms": 120,
     "lease_ms_left": 880, "primaries": 21, "replicas": 43, "load": {"qps": 10}},
    {"name": "w2", "id": 4, "role": "worker", "status": "draining", "addr": "10.0.0.6:7000",
     "zone": "", "weight": 2, "meta": {}, "heartbeat_age_ms": None, "lease_ms_left": None,
     "primaries": 0, "replicas": 5, "load": {}},
    {"name": "coord-1", "id": 1, "role": "coordinator", "status": "active",
     "addr": "127.0.0.1:8139", "zone": "b", "weight": 1, "meta": {},
     "heartbeat_age_ms": 7, "lease_ms_left": 993, "primaries": 0, "replicas": 0, "load": {}},
]

# One partition in each state the map can show.
ORDERS = {"name": "orders", "id": 1, "partitions": 64, "replicas": 2, "index": 57, "map": [
    {"partition": 0, "primary": "w1", "epoch": 7, "releasing": False,
     "replicas": [{"member": "w1", "state": "in_sync"}, {"member": "w3", "state": "in_sync"}]},
    {"partition": 1, "primary": "w1", "epoch": 8, "releasing": False,
     "replicas": [{"member": "w1", "state": "in_sync"}, {"member": "w3", "state": "in_sync"},
                  {"member": "w4", "state": "copying"}]},
    {"partition": 2, "primary": "w3", "epoch": 3, "releasing": False,
     "replicas": [{"member": "w3", "state": "in_sync"}, {"member": "w1", "state": "copying"}]},
    {"partition": 3, "primary": "w2", "epoch": 9, "releasing": True,
     "replicas": [{"member": "w2", "state": "in_sync"}, {"member": "w1", "state": "in_sync"}]},
    {"partition": 4, "primary": None, "epoch": 0, "releasing": False, "replicas": []},
]}
RESOURCES = {"orders": ORDERS,
             "users": {"name": "users", "id": 2, "partitions": 8, "replicas": 3, "index": 60,
                       "map": []}}

EVENTS = [
    {"index": 10, "type": "member_join", "member": "w1"},
    {"index": 11, "type": "member_status", "member": "w2", "status": "draining"},
    {"index": 14, "type": "clear", "member": "w2", "resource": "orders", "partition": 3},
    {"index": 14, "type": "grant", "member": "w1", "resource": "orders", "partition": 3,
     "epoch": 7},
    {"index": 20, "type": "copy", "member": "w3", "resource": "orders", "partition": 9,
     "from": None, "note": "exit 1"},
]
APPLIED = {"index": 21}


def check(name, cond, detail=""):
    if not cond:
        failures.append(f"{name}: {detail}")


def summary(r):
    return {k: r[k] for k in ("name", "id", "partitions", "replicas", "index")} | {
        "without_primary": 1, "under_replicated": 2 if r["name"] == "orders" else 0,
        "moving": 1 if r["name"] == "orders" else 0}


class Handler(JsonHandler):
    role = "leader"

    def handle_any(self, method):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        with LOCK:
            REQUESTS.append((self.role, method, u.path, q, body,
                             self.headers.get("Content-Type")))
        leader_only = method != "GET" or u.path.endswith("/plan")
        if leader_only and self.role == "noleader":
            return self.error(503, "no_leader", "no leader known", [("Retry-After", "1")])
        if leader_only and self.role == "follower":
            return self.error(307, "not_leader", "this node is a follower",
                              [("Location", STATE["leader_url"] + self.path)])
        parts = u.path.strip("/").split("/")
        if parts[:2] == ["v1", "members"]:
            return self.members(method, parts[2:], q, body)
        if parts[:2] == ["v1", "resources"]:
            return self.resources(method, parts[2:], q, body)
        if parts == ["v1", "events"] and method == "GET":
            return self.events(q)
        self.error(404, "not_found", "no such route")

    def members(self, method, rest, q, body):
        if not rest:
            return self.reply(200, {"index": 57, "members": MEMBERS})
        name = rest[0]
        m = next((m for m in MEMBERS if m["name"] == name), None)
        if method == "PUT" and not rest[1:]:
            b = json.loads(body)
            if "bogus" in b or name == "rejected":
                return self.error(400, "bad_request", "unknown field 'bogus'")
            return self.reply(200, {"name": name, "id": 9, "role": "worker",
                                    "status": "active", "addr": b["addr"],
                                    "zone": b.get("zone", ""), "weight": b.get("weight", 1),
                                    "meta": {}, "heartbeat_age_ms": None,
                                    "lease_ms_left": None, "primaries": 0, "replicas": 0,
                                    "load": {}})
        if name == "stuck" and method == "DELETE":
            return self.error(409, "conflict", "the member still holds replicas", replicas=4)
        if m is None:
            return self.error(404, "not_found", "no such member")
        if method == "GET" and not rest[1:]:
            return self.reply(200, m)
        if method == "GET" and rest[1:] == ["stoppable"]:
            if name == "w1":
                return self.reply(200, {"stoppable": False, "reasons": [
                    "orders/3: the only in-sync replica", "orders/9: the primary"]})
            return self.reply(200, {"stoppable": True, "reasons": []})
        if method == "POST" and rest[1:] in (["drain"], ["activate"]):
            status = "draining" if rest[1] == "drain" else "active"
            return self.reply(200, dict(m, status=status))
        if method == "DELETE" and not rest[1:]:
            return self.reply(200, {"name": name, "deleted": True})
        self.error(405, "method_not_allowed", "not for this method")

    def resources(self, method, rest, q, body):
        if not rest:
            return self.reply(200, {"index": 60, "resources": [summary(r)
                                                               for r in RESOURCES.values()]})
        name = rest[0]
        r = RESOURCES.get(name)
        if method == "PUT" and not rest[1:]:
            b = json.loads(body)
            if r is not None and b["partitions"] != r["partitions"]:
                return self.error(409, "conflict", "partitions is fixed")
            if b["replicas"] > 3 and q.get("force") != ["1"]:
                return self.error(409, "conflict", "replicas exceed the 3 workers")
            base = r or {"name": name, "id": 7, "index": 61}
            return self.reply(200, summary(dict(base, partitions=b["partitions"],
                                                replicas=b["replicas"])))
        if r is None:
            return self.error(404, "not_found", "no such resource")
        if method == "GET" and not rest[1:]:
            return self.reply(200, r)
        if method == "DELETE" and not rest[1:]:
            return self.reply(200, {"name": name, "deleted": True})
        if method == "GET" and rest[1:] == ["lookup"]:
            if name == "users":
                return self.reply(200, {"partition": 5, "epoch": 0, "primary": None,
                                        "replicas": []})
            return self.reply(200, {"partition": 3, "epoch": 9,
                                    "primary": {"name": "w2", "addr": "10.0.0.6:7000"},
                                    "replicas": [
                                        {"name": "w2", "addr": "10.0.0.6:7000",
                                         "state": "in_sync"},
                                        {"name": "w1", "addr": "10.0.0.5:7000",
                                         "state": "copying"}]})
        if method == "GET" and rest[1:] == ["plan"]:
            return self.reply(200, {"resource": name, "index": 57, "moves": [
                {"partition": 3, "add": ["w4"], "drop": ["w2"], "primary_from": "w2",
                 "primary_to": "w1"},
                {"partition": 9, "add": ["w4", "w5"], "drop": [], "primary_from": None,
                 "primary_to": None}], "moves_total": 3, "lower_bound": 2,
                "primary_lower_bound": 1})
        self.error(405, "method_not_allowed", "not for this method")

    def events(self, q):
        after = int(q.get("index", ["0"])[0])
        wait = q.get("wait", ["30s"])[0]
        wait_s = int(wait[:-2]) / 1000 if wait.endswith("ms") else int(wait.rstrip("s"))
        deadline = time.monotonic() + min(wait_s, 60)
        with LOCK:
            while not any(e["index"] > after for e in EVENTS):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                LOCK.wait(left)
            page = [e for e in EVENTS if e["index"] > after][:1000]
            out = {"index": APPLIED["index"], "events": page}
            if 0 < after < EVENTS[0]["index"] - 1:
                out["truncated"] = True
        self.reply(200, out)

    def do_GET(self):
        self.handle_any("GET")

    def do_PUT(self):
        self.handle_any("PUT")

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


def run(ep, args):
    """Runs corral with args; returns (rc, stdout, stderr, requests sent)."""
    with LOCK:
        del REQUESTS[:]
    p = subprocess.run([CORRAL, *args, "--endpoints", ep, "--timeout-ms", "5000"],
                       capture_output=True, timeout=60)
    with LOCK:
        sent = list(REQUESTS)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"), sent


def at_leader(sent):
    """The requests the leader got, as (method, path, query, body)."""
    return [(m, p, q, b) for role, m, p, q, b, _ in sent if role == "leader"]


def rows(out):
    """A table's rows (header included) split on whitespace."""
    return [ln.split() for ln in out.splitlines() if ln.strip()]


def test_members(leader, follower):
    rc, out, err, sent = run(follower, ["members"])
    t = rows(out)
    check("members rc", rc == 0, (rc, err))
    check("members header", t and t[0] == ["NAME", "ID", "ROLE", "STATUS", "ADDR", "ZONE",
                                          "WEIGHT", "PRIMARIES", "REPLICAS",
                                          "HEARTBEAT-AGE-MS"], t[:1])
    check("members w1", ["w1", "3", "worker", "active", "10.0.0.5:7000", "a", "1", "21", "43",
                         "120"] in t, t)
    check("members nulls", ["w2", "4", "worker", "draining", "10.0.0.6:7000", "-", "2", "0",
                            "5", "-"] in t, t)
    check("members order", [r[0] for r in t[1:]] == ["w1", "w2", "coord-1"], t)
    check("members request", [(r[1], r[2]) for r in sent] == [("GET", "/v1/members")], sent)
    # Columns line up: each header starts where its cells start.
    lines = out.splitlines()
    col = lines[0].index("HEARTBEAT-AGE-MS")
    check("members aligned", all(len(ln) > col and ln[col - 1] == " " for ln in lines[1:]),
          lines)
    rc, out, err, _ = run(leader, ["members", "--json"])
    check("members --json", rc == 0 and out.count("\n") == 1 and
          json.loads(out) == {"index": 57, "members": MEMBERS}, (rc, out))
    rc, out, err, sent = run(leader, ["member", "show", "w1"])
    fields = {r[0]: " ".join(r[1:]) for r in rows(out)}
    check("show", rc == 0 and fields.get("name") == "w1" and fields.get("zone") == "a" and
          fields.get("heartbeat_age_ms") == "120" and fields.get("lease_ms_left") == "880" and
          fields.get("meta") == '{"version":"1.2"}' and fields.get("load") == '{"qps":10}',
          (rc, out, err))
    check("show request", [(r[1], r[2]) for r in sent] == [("GET", "/v1/members/w1")], sent)
    rc, out, err, _ = run(leader, ["member", "show", "w2"])
    fields = {r[0]: " ".join(r[1:]) for r in rows(out)}
    check("show nulls", fields.get("heartbeat_age_ms") == "-" and fields.get("zone") == "-",
          out)
    rc, out, err, _ = run(leader, ["member", "show", "w1", "--json"])
    check("show --json", rc == 0 and json.loads(out) == MEMBERS[0], out)
    rc, out, err, _ = run(leader, ["member", "show", "ghost"])
    check("show 404", rc == 3 and "not_found: no such member" in err and out == "", (rc, err))
    rc, out, err, _ = run(leader, ["member", "show", "ghost", "--json"])
    check("show 404 --json", rc == 3 and json.loads(out)["error"]["code"] == "not_found", out)


def test_member_writes(leader, follower, noleader):
    for verb, status in (("drain", "draining"), ("activate", "active")):
        rc, out, err, sent = run(follower, ["member", verb, "w1"])
        check(f"{verb}", rc == 0 and out == f"OK w1 status {status}\n", (rc, out, err))
        check(f"{verb} followed 307", [(r[0], r[1], r[2]) for r in sent] ==
              [("follower", "POST", f"/v1/members/w1/{verb}"),
               ("leader", "POST", f"/v1/members/w1/{verb}")], sent)
    rc, out, err, _ = run(leader, ["member", "drain", "w1", "--json"])
    check("drain --json", rc == 0 and json.loads(out)["status"] == "draining", out)
    rc, out, err, sent = run(leader, ["member", "remove", "w1"])
    check("remove", rc == 0 and out == "OK w1 deleted\n", (rc, out, err))
    check("remove request", at_leader(sent) == [("DELETE", "/v1/members/w1", {}, b"")], sent)
    rc, out, err, sent = run(follower, ["member", "remove", "w2", "--force", "--wait", "90s"])
    check("remove --force --wait", rc == 0 and at_leader(sent) ==
          [("DELETE", "/v1/members/w2", {"wait": ["90000ms"], "force": ["1"]}, b"")],
          (rc, err, sent))
    rc, out, err, sent = run(leader, ["member", "remove", "w2", "--wait=1500ms"])
    check("remove --wait ms", rc == 0 and at_leader(sent)[0][2] == {"wait": ["1500ms"]}, sent)
    rc, out, err, sent = run(leader, ["member", "remove", "w2", "--wait", "5m"])
    check("remove --wait m", rc == 0 and at_leader(sent)[0][2] == {"wait": ["300000ms"]}, sent)
    rc, out, err, _ = run(leader, ["member", "remove", "stuck"])
    check("remove 409", rc == 1 and "conflict: the member still holds replicas" in err and
          "4 replicas still held" in err, (rc, err))
    rc, out, err, _ = run(noleader, ["member", "drain", "w1"])
    check("drain 503", rc == 1 and "no_leader" in err and "retry after 1 s" in err, (rc, err))

    rc, out, err, sent = run(leader, ["member", "stoppable", "w1"])
    check("stoppable no", rc == 5 and out == "no\norders/3: the only in-sync replica\n"
          "orders/9: the primary\n", (rc, out, err))
    check("stoppable request", [(r[1], r[2]) for r in sent] ==
          [("GET", "/v1/members/w1/stoppable")], sent)
    rc, out, err, _ = run(leader, ["member", "stoppable", "w2"])
    check("stoppable yes", rc == 0 and out == "yes\n", (rc, out, err))
    rc, out, err, _ = run(leader, ["member", "stoppable", "w1", "--json"])
    check("stoppable --json", rc == 5 and json.loads(out)["stoppable"] is False, (rc, out))
    rc, out, err, _ = run(leader, ["member", "stoppable", "ghost"])
    check("stoppable 404", rc == 3, (rc, err))

    rc, out, err, sent = run(follower, ["member", "register", "w9", "--addr", "10.0.0.9:7000",
                                        "--zone", "b", "--weight", "3"])
    check("register", rc == 0 and out == "OK w9 id 9 status active\n", (rc, out, err))
    lead = [r for r in sent if r[0] == "leader"]
    check("register request", len(lead) == 1 and lead[0][1:3] == ("PUT", "/v1/members/w9") and
          json.loads(lead[0][4]) == {"addr": "10.0.0.9:7000", "zone": "b", "weight": 3} and
          lead[0][5] == "application/json", sent)
    rc, out, err, sent = run(leader, ["member", "register", "w9", "--addr=h:1"])
    check("register minimal", rc == 0 and json.loads(at_leader(sent)[0][3]) == {"addr": "h:1"},
          (rc, err, sent))
    rc, out, err, _ = run(leader, ["member", "register", "rejected", "--addr", "h:1"])
    check("register 400", rc == 1 and "bad_request: unknown field 'bogus'" in err, (rc, err))


def test_resources(leader, follower):
    rc, out, err, sent = run(follower, ["resources"])
    t = rows(out)
    check("resources", rc == 0 and t[0] == ["NAME", "PARTITIONS", "REPLICAS",
                                            "WITHOUT-PRIMARY", "UNDER-REPLICATED", "MOVING"] and
          ["orders", "64", "2", "1", "2", "1"] in t and ["users", "8", "3", "1", "0", "0"] in t,
          (rc, out, err))
    check("resources request", [(r[1], r[2]) for r in sent] == [("GET", "/v1/resources")], sent)
    rc, out, err, _ = run(leader, ["resources", "--json"])
    check("resources --json", rc == 0 and len(json.loads(out)["resources"]) == 2, out)

    rc, out, err, sent = run(follower, ["resource", "create", "carts", "--partitions", "16",
                                        "--replicas", "2"])
    check("create", rc == 0 and out == "OK carts partitions 16 replicas 2\n", (rc, out, err))
    lead = [r for r in sent if r[0] == "leader"]
    check("create request", len(lead) == 1 and lead[0][1:4] == ("PUT", "/v1/resources/carts", {})
          and json.loads(lead[0][4]) == {"partitions": 16, "replicas": 2} and
          lead[0][5] == "application/json", sent)
    rc, out, err, sent = run(leader, ["resource", "create", "carts", "--partitions", "16",
                                      "--replicas", "5"])
    check("create 409", rc == 1 and "conflict: replicas exceed the 3 workers" in err, (rc, err))
    rc, out, err, sent = run(leader, ["resource", "create", "carts", "--partitions", "16",
                                      "--replicas", "5", "--force"])
    check("create --force", rc == 0 and at_leader(sent)[0][2] == {"force": ["1"]}, (rc, err))
    rc, out, err, _ = run(leader, ["resource", "create", "orders", "--partitions", "8",
                                   "--replicas", "2"])
    check("create 409 partitions", rc == 1 and "partitions is fixed" in err, (rc, err))

    rc, out, err, sent = run(follower, ["resource", "set", "orders", "--replicas", "3"])
    check("set", rc == 0 and out == "OK orders partitions 64 replicas 3\n", (rc, out, err))
    check("set requests", [(r[0], r[1], r[2]) for r in sent] ==
          [("follower", "GET", "/v1/resources/orders"),
           ("follower", "PUT", "/v1/resources/orders"),
           ("leader", "PUT", "/v1/resources/orders")] and
          json.loads(sent[-1][4]) == {"partitions": 64, "replicas": 3}, sent)
    rc, out, err, sent = run(leader, ["resource", "set", "nosuch", "--replicas", "3"])
    check("set 404", rc == 3 and [r[1] for r in sent] == ["GET"], (rc, err, sent))
    rc, out, err, _ = run(leader, ["resource", "set", "orders", "--replicas", "3", "--json"])
    check("set --json", rc == 0 and json.loads(out)["replicas"] == 3 and out.count("\n") == 1,
          out)

    rc, out, err, sent = run(follower, ["resource", "show", "orders"])
    lines = out.splitlines()
    check("show header", rc == 0 and lines[0].split() ==
          ["resource", "orders", "id", "1", "partitions", "64", "replicas", "2", "index", "57"],
          (rc, lines[:1], err))
    t = [ln.split() for ln in lines[1:]]
    check("show table", t[0] == ["PARTITION", "PRIMARY", "EPOCH", "STATE", "REPLICAS"] and
          t[1:] == [["0", "w1", "7", "ok", "w1,w3"],
                    ["1", "w1", "8", "copying", "w1,w3,w4(copying)"],
                    ["2", "w3", "3", "under-replicated", "w3,w1(copying)"],
                    ["3", "w2", "9", "releasing", "w2,w1"],
                    ["4", "-", "0", "no-primary", "-"]], t)
    check("show request", [(r[1], r[2]) for r in sent] == [("GET", "/v1/resources/orders")], sent)
    rc, out, err, _ = run(leader, ["resource", "show", "orders", "--json"])
    check("show --json", rc == 0 and json.loads(out) == ORDERS, out)
    rc, out, err, _ = run(leader, ["resource", "show", "nosuch"])
    check("show 404", rc == 3 and "no such resource" in err, (rc, err))
    rc, out, err, sent = run(follower, ["resource", "delete", "orders"])
    check("delete", rc == 0 and out == "OK orders deleted\n" and
          at_leader(sent) == [("DELETE", "/v1/resources/orders", {}, b"")], (rc, out, sent))
    rc, out, err, _ = run(leader, ["resource", "delete", "nosuch"])
    check("delete 404", rc == 3, (rc, err))


def test_lookup_plan(leader, follower):
    key = "user/42 x%&=?"
    rc, out, err, sent = run(follower, ["lookup", "orders", key])
    check("lookup", rc == 0 and out == "partition 3\nepoch 9\nprimary w2 10.0.0.6:7000\n"
          "replica w2 10.0.0.6:7000 in_sync\nreplica w1 10.0.0.5:7000 copying\n",
          (rc, out, err))
    check("lookup request", [(r[1], r[2], r[3]) for r in sent] ==
          [("GET", "/v1/resources/orders/lookup", {"key": [key]})], sent)
    rc, out, err, _ = run(leader, ["lookup", "users", "k"])
    check("lookup no primary", rc == 0 and "primary -\n" in out and "replica" not in out, out)
    rc, out, err, _ = run(leader, ["lookup", "orders", "k", "--json"])
    check("lookup --json", rc == 0 and json.loads(out)["primary"]["name"] == "w2", out)
    rc, out, err, _ = run(leader, ["lookup", "nosuch", "k"])
    check("lookup 404", rc == 3, (rc, err))
    rc, out, err, sent = run(leader, ["lookup", "orders", "k" * 5000])
    check("lookup key too long", rc == 2 and sent == [], (rc, err))

    rc, out, err, sent = run(follower, ["plan", "orders"])
    lines = out.splitlines()
    check("plan", rc == 0 and lines[0].split() == ["resource", "orders", "index", "57"] and
          [ln.split() for ln in lines[1:4]] ==
          [["PARTITION", "ADD", "DROP", "PRIMARY-FROM", "PRIMARY-TO"],
           ["3", "w4", "w2", "w2", "w1"], ["9", "w4,w5", "-", "-", "-"]] and
          lines[4] == "moves_total 3  lower_bound 2  primary_lower_bound 1", (rc, out, err))
    check("plan followed 307", [(r[0], r[1], r[2]) for r in sent] ==
          [("follower", "GET", "/v1/resources/orders/plan"),
           ("leader", "GET", "/v1/resources/orders/plan")], sent)
    rc, out, err, _ = run(leader, ["plan", "orders", "--json"])
    check("plan --json", rc == 0 and json.loads(out)["lower_bound"] == 2, out)
    rc, out, err, _ = run(leader, ["plan", "nosuch"])
    check("plan 404", rc == 3, (rc, err))


def test_events(leader, follower):
    rc, out, err, sent = run(follower, ["events"])
    check("events", rc == 0 and out.splitlines() == [
        "10 member_join member=w1",
        "11 member_status member=w2 status=draining",
        "14 clear member=w2 resource=orders partition=3",
        "14 grant member=w1 resource=orders partition=3 epoch=7",
        '20 copy member=w3 resource=orders partition=9 from=- note="exit 1"'], (rc, out, err))
    check("events request", [(r[1], r[2], r[3]) for r in sent] ==
          [("GET", "/v1/events", {"index": ["0"], "wait": ["0ms"]})], sent)
    rc, out, err, sent = run(leader, ["events", "--index", "14"])
    check("events --index", rc == 0 and out.splitlines() == [
        '20 copy member=w3 resource=orders partition=9 from=- note="exit 1"'], (rc, out))
    rc, out, err, sent = run(leader, ["events", "--index", "20", "--wait", "300ms"])
    check("events none", rc == 0 and out == "" and sent[0][3]["wait"] == ["300ms"], (rc, out))
    rc, out, err, _ = run(leader, ["events", "--index", "3"])
    check("events truncated", rc == 0 and "no longer all kept" in err and
          out.startswith("10 member_join"), (rc, out, err))
    rc, out, err, _ = run(leader, ["events", "--index", "11", "--json"])
    check("events --json", rc == 0 and out.count("\n") == 1 and
          [e["index"] for e in json.loads(out)["events"]] == [14, 14, 20], out)


def test_follow(leader):
    with LOCK:
        del REQUESTS[:]
    p = subprocess.Popen([CORRAL, "events", "--follow", "--index", "11", "--endpoints", leader],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def read_line(deadline_s):
        out = []
        t = threading.Thread(target=lambda: out.append(p.stdout.readline()), daemon=True)
        t.start()
        t.join(deadline_s)
        return out[0].decode() if out else None

    first = [read_line(5), read_line(5), read_line(5)]
    check("follow first page", first == [
        "14 clear member=w2 resource=orders partition=3\n",
        "14 grant member=w1 resource=orders partition=3 epoch=7\n",
        '20 copy member=w3 resource=orders partition=9 from=- note="exit 1"\n'], first)
    time.sleep(0.3)  # it is now blocked in the next query
    with LOCK:
        EVENTS.append({"index": 25, "type": "drop", "member": "w2", "resource": "orders",
                       "partition": 3})
        APPLIED["index"] = 25
        LOCK.notify_all()
    line = read_line(5)
    check("follow new event", line == "25 drop member=w2 resource=orders partition=3\n", line)
    time.sleep(0.3)
    start = time.monotonic()
    p.send_signal(signal.SIGINT)
    try:
        rc = p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = "still running 5 s after SIGINT"
    took = time.monotonic() - start
    err = p.stderr.read().decode()
    check("follow SIGINT", rc == 0 and took < 3 and err == "", (rc, took, err))
    with LOCK:
        queries = [r[3] for r in REQUESTS if r[2] == "/v1/events"]
    # 11, then 20 (the last event), then 25; each waiting the default 30 s.
    check("follow queries", [q["index"][0] for q in queries[:3]] == ["11", "20", "25"] and
          all(q["wait"] == ["30000ms"] for q in queries), queries)


def test_usage(leader):
    bad = [
        ["member", "show", "W1"], ["member", "show", "a/b"], ["member", "show", "x" * 65],
        ["member", "show", ""], ["member", "drain", "w 1"], ["member", "frob", "w1"],
        ["member"], ["member", "show"], ["member", "show", "w1", "w2"],
        ["member", "show", "w1", "--force"], ["member", "remove", "w1", "--wait", "301s"],
        ["member", "remove", "w1", "--wait", "6m"], ["member", "remove", "w1", "--wait", "1h"], ["member", "remove", "w1", "--wait", "-1"],
        ["member", "register", "w9"], ["member", "register", "w9", "--addr", "a b"],
        ["member", "register", "w9", "--addr", ""], ["member", "register", "w9", "--addr",
                                                     "h:1", "--zone", "Z"],
        ["member", "register", "w9", "--addr", "h:1", "--weight", "0"],
        ["member", "register", "w9", "--addr", "h:1", "--weight", "1001"],
        ["member", "register", "w9", "--addr", "x" * 261],
        ["members", "extra"], ["members", "--force"],
        ["resource", "create", "c"], ["resource", "create", "c", "--partitions", "8"],
        ["resource", "create", "c", "--partitions", "0", "--replicas", "1"],
        ["resource", "create", "c", "--partitions", "65537", "--replicas", "1"],
        ["resource", "create", "c", "--partitions", "abc", "--replicas", "1"],
        ["resource", "create", "c", "--partitions", "8", "--replicas", "0"],
        ["resource", "create", "c", "--partitions", "8", "--replicas", "8"],
        ["resource", "create", "C", "--partitions", "8", "--replicas", "2"],
        ["resource", "set", "orders"], ["resource", "set", "orders", "--replicas", "8"],
        ["resource", "set", "orders", "--partitions", "8", "--replicas", "2"],
        ["resource", "show", "Orders"], ["resource", "delete", "o" * 65], ["resource"],
        ["lookup", "orders"], ["lookup", "ORDERS", "k"], ["plan"], ["plan", "a..b!"],
        ["events", "--index", "-1"], ["events", "--index", "x"], ["events", "--wait", "301"],
        ["events", "extra"], ["events", "--follow=1"], ["resources", "--bogus"],
    ]
    for args in bad:
        rc, out, err, sent = run(leader, args)
        check(f"usage {args[:5]}", rc == 2 and out == "" and err.startswith("corral ") and
              sent == [], (rc, out, err, sent))
    rc, out, err, _ = run(leader, ["member", "show", "W1"])
    check("name message", "1-64 characters of [a-z0-9._-]" in err, err)
    rc, out, err, _ = run(leader, ["resource", "create", "c", "--partitions", "0",
                                   "--replicas", "1"])
    check("partitions message", "--partitions must be an integer within 1..65536" in err, err)
    for args in (["members"], ["member"], ["resources"], ["resource"], ["lookup"], ["plan"],
                 ["events"]):
        rc, out, err, sent = run(leader, [*args, "--help"])
        check(f"help {args}", rc == 0 and out.startswith("usage: corral ") and sent == [],
              (rc, err))
    p = subprocess.run([CORRAL, "--help"], capture_output=True, timeout=10)
    listed = p.stdout.decode()
    check("main help", all(f"  {c} " in listed for c in ("members", "member", "resources",
                                                         "resource", "lookup", "plan",
                                                         "events")), listed)


def main():
    servers = [serve(r) for r in ("leader", "follower", "noleader")]
    (_, leader), (_, follower), (_, noleader) = servers
    STATE["leader_url"] = leader
    pristine = copy.deepcopy((MEMBERS, RESOURCES))
    test_members(leader, follower)
    test_member_writes(leader, follower, noleader)
    test_resources(leader, follower)
    test_lookup_plan(leader, follower)
    test_events(leader, follower)
    test_follow(leader)
    test_usage(leader)
    check("stand-in state unchanged", (MEMBERS, RESOURCES) == pristine, "")
    for srv, _ in servers:
        srv.shutdown()
    for f in failures:
        print("FAIL", f)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
