#!/usr/bin/env python3
"""Runs the built `corral placement` on the documented example and on bad
inputs, checking output and exit codes (0 ok, 2 usage or input error).
Usage: test_placement_cli.py CORRAL EXAMPLE.json"""
import json
import os
import random
import subprocess
import sys
import tempfile

CORRAL, EXAMPLE = sys.argv[1], sys.argv[2]
failures = []


def run(args, stdin=None):
    p = subprocess.run([CORRAL] + args, input=stdin, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def check(name, cond, detail=""):
    if not cond:
        failures.append(f"{name}: {detail}")


def write(tmp, name, data):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        f.write(data if isinstance(data, str) else json.dumps(data))
    return path


def expect_input_error(tmp, name, data, needle, extra_args=()):
    path = write(tmp, name + ".json", data)
    rc, out, err = run(["placement", *extra_args, path])
    check(name, rc == 2, f"exit {rc}, stderr {err!r}")
    check(name, needle in err, f"stderr {err!r} lacks {needle!r}")
    check(name, "Traceback" not in err and "Sanitizer" not in err, err)


def main():
    with open(EXAMPLE) as f:
        example = json.load(f)
    n_events = len(example["events"])

    rc, out, err = run(["placement", EXAMPLE])
    check("table exit", rc == 0, err)
    lines = out.strip().splitlines()
    check("table rows", len(lines) == n_events + 2, out)
    check("table header", lines and lines[0].split()[:2] == ["event", "type"], out)
    for line in lines[1:]:
        cols = line.split()
        check("table violations", cols[-1] == "0", line)

    rc, out, err = run(["placement", "--json", EXAMPLE])
    check("json exit", rc == 0, err)
    rows = [json.loads(line) for line in out.splitlines()]
    check("json rows", len(rows) == n_events + 1, out)
    for r in rows:
        check("json violations", all(v == 0 for v in r["violations"].values()), r)
        check("json moves >= LB", r["moves"] >= r["moves_lower_bound"], r)
        check("json primaries", r["primary_changes"] == r["promotions"] + r["fresh_primaries"], r)
    single = [r for r in rows if r["type"] in ("join", "leave", "crash")]
    check("json single-member moves == LB",
          all(r["moves"] == r["moves_lower_bound"] for r in single), single)

    with tempfile.TemporaryDirectory() as tmp:
        # Same cluster, members and zone names listed in another order.
        shuffled = json.loads(json.dumps(example))
        random.Random(7).shuffle(shuffled["members"])
        rc2, out2, _ = run(["placement", "--json", write(tmp, "shuffled.json", shuffled)])
        check("order independence", rc2 == 0 and out2 == out, "outputs differ")

        # Events from a separate file, and the cluster from stdin.
        events = write(tmp, "events.json", example["events"])
        bare = dict(example)
        del bare["events"]
        rc3, out3, err3 = run(["placement", "--json", "--events", events, "-"],
                              stdin=json.dumps(bare))
        check("--events and stdin", rc3 == 0 and out3 == out, err3)

        rc, out, err = run(["placement", os.path.join(tmp, "absent.json")])
        check("missing file", rc == 2 and "absent.json" in err, err)
        expect_input_error(tmp, "malformed", '{"partitions": 8,', "malformed JSON")
        expect_input_error(tmp, "not-object", "[1, 2]", "top level must be an object")
        base = {"partitions": 64, "replicas": 3, "members": [{"id": 1, "zone": "a"}]}

        def variant(**kw):
            d = json.loads(json.dumps(base))
            d.update(kw)
            return d

        expect_input_error(tmp, "p0", variant(partitions=0), '"partitions" is 0')
        expect_input_error(tmp, "p-missing", {"replicas": 3}, 'missing "partitions"')
        expect_input_error(tmp, "r-too-big", variant(replicas=9), '"replicas" is 9')
        expect_input_error(tmp, "r-type", variant(replicas="3"), '"replicas" must be an integer')
        expect_input_error(tmp, "dup", variant(members=[{"id": 1}, {"id": 1}]),
                           "duplicate member id 1")
        expect_input_error(tmp, "weight0", variant(members=[{"id": 1, "weight": 0}]),
                           '"weight" is 0')
        expect_input_error(tmp, "members-type", variant(members={"id": 1}),
                           '"members" must be an array')
        expect_input_error(tmp, "unknown-event", variant(events=[{"type": "explode"}]),
                           'unknown event type "explode"')
        expect_input_error(tmp, "event-no-type", variant(events=[{"id": 3}]), 'missing "type"')
        expect_input_error(tmp, "leave-unknown", variant(events=[{"type": "leave", "id": 9}]),
                           "no live member with id 9")
        expect_input_error(tmp, "join-dup", variant(events=[{"type": "join", "id": 1}]),
                           "duplicate member id 1")
        expect_input_error(tmp, "lose-empty-zone",
                           variant(events=[{"type": "lose_zone", "zone": "nowhere"}]),
                           "no live member in that zone")
        expect_input_error(tmp, "events-type", variant(events={"type": "join"}),
                           "events must be a JSON array")
        # A bad event late in the trace prints nothing before failing.
        path = write(tmp, "late.json", variant(events=[{"type": "rebalance"}, {"type": "nope"}]))
        rc, out, err = run(["placement", path])
        check("late error", rc == 2 and out == "" and "events[1]" in err, (rc, out, err))

    rc, out, err = run(["placement", "--frobnicate", EXAMPLE])
    check("unknown option", rc == 2 and "--frobnicate" in err, err)
    rc, out, err = run(["placement"])
    check("no file", rc == 2, err)
    rc, out, err = run(["placement", "--help"])
    check("placement --help", rc == 0 and "usage" in out, out)
    rc, out, err = run(["--help"])
    check("--help", rc == 0 and "placement" in out, out)
    rc, out, err = run(["--version"])
    check("--version", rc == 0 and out.startswith("corral "), out)
    rc, out, err = run(["no-such-command"])
    check("unknown command", rc == 2, err)

    for f in failures:
        print("FAIL", f)
    print(f"cli placement: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
