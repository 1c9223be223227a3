"""The broker serves with file descriptor numbers above 1023 (issue 15, item 6).

``select.select`` takes no descriptor numbered 1024 or more (``ValueError:
filedescriptor out of range in select()``); the broker waits with selectors
and ``poll`` only.  The broker runs in a subprocess through a small wrapper
that first holds 1,100 descriptors open, so that every socket and pipe the
broker opens afterwards (its listener, its clients, its signal pipe, its
connections to the storage process) is numbered above 1023.
"""
from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from brokertest import cell, make_table
from htcluster.testing import free_port, wait_for_port
from htcluster.types import ScanSpec

#: Descriptors held open before the broker starts.
HELD = 1100

WRAPPER = f"""
import os, resource, runpy, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
need = {HELD} + 512
if soft != resource.RLIM_INFINITY and soft < need:
    resource.setrlimit(resource.RLIMIT_NOFILE, (need if hard == resource.RLIM_INFINITY else min(need, hard), hard))
null = os.open(os.devnull, os.O_RDONLY)
held = [os.dup(null) for _ in range({HELD})]
probe = os.dup(null)
assert probe > 1023, probe
os.close(probe)
sys.argv = ["python -m htcluster.broker", *sys.argv[1:]]
runpy.run_module("htcluster.broker", run_name="__main__", alter_sys=True)
"""


def _hard_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


@pytest.mark.skipif(_hard_limit() != -1 and _hard_limit() < HELD + 512,
                    reason="the hard limit of open files is too low to hold 1,100 descriptors")
def test_the_broker_serves_large_writes_with_descriptors_above_1023(tmp_path, raw_client_factory):
    port = free_port()
    command = [sys.executable, "-c", WRAPPER, "--host", "127.0.0.1", "--port", str(port),
               "--data", str(tmp_path / "fds.sqlite")]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    try:
        wait_for_port("127.0.0.1", port, timeout=60, process=process)  # type: ignore[arg-type]
        client = raw_client_factory(f"127.0.0.1:{port}", timeout=120.0)
        client.namespace_create("fds")
        ns = client.namespace_open("fds")
        make_table(client, ns, "t", "c")
        value = b"x" * 4096
        cells = [cell(f"r{i:05d}", "c", value) for i in range(4096)]  # a 16 MiB frame
        client.set_cells(ns, "t", cells)
        assert len(client.get_cells(ns, "t", ScanSpec(keys_only=True))) == len(cells)
        others = [raw_client_factory(f"127.0.0.1:{port}") for _ in range(20)]
        assert all(other.status().code == 0 for other in others)
        process.send_signal(signal.SIGTERM)  # the stop goes through the signal pipe's selector
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err.decode(errors="replace")
        assert b"out of range" not in err
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
