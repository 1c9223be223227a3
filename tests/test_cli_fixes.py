"""The ``htcluster`` command as a person meets it (issue 9, item 6): bounded waits, the real
address of ``broker --port 0``, hints that name the failed host, loads that fail loudly,
replicas for several hosts, Ctrl-C that says what was committed, collapsed versions, and
memory proportional to a huge line."""
from __future__ import annotations

import gzip
import random
import re
import signal
import socket
import subprocess
import sys
import time
import tracemalloc

import pytest
from click.testing import CliRunner

from htcluster.cli import main, weblog
from htcluster.testing import LocalCluster, free_port

from conftest import open_raw_client

#: Generous: the machine is shared; what is tested is "seconds, not 300 s".
BOUND = 20.0


def run(*args: str, input: "str | bytes | None" = None):
    return CliRunner().invoke(main, list(args), input=input)


def run_process(*args: str, timeout: float = 90.0, input: "str | None" = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "htcluster", *args], capture_output=True, text=True,
                          timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)


def count_cells(address: str, namespace: str, hql: str) -> int:
    client = open_raw_client(address)
    try:
        return len(client.hql_query(client.namespace_open(namespace), hql).cells or [])
    finally:
        client._iprot.trans.close()


@pytest.fixture
def silent_broker():
    """A server that accepts connections (the kernel does) and reads requests, but never answers."""
    server = socket.create_server(("127.0.0.1", 0), backlog=64)
    yield f"127.0.0.1:{server.getsockname()[1]}"
    server.close()


@pytest.fixture(scope="module")
def shared():
    with LocalCluster(2, shared_data=True) as cluster:
        yield cluster


# ------------------------------------------------------------------ --timeout


@pytest.mark.parametrize("command", [
    ("hql", "SHOW TABLES"),
    ("load", "--lines", "10"),
    ("status",),
], ids=["hql", "load", "status"])
def test_timeout_bounds_every_command_on_a_broker_that_never_answers(silent_broker, command):
    start = time.monotonic()
    proc = run_process(command[0], "--hosts", silent_broker, "--timeout", "1", *command[1:])
    elapsed = time.monotonic() - start
    assert proc.returncode == 1, proc.stderr
    assert elapsed < BOUND  # not the 300 s socket timeout
    assert "Traceback" not in proc.stderr
    assert silent_broker in proc.stdout + proc.stderr
    if command[0] != "status":
        assert "did not answer within 1 s" in proc.stderr and "--timeout" in proc.stderr


def test_timeout_must_be_positive():
    result = run("hql", "--timeout", "0", "SHOW TABLES")
    assert result.exit_code == 2 and "--timeout" in result.output


# ------------------------------------------------------------------ broker --port 0


def test_broker_port_zero_prints_and_writes_the_port_it_bound(tmp_path):
    port_file = tmp_path / "broker.port"
    proc = subprocess.Popen([sys.executable, "-m", "htcluster", "broker", "--port", "0",
                             "--port-file", str(port_file), "--data", str(tmp_path / "b.sqlite")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().endswith("\n")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        port = int(port_file.read_text())
        assert port > 0
        client = open_raw_client(f"127.0.0.1:{port}")
        assert client.status().code == 0
        client._iprot.trans.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"127.0.0.1:{port}" in err and "127.0.0.1:0 " not in err
    assert not port_file.exists()  # removed at exit: a stale port is never read by a script


def test_broker_on_a_port_in_use_prints_only_the_error(tmp_path):
    busy = socket.create_server(("127.0.0.1", 0))
    port = busy.getsockname()[1]
    try:
        proc = run_process("broker", "--port", str(port), "--port-file", str(tmp_path / "p"))
    finally:
        busy.close()
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]  # one line: no start line first
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert not (tmp_path / "p").exists()


# ------------------------------------------------------------------ hints


def test_cannot_reach_hint_names_the_host_and_port_that_failed():
    port = free_port()
    proc = run_process("hql", "--hosts", f"127.0.0.1:{port}", "SHOW TABLES")
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}" in proc.stderr
    assert f"htcluster broker --port {port}" in proc.stderr
    assert "--port 15867" not in proc.stderr


def test_hint_for_several_dead_hosts_names_each():
    ports = [free_port(), free_port()]
    hosts = [f"127.0.0.1:{p}" for p in ports]
    result = run("status", "--hosts", ",".join(hosts), "--timeout", "2")  # status: its own table
    assert result.exit_code == 1
    result = run("hql", "--hosts", ",".join(hosts), "SHOW TABLES")
    assert result.exit_code == 1
    line = result.output.strip().splitlines()[-1]
    assert all(h in line for h in hosts) and "--port 15867" not in line


# ------------------------------------------------------------------ nothing parsed


def random_bytes(n: int) -> bytes:
    return random.Random(1).randbytes(n)


@pytest.mark.parametrize("content", [
    pytest.param(None, id="etc-passwd"),
    pytest.param(b"", id="empty"),
    pytest.param(random_bytes(20000), id="random-bytes"),
    pytest.param(gzip.compress(b"no log here\n" * 50), id="gzip-of-text"),
])
def test_load_of_nothing_parseable_fails_and_names_the_format(broker_address, tmp_path, content):
    path = "/etc/passwd" if content is None else str(tmp_path / "input")
    if content is not None:
        (tmp_path / "input").write_bytes(content)
    result = run("load", "--hosts", broker_address, "--namespace", "cli_nothing", "--input", path)
    assert result.exit_code == 1, result.output
    assert "nothing was loaded" in result.output
    assert "Apache" in result.output and "tsv" in result.output  # the formats it expects
    if content and content.startswith(random_bytes(4)):
        assert "it does not look like text" in result.output  # not a wall of escaped bytes


def test_demo_on_etc_passwd_fails_before_starting_brokers():
    proc = run_process("demo", "--input", "/etc/passwd", timeout=60)
    assert proc.returncode != 0
    assert "OK" not in proc.stdout
    assert "replicas (one data file)" not in proc.stdout  # no cluster was started for nothing
    assert "nothing to load" in proc.stderr


# ------------------------------------------------------------------ several hosts: replicas


def test_several_hosts_default_to_replicas(shared):
    result = run("load", "--hosts", ",".join(shared.hosts), "--namespace", "cli_default", "--lines", "40")
    assert result.exit_code == 0, result.output
    assert "through replicas" in result.output
    for host in shared.hosts:  # one data file: every replica sees every row once
        assert count_cells(host, "cli_default", "SELECT ResponseCode FROM LogDb") == 40
    explicit = run("load", "--hosts", ",".join(shared.hosts), "--strategy", "pool", "--lines", "5")
    assert explicit.exit_code == 2 and "--strategy pool writes to one host" in explicit.output


# ------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_during_load_reports_progress_and_exits_130(broker_address):
    lines = "\n".join(weblog.generate_lines(100, seed=21)) + "\n"
    proc = subprocess.Popen([sys.executable, "-m", "htcluster", "load", "--hosts", broker_address,
                             "--namespace", "cli_ctrl_c", "--input", "-", "--batch", "10"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(lines)
        proc.stdin.flush()  # stdin stays open: the load waits for more
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if count_cells(broker_address, "cli_ctrl_c", "SELECT ResponseCode FROM LogDb") == 100:
                    break
            except Exception:  # namespace or table not created yet
                pass
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)  # before communicate() closes stdin: an end of input must not beat the signal
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert re.search(r"interrupted after 100 lines read; 700 cells were acknowledged", err), err


# ------------------------------------------------------------------ hql collapses versions


def test_hql_shows_a_reloaded_cell_once(broker_address, tmp_path, fault_proxy_factory):
    log = tmp_path / "twice.log"
    log.write_text("\n".join(weblog.generate_lines(30, seed=8)) + "\n")
    for _ in range(2):  # the same cells, same timestamps: stored as two revisions
        loaded = run("load", "--hosts", broker_address, "--namespace", "cli_twice", "--input", str(log))
        assert loaded.exit_code == 0, loaded.output
    assert count_cells(broker_address, "cli_twice", "SELECT ResponseCode FROM LogDb") == 60  # raw: twice
    shown = run("hql", "--hosts", broker_address, "--namespace", "cli_twice", "SELECT ResponseCode FROM LogDb")
    assert shown.exit_code == 0 and shown.output.splitlines()[-1] == "(30 cells)"
    second = fault_proxy_factory(broker_address)  # another address of the same broker
    both = run("hql", "--hosts", f"{broker_address},{second.address}",
               "--namespace", "cli_twice", "--broadcast", "SELECT ResponseCode FROM LogDb")
    assert both.exit_code == 0, both.output
    assert both.output.count("(30 cells)") == 2


# ------------------------------------------------------------------ a huge line


def test_one_huge_line_costs_memory_proportional_to_it(broker_address, tmp_path):
    size = 10 * 1024 * 1024
    good = list(weblog.generate_lines(3, seed=2))
    huge = good[1].replace('"GET /', '"GET /' + "x" * size, 1)
    log = tmp_path / "huge.log"
    log.write_text("\n".join([good[0], huge, good[2]]) + "\n")
    tracemalloc.start()
    try:
        result = run("load", "--hosts", broker_address, "--namespace", "cli_huge", "--input", str(log))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0, result.output
    assert "lines read                3" in result.output
    assert peak < 20 * size, f"peak {peak / 2**20:.0f} MiB for a {size / 2**20:.0f} MiB line"
    assert count_cells(broker_address, "cli_huge", "SELECT Request FROM LogDb") == 3


def test_hints_follow_how_each_host_failed():
    """The hint for a host depends on the failure: refused here, refused elsewhere, silent, no connect."""
    from thrift.transport.TTransport import TTransportException

    from htcluster.cli.output import explain
    from htcluster.errors import BrokerUnavailable, NoHostAvailable

    timed_out = TTransportException.TIMED_OUT
    errors = {
        "127.0.0.1:4000": BrokerUnavailable("refused", host="127.0.0.1:4000", sent=False,
                                            type=TTransportException.NOT_OPEN),
        "ht2:15867": BrokerUnavailable("refused", host="ht2:15867", sent=False, type=TTransportException.NOT_OPEN),
        "ht3:15867": BrokerUnavailable("timed out after 2 s", host="ht3:15867", sent=True, type=timed_out),
        "ht4:15867": BrokerUnavailable("connect timed out", host="ht4:15867", sent=False, type=timed_out),
    }
    message = explain(NoHostAvailable("no broker could serve status", errors), timeout=2.0)
    assert "start a broker there with 'htcluster broker --port 4000'" in message
    assert "check that a ThriftBroker runs at ht2:15867" in message  # not told to start one locally
    assert "ht3:15867 accepted the connection but did not answer within 2 s" in message
    assert "ht4:15867 did not accept a connection within 2 s" in message
