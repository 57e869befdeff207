"""Fixtures for the cluster tests (the harness is in harness.py): a time
limit on every test, and clusters that are torn down (only the processes
they started are killed) with their logs printed when a test fails."""
import signal

import pytest

from harness import TEST_TIMEOUT_S, Cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def time_limit():
    def expired(signum, frame):
        pytest.fail(f"test ran over {TEST_TIMEOUT_S} s")
    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def make_cluster(tmp_path, request):
    """Builds clusters (not started) in tmp_path; on teardown kills what
    they started and, when the test failed, prints the node logs."""
    made = []

    def make(size=3, name=None):
        sub = tmp_path / (name or f"c{len(made)}")
        sub.mkdir()
        c = Cluster(sub, size)
        made.append(c)
        return c

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for c in made:
        c.stop_all()
        if failed:
            print(c.logs())


@pytest.fixture
def cluster(make_cluster):
    """A started 3-node cluster with an agreed leader."""
    c = make_cluster().start()
    c.wait_leader()
    return c
