"""One broker command (issue 16, item 5).

``htcluster broker`` and ``python -m htcluster.broker`` used to be two
commands (click and argparse) with different options: only one had
``--port-file``, only the other ``--log-level`` and ``--idle-timeout never``,
click's help said the idle timeout defaulted to "never" while the code used
3600 s, and ``--timeout never`` was refused by one.  Now both run
:data:`htcluster.broker.command.broker_command`; its options, defaults and
help agree with the code and with ``docs/guide/broker.rst``.  ``htcluster
cluster`` takes ``--base-port`` and reports each broker's PID.
"""
from __future__ import annotations

import ast
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from htcluster.broker import command as broker_module
from htcluster.broker.command import broker_command, main
from htcluster.broker.limits import Limits
from htcluster.broker.sqlitedb import BUSY_TIMEOUT
from htcluster.cli import main as cli_main
from htcluster.testing import free_port

DOCS = Path(__file__).resolve().parents[1] / "docs" / "guide" / "broker.rst"


def help_options(text: str) -> list[str]:
    """The long option names of a click help text, in order."""
    return re.findall(r"^\s+(?:-\w, )?(--[a-z-]+)", text, re.M)


def test_both_entry_points_are_the_same_command():
    assert cli_main.commands["broker"] is broker_command
    through_cli = CliRunner().invoke(cli_main, ["broker", "--help"])
    assert through_cli.exit_code == 0
    done = subprocess.run([sys.executable, "-m", "htcluster.broker", "--help"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert help_options(done.stdout) == help_options(through_cli.output)
    body = through_cli.output.split("Options:", 1)[1]
    # the same options, defaults and help, word for word (lines wrap to each terminal's width)
    assert done.stdout.split("Options:", 1)[1].split() == body.split()
    assert {"--port-file", "--log-level", "--idle-timeout", "--busy-timeout"} <= set(help_options(body))
    assert "--timeout" not in help_options(body)


def test_the_defaults_shown_are_the_ones_used():
    limits = Limits()
    defaults = {param.name: param.default for param in broker_command.params}
    assert defaults["idle_timeout"] == limits.idle_timeout == 3600.0
    assert defaults["frame_timeout"] == limits.frame_timeout
    assert defaults["max_connections"] == limits.max_connections
    assert defaults["max_frame_size"] == limits.max_frame_size
    assert defaults["workers"] == limits.workers and defaults["stop_grace"] == limits.stop_grace
    assert defaults["max_inflight_bytes"] is None and defaults["max_answer_size"] is None
    assert defaults["busy_timeout"] == BUSY_TIMEOUT
    assert "[default: 3600.0]" in " ".join(CliRunner().invoke(broker_command, ["--help"]).output.split())


def test_the_guide_lists_every_option_with_its_default():
    text = DOCS.read_text()
    rows = dict(re.findall(r"^``(--[a-z-]+)``\s+(\S.*?\S)\s{2,}", text, re.M))
    options = {opt: param for param in broker_command.params for opt in param.opts if opt.startswith("--")}
    assert set(rows) == set(options) - {"--help"}
    for option, shown in rows.items():
        default = options[option].default
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            assert shown == f"``{default:.12g}``", option
        elif isinstance(default, str):
            assert shown == f"``{default}``", option
        else:
            assert default is None and not shown.startswith("``"), option


@pytest.mark.parametrize("value, expected", [("never", None), ("NEVER", None), ("2.5", 2.5), ("600", 600.0)])
def test_idle_timeout_takes_seconds_or_never(value, expected):
    assert broker_module.Seconds().convert(value, None, None) == expected


@pytest.mark.parametrize("argv, message", [
    (["--idle-timeout", "0"], "more than 0 seconds"),
    (["--idle-timeout", "soon"], "neither a number of seconds nor 'never'"),
    (["--timeout", "5"], "No such option"),
    (["--max-frame-size", "1000", "--max-inflight-bytes", "10"], "max_inflight_bytes"),
    (["--workers", "0"], "workers must be a positive integer"),
])
def test_bad_options_are_usage_errors(argv, message, capsys):
    assert main(["--port", "0", *argv]) == 2
    assert message in capsys.readouterr().err


def test_idle_timeout_never_serves_and_the_port_file_works(tmp_path, raw_client_factory):
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, "-m", "htcluster.broker", "--port", "0", "--port-file", str(port_file),
                             "--idle-timeout", "never", "--log-level", "info"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().endswith("\n")):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        port = int(port_file.read_text())
        assert raw_client_factory(f"127.0.0.1:{port}").status().code == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"htcluster broker on 127.0.0.1:{port}" in err and "INFO" in err  # --log-level info took effect
    assert not port_file.exists()


def test_the_broker_package_imports_no_client_layer():
    allowed = {"htcluster._thrift", "htcluster.errors", "htcluster.codes", "htcluster.hosts", "htcluster.hql"}
    package = Path(broker_module.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            assert node.level != 0 or not (node.module or "").startswith("htcluster"), (path.name, node.module)
            if node.level >= 2:
                base = "htcluster." + node.module if node.module else "htcluster"
                targets = [base] if node.module else [f"{base}.{alias.name}" for alias in node.names]
                for target in targets:
                    assert any(target == a or target.startswith(a + ".") for a in allowed), (path.name, target)


def _free_pair() -> int:
    """A port P such that P and P + 1 are free now."""
    while True:
        base = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base


def test_cluster_takes_a_base_port_and_reports_pids(tmp_path, raw_client_factory):
    base = _free_pair()
    pid_file = tmp_path / "brokers.pid"
    proc = subprocess.Popen([sys.executable, "-m", "htcluster", "cluster", "--brokers", "2", "--base-port", str(base),
                             "--pid-file", str(pid_file)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline()]
        while lines[-1] and not lines[-1].startswith("export HYPERTABLE_HOSTS="):
            lines.append(proc.stdout.readline())
        hosts = lines[-1].strip().split("=", 1)[1].split(",")
        assert hosts == [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]
        reported = dict(re.findall(r"^broker (\S+) pid (\d+)$", "".join(lines), re.M))
        pids = [int(line) for line in pid_file.read_text().split()]
        assert [int(reported[h]) for h in hosts] == pids
        os.kill(pids[0], signal.SIGKILL)  # stop exactly one broker, by its pid
        time.sleep(1.5)  # the command looks at its members every 0.5 s
        assert proc.poll() is None
        assert raw_client_factory(hosts[1]).status().code == 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert f"broker 127.0.0.1:{base} exited" in err
    assert not pid_file.exists()


def test_base_port_past_the_last_port_is_refused():
    result = CliRunner().invoke(cli_main, ["cluster", "--brokers", "3", "--base-port", "65534"])
    assert result.exit_code == 2 and "go past 65535" in result.output
    assert isinstance(broker_command, click.Command)
