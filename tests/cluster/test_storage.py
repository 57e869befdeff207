"""What a node does with damaged or foreign data directories, and with bad
flags or configuration: repair only a torn WAL tail; refuse anything else,
saying which file, without changing a byte on disk."""
import os
import socket
import subprocess

import pytest

from harness import CONVERGE_WAIT_S, EXIT_WAIT_S, CORRAL_BIN, tree_digest, wait_until


def stale_value(node, key):
    r = node.get(key, stale=True, timeout=2.0)
    return r.json["value"] if r is not None and r.status == 200 else None


def crashed_follower(cluster, keys):
    """Writes keys through the leader, waits for a follower to hold them,
    kills it with SIGKILL and returns it."""
    leader = cluster.wait_leader()
    for i in range(keys):
        r = leader.put(f"d/{i:03d}", f"v{i}")
        assert r is not None and r.status == 200, r
    node = cluster.followers(leader)[0]
    last = f"d/{keys - 1:03d}"
    wait_until("the follower has every key", lambda: stale_value(node, last) == f"v{keys - 1}",
               CONVERGE_WAIT_S)
    node.kill()
    return node


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x01]))


def expect_refusal(node, file_name):
    """Starts node, which must exit nonzero naming file_name and leave its
    data directory exactly as it was."""
    before = tree_digest(node.data_dir)
    node.start()
    rc = node.wait_exit()
    out = node.output()
    assert rc is not None, f"node started on a damaged data directory: {out[-2000:]}"
    assert rc != 0, out
    assert file_name in out, f"the message does not name {file_name}: {out[-2000:]}"
    after = tree_digest(node.data_dir)
    assert after == before, "the data directory changed"


# What a crash in the middle of a write leaves after the last durable
# record: part of a record, or a zero-filled block. (Cutting into a record
# that was already fsynced and acknowledged would be a disk losing
# acknowledged data, not a torn write: Raft assumes that never happens.)
@pytest.mark.parametrize("damage", ["append-garbage", "zero-block"])
def test_torn_wal_tail_is_cut_and_node_rejoins(cluster, damage):
    node = crashed_follower(cluster, 20)
    seg = os.path.join(node.data_dir, node.wal_segments()[-1])
    with open(seg, "rb") as f:
        records = len(f.read().rstrip(b"\0"))  # then preallocated zeros
    assert records > 16, seg
    with open(seg, "r+b") as f:  # in place, where the next record would go
        f.seek(records + 4)  # past a checksum's possible zero bytes
        if damage == "zero-block":
            f.write(bytes(4096))
        else:  # half a record
            f.write(b"\x2a\x00\x00\x00\x17\xc3garbage")
    node.start()
    wait_until("the node to serve /health",
               lambda: node.alive() and (r := node.request("GET", "/health", timeout=1.0))
               is not None and r.status == 200, 10)
    leader = cluster.wait_leader(nodes=cluster.nodes)
    assert leader.put("d/after", "x").status == 200
    wait_until("the node rejoined", lambda: stale_value(node, "d/after") == "x", CONVERGE_WAIT_S)
    assert stale_value(node, "d/000") == "v0"


def test_corrupt_wal_record_refuses_to_start(cluster):
    # Fewer entries than --snapshot-entries: one segment, nothing compacted.
    node = crashed_follower(cluster, 30)
    segs = node.wal_segments()
    assert segs, os.listdir(node.data_dir)
    seg = max(segs, key=lambda s: os.path.getsize(os.path.join(node.data_dir, s)))
    path = os.path.join(node.data_dir, seg)
    # The middle of its records (the file goes on with preallocated
    # zeros, docs/operations.md): good records follow it.
    with open(path, "rb") as f:
        records = len(f.read().rstrip(b"\0"))
    flip_byte(path, records // 2)
    expect_refusal(node, seg)


def test_corrupt_meta_refuses_to_start(cluster):
    node = crashed_follower(cluster, 5)
    meta = os.path.join(node.data_dir, "meta")
    flip_byte(meta, os.path.getsize(meta) // 2)
    expect_refusal(node, "meta")


def test_data_dir_of_another_cluster_is_refused(make_cluster):
    a = make_cluster().start()
    assert a.wait_leader().put("k", "v").status == 200
    for n in a.nodes:
        assert n.terminate() == 0
    b = make_cluster()  # other ports, so another --peers and cluster id
    b.node(1).data_dir = a.node(1).data_dir
    expect_refusal(b.node(1), "meta")
    # The same cluster, but node 2's directory given to node 1.
    a.node(1).data_dir = a.node(2).data_dir
    expect_refusal(a.node(1), "meta")


def run_server(args, cwd, timeout=EXIT_WAIT_S):
    try:
        p = subprocess.run([CORRAL_BIN, "server", "run", *args], cwd=cwd, capture_output=True,
                           stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server ran with {args}")
    return p.returncode, p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")


def good_args(node):
    return node.argv()[3:]  # drop CORRAL_BIN server run


def replace_flag(args, flag, value):
    """args with flag's value replaced (value None: the flag removed)."""
    i = args.index(flag)
    return args[:i] + ([flag, value] if value is not None else []) + args[i + 2:]


BAD_FLAGS = [
    ("--id", "0"), ("--id", "4"), ("--id", "one"), ("--data-dir", ""),
    ("--cluster-addr", "127.0.0.1"), ("--http-addr", "127.0.0.1:99999"),
    ("--peers", ""), ("--election-timeout-ms", "0"), ("--election-timeout-ms", "x"),
    ("--heartbeat-ms", "-5"), ("--snapshot-entries", "many"),
]


@pytest.mark.parametrize("flag,value", BAD_FLAGS)
def test_bad_flag_is_a_usage_error(make_cluster, tmp_path, flag, value):
    node = make_cluster().node(1)
    node.data_dir = str(tmp_path / "never-created")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    rc, out = run_server(replace_flag(good_args(node), flag, value), cwd)
    assert rc == 2, (rc, out)
    assert flag in out, f"the message does not name {flag}: {out!r}"
    assert "Sanitizer" not in out
    assert not os.path.exists(node.data_dir) and os.listdir(cwd) == []


def test_unknown_flag_is_a_usage_error(make_cluster, tmp_path):
    node = make_cluster().node(1)
    node.data_dir = str(tmp_path / "never-created")
    rc, out = run_server(good_args(node) + ["--bogus"], tmp_path)
    assert rc == 2 and "--bogus" in out, (rc, out)
    assert not os.path.exists(node.data_dir)


# The file is missing, or not INI at all.
@pytest.mark.parametrize("content", [None, "[server\nid = = 1\n\x01garbage"])
def test_bad_config_file_is_a_usage_error(make_cluster, tmp_path, content):
    node = make_cluster().node(1)
    node.data_dir = str(tmp_path / "never-created")
    conf = tmp_path / "corral.conf"
    if content is not None:
        conf.write_text(content)
    rc, out = run_server(good_args(node) + ["--config", str(conf)], tmp_path)
    assert rc == 2, (rc, out)
    assert str(conf) in out or "corral.conf" in out, out
    assert not os.path.exists(node.data_dir)


# Typos that used to be read silently: a key given twice (the later won), an
# indented line (inih appends it to the key above), a directory (read as an
# empty file).
@pytest.mark.parametrize("content,expect", [
    ("id = 1\n; comment\nid = 2\n", ["corral.conf:3", "corral.conf:1", "duplicate key 'id'"]),
    ("[server]\nlog-level = info\n\n[server]\nlog-level = debug\n",
     ["corral.conf:5", "corral.conf:2", "duplicate key 'log-level'"]),
    ("id = 1\n  log-level = info\n", ["corral.conf:2", "corral.conf:1", "indented"]),
    (None, ["is a directory"]),
])
def test_config_file_typos_are_usage_errors(make_cluster, tmp_path, content, expect):
    node = make_cluster().node(1)
    node.data_dir = str(tmp_path / "never-created")
    conf = tmp_path / "corral.conf"
    if content is None:
        conf.mkdir()
    else:
        conf.write_text(content)
    args = replace_flag(good_args(node), "--id", None)
    rc, out = run_server(args + ["--config", str(conf)], tmp_path)
    assert rc == 2, (rc, out)
    for e in expect:
        assert e in out, f"{e!r} not in {out!r}"
    assert not os.path.exists(node.data_dir)


# An empty entry in --peers is a peer left out by mistake, not a shorter list.
@pytest.mark.parametrize("edit", [
    lambda p: p.replace(",", ",,", 1),
    lambda p: p + ",",
    lambda p: "," + p,
    lambda p: p.replace(",", ", ,", 1),
])
def test_empty_peers_entry_is_a_usage_error(make_cluster, tmp_path, edit):
    node = make_cluster().node(1)
    node.data_dir = str(tmp_path / "never-created")
    args = good_args(node)
    peers = args[args.index("--peers") + 1]
    rc, out = run_server(replace_flag(args, "--peers", edit(peers)), tmp_path)
    assert rc == 2, (rc, out)
    assert "--peers" in out and "empty" in out, out
    assert not os.path.exists(node.data_dir)


# The HTTP address cannot be listened on: the message says why (libmicrohttpd
# does not, so the node binds a socket itself to learn errno). Also a single
# node without --peers, which must stay a cluster of one.
@pytest.mark.parametrize("why", ["in use", "foreign"])
def test_http_listen_failure_names_the_cause(tmp_path, why):
    held = socket.socket()
    try:
        held.bind(("127.0.0.1", 0))
        held.listen()
        cluster_port = socket.socket()
        cluster_port.bind(("127.0.0.1", 0))
        raft = f"127.0.0.1:{cluster_port.getsockname()[1]}"
        cluster_port.close()
        if why == "in use":
            addr, expect = f"127.0.0.1:{held.getsockname()[1]}", "address in use"
        else:  # TEST-NET-1 (RFC 5737): no host has it
            addr, expect = "192.0.2.1:8140", "not an address of this host"
        rc, out = run_server(["--data-dir", str(tmp_path / "d"), "--cluster-addr", raft,
                              "--http-addr", addr], tmp_path)
    finally:
        held.close()
    assert rc == 1, (rc, out)
    assert f"cannot listen for HTTP on {addr}: {expect}" in out, out
