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


WRONG_CLUSTER_BOUND_S = 10  # REFUSED_EXIT_MS in src/runtime/node_impl.h


def stranger(make_cluster, node_id, peer_addrs):
    """A node not of any cluster made here: it is node_id of --peers
    peer_addrs plus its own address (so another cluster id)."""
    n = make_cluster(size=1).node(1)
    n.id = node_id
    addrs = list(peer_addrs)
    addrs.insert(node_id - 1, n.cluster_addr)
    return n, ",".join(addrs)


def test_node_of_another_cluster_stops(cluster, make_cluster):
    n, peers = stranger(make_cluster, 4, [m.cluster_addr for m in cluster.nodes])
    t0 = time.monotonic()
    n.start(peers=peers)
    rc = n.wait_exit(timeout=WRONG_CLUSTER_BOUND_S + 15)
    took = time.monotonic() - t0
    out = n.output()
    assert rc == 1, (rc, out[-3000:])
    assert took >= WRONG_CLUSTER_BOUND_S - 1, (took, out[-3000:])
    assert "of another cluster" in out and "--peers" in out and "data dir" in out, out[-3000:]
    for m in cluster.nodes:
        assert f"node {m.id} at {m.cluster_addr}" in out, out[-3000:]
    # The cluster kept working, and logged a few refusals, not one a dial.
    assert cluster.wait_leader().put("k", "v").status == 200
    for m in cluster.nodes:
        refusals = m.output().count("refused hello")
        assert 1 <= refusals <= 6, (m, refusals)


# Peers that are down, or some that refuse while another is down: the node
# keeps trying (they may come back, or be the cluster it belongs to).
def test_node_with_peers_down_or_some_refusing_keeps_running(cluster, make_cluster):
    down = make_cluster(size=3)  # nodes 2 and 3 never start: nothing listens there
    alone = down.node(1).start()
    some, peers = stranger(make_cluster, 4, [cluster.node(1).cluster_addr,
                                             cluster.node(2).cluster_addr,
                                             down.node(3).cluster_addr])
    some.start(peers=peers)
    time.sleep(WRONG_CLUSTER_BOUND_S + 3)
    assert alone.alive(), alone.output()[-3000:]
    assert some.alive(), some.output()[-3000:]
    assert "of another cluster" not in alone.output() + some.output()
    assert "wrong cluster id" in some.output()  # it was refused, and said so


def test_node_of_another_cluster_name_stops(make_cluster):
    """The same --peers list, another --cluster-name: refused by the
    handshake's name check on both sides (naming both names), and the
    node stops like any node of another cluster."""
    c = make_cluster(size=3)
    for n in c.nodes[:2]:
        n.start()
    c.wait_leader(nodes=c.nodes[:2])
    odd = c.node(3)
    t0 = time.monotonic()
    odd.start(extra=["--cluster-name", "other"])
    rc = odd.wait_exit(timeout=WRONG_CLUSTER_BOUND_S + 15)
    out = odd.output()
    assert rc == 1, (rc, out[-3000:])
    assert time.monotonic() - t0 >= WRONG_CLUSTER_BOUND_S - 1
    assert "of another cluster (ours: 'other'" in out and "cluster 'corral'" in out, out[-3000:]
    seen = c.node(1).output() + c.node(2).output()
    assert "in cluster 'other'" in seen and "'corral'" in seen, seen[-3000:]
    assert c.wait_leader(nodes=c.nodes[:2]).put("k", "v").status == 200
