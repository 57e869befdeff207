"""Starting a node (issue 13): a start that cannot listen writes nothing to
the data dir; a node refused by every peer for another cluster id stops;
a port scan of the cluster port does not flood the log."""
import os
import re
import socket
import time

import pytest

from harness import EXIT_WAIT_S, tree_digest, wait_until


def hold_port(port):
    """A listening socket on 127.0.0.1:port, as another program would hold it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # The port may have connections in TIME_WAIT from the node's last run;
    # a listening socket still keeps any other from binding it.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


# "fresh": no data dir; "empty": the operator made it; "existing": it holds a
# node's state, which must not change by a byte.
@pytest.mark.parametrize("which", ["http", "cluster"])
@pytest.mark.parametrize("data", ["fresh", "empty", "existing"])
def test_failed_listen_writes_nothing(make_cluster, which, data):
    c = make_cluster(size=1)
    node = c.node(1)
    if data == "existing":
        node.start()
        c.wait_leader()
        assert node.put("k", "v").status == 200
        assert node.terminate() == 0
    elif data == "empty":
        os.mkdir(node.data_dir)
    before = tree_digest(node.data_dir) if data == "existing" else None
    addr = node.http_addr if which == "http" else node.cluster_addr
    held = hold_port(port_of(addr))
    try:
        node.start()
        rc = node.wait_exit()
    finally:
        held.close()
    out = node.output()
    assert rc == 1, (rc, out)
    assert addr in out and ("address in use" in out or "address already in use" in out), out
    if data == "fresh":
        assert not os.path.exists(node.data_dir), os.listdir(node.data_dir)
    elif data == "empty":
        assert os.listdir(node.data_dir) == []
    else:
        assert tree_digest(node.data_dir) == before, "the data directory changed"
    # The port free again, the same command line starts.
    if data == "existing":
        node.start()
        c.wait_leader()
        assert node.get("k").json["value"] == "v"


def log_lines(node):
    with open(node.log_path, "rb") as f:
        return f.read().count(b"\n")


# A port scan, or anything else opening and closing connections to the
# cluster port without a handshake: a few lines per remote address per
# 10 s, then a count of what was left out.
def test_port_scan_does_not_flood_the_log(cluster):
    node = cluster.node(1)
    before = log_lines(node)
    host, port = node.cluster_addr.rsplit(":", 1)
    for i in range(500):
        s = socket.create_connection((host, int(port)), timeout=5)
        if i % 2:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")  # not a hello
        s.close()
    # The node has seen every connection once it answers after the last.
    wait_until("the node to answer", lambda: node.status() is not None, 10)
    time.sleep(0.5)
    grown = log_lines(node) - before
    assert grown < 20, f"{grown} lines:\n{node.output()[-3000:]}"
    assert node.alive()
    assert cluster.wait_leader().put("after-scan", "x").status == 200
    # When the interval ends, one line counts what was left out.
    wait_until("the suppressed-lines summary",
               lambda: re.search(r"127\.0\.0\.1: \((\d+) more suppressed", node.output()), 15)
    n = int(re.search(r"127\.0\.0\.1: \((\d+) more suppressed", node.output()).group(1))
    assert 450 < n < 500, node.output()[-3000:]
