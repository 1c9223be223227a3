"""The ``htcluster`` command: in-process through click's CliRunner, and as real processes
where the process itself matters (serving, signals, what reaches the terminal)."""
from __future__ import annotations

import gzip
import os
import pty
import re
import select as select_module
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from htcluster.cli import weblog
from htcluster.cli import main
from htcluster.testing import LocalCluster, free_port, wait_for_port

from conftest import open_raw_client


@pytest.fixture(scope="module")
def separate():
    """Two brokers with a data file each (shards)."""
    with LocalCluster(2, shared_data=False) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def shared():
    """Two brokers over one data file (replicas)."""
    with LocalCluster(2, shared_data=True) as cluster:
        yield cluster


def run(*args: str, input: "str | bytes | None" = None, env: "dict | None" = None):
    return CliRunner().invoke(main, list(args), input=input, env=env)


def run_process(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "htcluster", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def select(address: str, namespace: str, hql: str) -> list:
    client = open_raw_client(address)
    try:
        ns = client.namespace_open(namespace)
        return client.hql_query(ns, hql).cells
    finally:
        client._iprot.trans.close()


def dead_address() -> str:
    return f"127.0.0.1:{free_port()}"


def test_help_lists_every_command_and_the_hosts_default():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("broker", "cluster", "demo", "hql", "load", "status"):
        assert command in result.output
    assert "$HYPERTABLE_HOSTS or localhost:15867" in run("hql", "--help").output


def test_bad_hosts_is_a_usage_error():
    result = run("status", "--hosts", "127.0.0.1:notaport")
    assert result.exit_code == 2
    assert "port must be an integer" in result.output


def test_unreachable_broker_is_one_line_without_traceback():
    proc = run_process("hql", "--hosts", dead_address(), "SHOW TABLES")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot reach a broker")
    assert "htcluster broker --port" in lines[0]  # says what to do


def test_hosts_default_comes_from_the_environment(local_broker):
    dead = dead_address()
    result = run("status", env={"HYPERTABLE_HOSTS": f"{local_broker.address},{dead}"})
    assert result.exit_code == 1
    rows = {line.split()[0]: line.split()[1] for line in result.output.splitlines()[2:4]}
    assert rows == {local_broker.address: "up", dead: "down"}
    assert f"1 of 2 hosts down: {dead}" in result.output
    assert "Connection refused" in result.output.splitlines()[3]  # the error column says why


def test_status_all_up_exits_zero(separate):
    result = run("status", "--hosts", ",".join(separate.hosts))
    assert result.exit_code == 0, result.output
    header, _, *rows = result.output.splitlines()
    assert header.split() == ["host", "state", "latency", "ms", "pool", "error"]
    assert [line.split()[:2] for line in rows] == [[host, "up"] for host in separate.hosts]
    for line in rows:  # latency in ms, then the state of the pool the ping went through
        assert float(line.split()[2]) > 0 and "0 in use, 1 idle" in line


def test_hql_shows_cells_lines_and_broker_errors(broker_address):
    hosts = ("--hosts", broker_address)
    assert run("hql", *hosts, "CREATE NAMESPACE cli_hql").exit_code == 0
    ns = (*hosts, "--namespace", "cli_hql")
    assert run("hql", *ns, "CREATE TABLE t (a, b)").output.strip() == "ok"
    run("hql", *ns, 'INSERT INTO t VALUES ("2020-01-02 03:04:05", "r1", "a", "v1"), ("r2", "b:q", "v2")')
    out = run("hql", *ns, "SELECT * FROM t").output.splitlines()
    assert out[0].split() == ["row", "column", "timestamp", "(UTC)", "value"]
    assert out[2].split()[:2] == ["r1", "a"] and out[2].split()[-1] == "v1"
    assert out[3].split()[:2] == ["r2", "b:q"] and out[3].split()[-1] == "v2"
    assert out[-1] == "(2 cells)"
    assert run("hql", *ns, "SHOW TABLES").output.splitlines() == ["t", "(1 line)"]
    missing = run("hql", *ns, "SELECT * FROM nope")
    assert missing.exit_code == 1 and "error code 22" in missing.output
    bad = run("hql", *ns, "SELEC * FROM t")
    assert bad.exit_code == 1 and "error code 11" in bad.output
    no_ns = run("hql", *hosts, "--namespace", "cli_absent", "SHOW TABLES")
    assert no_ns.exit_code == 1 and "error code 40" in no_ns.output


def test_hql_broadcast_answers_per_host_and_names_the_failed_one(separate):
    dead = dead_address()
    for i, host in enumerate(separate.hosts):
        run("hql", "--hosts", host, "CREATE NAMESPACE bc")
        run("hql", "--hosts", host, "--namespace", "bc", f"CREATE TABLE only_on_{i} (a)")
    result = run("hql", "--hosts", ",".join(separate.hosts + [dead]), "--namespace", "bc",
                 "--broadcast", "SHOW TABLES")
    assert result.exit_code == 1
    sections = result.output.split("== ")[1:]
    assert sections[0].startswith(f"{separate.hosts[0]} ==\nonly_on_0\n")
    assert sections[1].startswith(f"{separate.hosts[1]} ==\nonly_on_1\n")
    assert sections[2].startswith(f"{dead} ==\nerror: cannot reach a broker")
    assert "1 of 3 hosts failed" in result.output


def load_report(output: str) -> dict[str, str]:
    fields = {}
    for line in output.splitlines():
        for name in ("lines read", "lines skipped", "cells written"):
            if line.startswith(name):
                fields[name] = line[len(name):].split()[0].replace(",", "")
    return fields


def test_load_generated_log_through_a_pool(broker_address):
    result = run("load", "--hosts", broker_address, "--namespace", "cli_pool", "--lines", "300", "--batch", "64")
    assert result.exit_code == 0, result.output
    assert load_report(result.output) == {"lines read": "300", "lines skipped": "0", "cells written": "2100"}
    cells = select(broker_address, "cli_pool", "SELECT Request FROM LogDb")
    expected = list(weblog.iter_entries(weblog.generate_lines(300)))
    assert sorted(c.key.row for c in cells) == sorted(e.row for e in expected)


def test_load_through_replicas_writes_once(shared):
    result = run("load", "--hosts", ",".join(shared.hosts), "--strategy", "replicas",
                 "--namespace", "cli_rep", "--lines", "200")
    assert result.exit_code == 0, result.output
    for host in shared.hosts:  # one data file: every replica sees every row, once
        assert len(select(host, "cli_rep", "SELECT ResponseCode FROM LogDb")) == 200


@pytest.mark.parametrize("shard_by", ["row", "client"])
def test_load_through_shards_splits_the_rows(separate, shard_by):
    namespace = f"cli_shard_{shard_by}"
    result = run("load", "--hosts", ",".join(separate.hosts), "--strategy", "shards", "--shard-by", shard_by,
                 "--namespace", namespace, "--lines", "400")
    assert result.exit_code == 0, result.output
    per_host = [select(h, namespace, "SELECT ClientIpAddress FROM LogDb") for h in separate.hosts]
    assert all(per_host) and sum(map(len, per_host)) == 400
    clients = [{c.value for c in cells} for cells in per_host]
    if shard_by == "client":
        assert not clients[0] & clients[1]  # one client's rows on one shard
    else:
        assert clients[0] & clients[1]  # heavy clients are spread


def run_on_a_terminal(*args: str, timeout: float = 60.0) -> tuple[subprocess.CompletedProcess, str]:
    """Run ``htcluster ARGS`` with stderr on a pseudo-terminal; return the process and what the terminal got."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "htcluster", *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    chunks = []
    try:
        while select_module.select([master], [], [], timeout)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        stdout, _ = proc.communicate(timeout=timeout)
    finally:
        os.close(master)
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout.decode(), ""), \
        b"".join(chunks).decode(errors="replace")


def test_load_shows_a_progress_bar_on_a_terminal_only(broker_address, tmp_path):
    log = tmp_path / "access.log.gz"
    log.write_bytes(gzip.compress(("\n".join(weblog.generate_lines(6000, seed=9)) + "\n").encode()))
    proc, terminal = run_on_a_terminal("load", "--hosts", broker_address, "--namespace", "cli_tty",
                                       "--input", str(log), "--batch", "100")
    assert proc.returncode == 0, terminal
    assert "loading" in terminal and "100%" in terminal and "6,000 lines, 42,000 cells" in terminal
    assert any(0 < int(pct) < 100 for pct in re.findall(r"(\d+)%", terminal))  # it moved as batches went
    assert load_report(proc.stdout) == {"lines read": "6000", "lines skipped": "0", "cells written": "42000"}
    piped = run_process("load", "--hosts", broker_address, "--namespace", "cli_tty", "--lines", "50")
    assert piped.returncode == 0 and "loading" not in piped.stderr + piped.stdout  # no terminal: no bar


@pytest.mark.parametrize("packed", [True, False], ids=["gzip", "plain"])
def test_load_counts_malformed_lines_and_reads_stdin(broker_address, packed):
    good = list(weblog.generate_lines(20, seed=5))
    text = "\n".join(good[:10] + ["not a log line", ""] + good[10:] + ["x - - [bad] \"GET\" 200 1"]) + "\n"
    namespace = f"cli_stdin_{'gzip' if packed else 'plain'}"
    result = run("load", "--hosts", broker_address, "--namespace", namespace, "--input", "-",
                 input=gzip.compress(text.encode()) if packed else text.encode())
    assert result.exit_code == 0, result.output
    assert load_report(result.output) == {"lines read": "23", "lines skipped": "3", "cells written": "140"}
    assert "skipped line 11: not an Apache" in result.output
    assert len(select(broker_address, namespace, "SELECT UserAgent FROM LogDb")) == 20


def test_load_errors_name_what_to_do(broker_address, tmp_path):
    missing = run("load", "--hosts", broker_address, "--input", str(tmp_path / "absent.log"))
    assert missing.exit_code == 2 and "cannot read" in missing.output and "--input" in missing.output
    truncated = tmp_path / "cut.log.gz"
    truncated.write_bytes(gzip.compress("\n".join(weblog.generate_lines(2000)).encode())[:3000])
    cut = run("load", "--hosts", broker_address, "--namespace", "cli_cut", "--input", str(truncated))
    assert cut.exit_code == 1 and "truncated gzip" in cut.output
    assert re.search(r"stopped after [\d,]+ lines read; \d+ cells were acknowledged", cut.output)
    run("hql", "--hosts", broker_address, "CREATE NAMESPACE cli_other")
    run("hql", "--hosts", broker_address, "--namespace", "cli_other", "CREATE TABLE LogDb (a)")
    other = run("load", "--hosts", broker_address, "--namespace", "cli_other", "--lines", "5")
    assert other.exit_code == 1 and "exists without the LogDb column families" in other.output
    two = run("load", "--hosts", f"{broker_address},{dead_address()}", "--strategy", "pool", "--lines", "5")
    assert two.exit_code == 2 and "use --strategy replicas or shards" in two.output


def test_broker_command_serves_until_sigterm(tmp_path):
    port = free_port()
    command = [sys.executable, "-m", "htcluster", "broker", "--port", str(port), "--data", str(tmp_path / "b.sqlite")]
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_for_port("127.0.0.1", port, process=proc)
        client = open_raw_client(f"127.0.0.1:{port}")
        assert client.status().code == 0
        client._iprot.trans.close()
        second = run_process("broker", "--port", str(port), "--data", str(tmp_path / "c.sqlite"))
        assert second.returncode == 1 and f"cannot listen on 127.0.0.1:{port}" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert (tmp_path / "b.sqlite").exists()


def start_cluster_command(*args: str) -> "tuple[subprocess.Popen, list[str]]":
    """Start ``htcluster cluster ARGS`` and return the process and the hosts it printed."""
    proc = subprocess.Popen([sys.executable, "-m", "htcluster", "cluster", *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = ""
    deadline = time.monotonic() + 30
    while not line.startswith("export HYPERTABLE_HOSTS=") and time.monotonic() < deadline:
        line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise AssertionError(f"htcluster cluster printed no hosts: {proc.communicate()[1]}")
    return proc, line.strip().split("=", 1)[1].split(",")


def test_cluster_command_prints_hosts_and_stops_on_ctrl_c():
    proc, hosts = start_cluster_command("--brokers", "2", "--separate")
    try:
        assert len(hosts) == 2
        assert run("status", "--hosts", ",".join(hosts)).exit_code == 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)  # generous: each broker stops gracefully (and saves its coverage data)
    assert proc.returncode == 0
    assert run("status", "--hosts", ",".join(hosts), "--timeout", "1").exit_code == 1  # all stopped


def test_cluster_command_keeps_serving_when_one_broker_dies():
    proc, hosts = start_cluster_command("--brokers", "3", "--shared")
    try:
        victim = hosts[0].rsplit(":", 1)[1]
        subprocess.run(["pkill", "-9", "-f", f"htcluster.broker .*--port {victim} "], check=True)
        time.sleep(1.5)  # the command polls its members every 0.5 s
        assert proc.poll() is None, "the cluster command stopped when one broker died"
        assert run("status", "--hosts", ",".join(hosts[1:])).exit_code == 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert f"broker {hosts[0]} exited" in err


def test_broker_command_rejects_a_data_file_that_is_not_sqlite(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a database, just text " * 100)
    result = run("broker", "--port", "0", "--data", str(bad))
    assert result.exit_code == 1
    assert "cannot use data file" in result.output and "give --data" in result.output
