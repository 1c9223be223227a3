"""htcluster.compat: upstream client code runs unmodified after install_as_hypertable()."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import htcluster.compat as compat
from htcluster import types
from htcluster.errors import BrokerUnavailable, ConfigError, NoHostAvailable
from htcluster import Replicas
from htcluster import Resource
from htcluster.testing import free_port

FLOW = Path(__file__).with_name("upstream_client_flow.py")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def installed():
    compat.install_as_hypertable()
    yield
    compat.uninstall_as_hypertable()


def test_upstream_imports_fail_without_install():
    compat.uninstall_as_hypertable()
    for name in ("hypertable.thriftclient", "hyperthrift.gen.ttypes"):
        with pytest.raises(ImportError):
            importlib.import_module(name)


def test_upstream_names_are_htclusters_own_classes(installed):
    from hyperthrift.gen import ClientService
    from hyperthrift.gen.ttypes import Cell, ClientException, Key, MutateSpec, ScanSpec
    from hyperthrift.gen2 import HqlService
    from hyperthrift.gen2.ttypes import HqlResult
    from hypertable.thriftclient import ThriftClient

    assert (Cell, Key, ScanSpec, MutateSpec, HqlResult, ClientException) == (
        types.Cell, types.Key, types.ScanSpec, types.MutateSpec, types.HqlResult, types.ClientException)
    assert ThriftClient is compat.ThriftClient and issubclass(ThriftClient, Resource)
    assert issubclass(ThriftClient, HqlService.Client) and issubclass(HqlService.Client, ClientService.Client)
    compat.install_as_hypertable()  # idempotent
    assert sys.modules["hyperthrift.gen2.HqlService"] is HqlService


def test_uninstall_restores_what_was_there():
    sentinel = type(sys)("hypertable")
    sys.modules["hypertable"] = sentinel
    try:
        compat.install_as_hypertable()
        assert sys.modules["hypertable"] is not sentinel
        compat.uninstall_as_hypertable()
        assert sys.modules["hypertable"] is sentinel and "hyperthrift" not in sys.modules
    finally:
        sys.modules.pop("hypertable", None)


def test_upstream_client_test_flow_runs_unmodified(broker_address):
    """The client_test.py-style program, with only install_as_hypertable() run before it."""
    host, port = broker_address.rsplit(":", 1)
    runner = ("import sys, runpy, htcluster.compat; htcluster.compat.install_as_hypertable(); "
              "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", runner, str(FLOW), host, port], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "tables: thrift_test" in out
    assert "hql: [('k0', b'v0')]" in out
    assert ("scan: [('k0', 'v0'), ('py-k1', 'py-v1'), ('py-k2', 'py-v2'), ('py-put-k1', 'py-put-v1'), "
            "('py-put-k2', 'py-put-v2')]") in out
    assert "get_cells: ['py-k1', 'py-k2']" in out
    assert "get_cell: b'py-put-v2'" in out
    assert "ClientException: 22 HYPERTABLE table does not exist" in out  # caught by upstream's except
    assert out.rstrip().endswith("done")


def test_except_client_exception_catches_routed_broker_errors(installed, broker_address):
    """Upstream's ``except ClientException`` (from hyperthrift.gen.ttypes) catches Replicas' errors."""
    from hyperthrift.gen.ttypes import ClientException

    with Replicas([broker_address]) as replicas:
        with pytest.raises(ClientException) as info:
            replicas.call("namespace_open", "no_such_namespace_anywhere")
    assert info.value.code and "no_such_namespace_anywhere" in info.value.message


def test_thrift_client_arguments_are_upstreams(broker_address):
    host, port = broker_address.rsplit(":", 1)
    client = compat.ThriftClient(host, int(port), timeout_ms=2500, do_open=0)
    assert (client.socket_timeout, client.timeout_ms, client.is_active, client.do_close) == (2.5, 2500, False, 0)
    with client:  # upstream's __enter__ opens
        assert client.is_active and client.do_close == 1 and client.status().code == 0
        assert client.transport.isOpen()
    assert not client.is_active
    assert client.open(1000) is client and client.is_active  # open(timeout_ms) as upstream
    client.close()
    assert compat.ThriftClient(host, int(port)).socket_timeout == 300.0  # upstream's 300000 ms default


@pytest.mark.parametrize("args, words", [
    (("localhost", 0), ["port", "1..65535"]),
    (("localhost", "http"), ["port"]),
    (("", 15867), ["host"]),
    (("localhost", 15867, 0), ["timeout_ms", "milliseconds"]),
    (("localhost", 15867, -5), ["timeout_ms"]),
    (("localhost", 15867, "5000"), ["timeout_ms"]),
])
def test_bad_arguments_are_config_errors(args, words):
    with pytest.raises(ConfigError) as info:
        compat.ThriftClient(*args, do_open=0)
    assert all(w in str(info.value) for w in words)


def test_unreachable_broker_is_a_transport_exception():
    from thrift.transport.TTransport import TTransportException

    with pytest.raises(TTransportException) as info:
        compat.ThriftClient("127.0.0.1", free_port(), timeout_ms=5000)
    assert isinstance(info.value, BrokerUnavailable) and not isinstance(info.value, NoHostAvailable)
