"""``with htcluster.deadline(s):`` bounds every call inside; nested scopes can only shorten it."""
from __future__ import annotations

import time

import pytest

import htcluster
from htcluster import ConfigError, DeadlineExceeded, Pool, Replicas
from htcluster._call.scope import current_deadline


def test_scopes_nest_and_only_shorten():
    assert current_deadline() is None
    with htcluster.deadline(10.0) as outer:
        assert current_deadline() == outer
        with htcluster.deadline(1.0) as inner:
            assert inner < outer and current_deadline() == inner
        with htcluster.deadline(60.0) as longer:
            assert longer == outer  # a nested scope never extends the outer one
        assert current_deadline() == outer
    assert current_deadline() is None
    for bad in (0, -1.0, float("nan"), float("inf"), True, "2"):
        with pytest.raises(ConfigError):
            with htcluster.deadline(bad):
                pass


def test_a_scope_bounds_calls_that_name_no_timeout(local_broker, fault_proxy_factory):
    proxy = fault_proxy_factory(local_broker.address)
    proxy.blackhole()  # connections are accepted, answers never come
    pool = Pool(proxy.address, socket_timeout=60.0)
    replicas = Replicas([proxy.address], socket_timeout=60.0, retry=False)
    for call in (lambda: pool.call("status"), lambda: replicas.call("status")):
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded), htcluster.deadline(0.5):
            call()
        assert time.monotonic() - start < 10.0  # the scope, not the 60 s socket timeout
    assert replicas.health.down() == {}  # the caller's deadline is not the host's fault
    with htcluster.deadline(30.0):  # an explicit, shorter timeout still wins inside a scope
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            replicas.call("status", timeout=0.3)
        assert time.monotonic() - start < 10.0
    pool.close()
    replicas.close()


def test_a_pool_pointed_at_an_http_server_fails_fast():
    """Once blocked for more than 60 s (a 300 s default): an HTTP server waits for a request line that
    never comes, so the socket timeout is what ends the call; it defaults to 30 s now, and it is kept."""
    import http.server
    import threading

    from htcluster import BrokerUnavailable

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        assert Pool(address).socket_timeout == 30.0  # the library's default (was 300 s)
        pool = Pool(address, socket_timeout=1.0)
        start = time.monotonic()
        with pytest.raises(BrokerUnavailable, match="timed out after 1 s"):
            pool.call("status")
        assert time.monotonic() - start < 15.0
        pool.close()
    finally:
        server.shutdown()
        server.server_close()
