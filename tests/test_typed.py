"""The typed broker methods of routed calls (generated from the IDL), blocking and asyncio, call and
type-check as declared."""
from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from htcluster import ConfigError, Replicas, Resources, Shards
from htcluster.aio import AsyncBrokerCalls, AsyncNamespaceCalls, AsyncReplicas, AsyncResources, AsyncShards
from htcluster.events import CallSucceeded, Event
from htcluster.testing import free_port
from htcluster.types import Cell, Key, ScanSpec, Status
from htcluster._routing.typed import BrokerCalls, NamespaceCalls

ROOT = Path(__file__).resolve().parent.parent


def test_the_generated_modules_match_the_idl():
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_typed.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "_routing/typed.py is up to date" in done.stdout and "_aio/typed.py is up to date" in done.stdout


def test_the_async_twins_have_the_same_methods_as_coroutines():
    for sync, twin in ((NamespaceCalls, AsyncNamespaceCalls), (BrokerCalls, AsyncBrokerCalls)):
        methods = {name for name in vars(sync) if not name.startswith("_")}
        assert methods == {name for name in vars(twin) if not name.startswith("_")}
        for name in methods - {"name"}:
            assert inspect.iscoroutinefunction(getattr(twin, name)), name
            assert inspect.signature(getattr(twin, name)) == inspect.signature(getattr(sync, name)), name


def test_typed_calls_route_like_call(local_broker):
    replicas = Replicas([local_broker.address], socket_timeout=30.0)
    if not replicas.broker.namespace_exists("typed"):
        replicas.broker.namespace_create("typed")
    logs = replicas.namespace("typed")
    if not logs.table_exists("t"):
        logs.hql_query("CREATE TABLE t (a)")
    logs.set_cells("t", [Cell(Key("r1", "a", ""), b"v1")])  # stamped and failed over like call("set_cells")
    cells = logs.get_cells("t", ScanSpec())
    assert [c.key.row for c in cells] == ["r1"] and cells[0].key.timestamp is not None
    assert logs.get_cell("t", "r1", "a") == b"v1"
    assert isinstance(replicas.broker.status(), Status)
    resources = Resources([local_broker.address], namespace="typed")
    assert resources.namespace().get_cell("t", "r1", "a") == b"v1"  # the default namespace
    shards = Shards([(local_broker.address, "only")])
    assert shards.namespace("only", "typed").get_cell("t", "r1", "a") == b"v1"
    with pytest.raises(ConfigError, match="needs a namespace"):
        Resources([local_broker.address]).namespace()
    with pytest.raises(KeyError):
        shards.namespace("elsewhere", "typed")
    for target in (replicas, resources, shards):
        target.close()


@pytest.mark.asyncio
async def test_async_typed_calls_route_like_call(local_broker):
    dead = f"127.0.0.1:{free_port()}"
    answered: list[tuple[str, str, object]] = []

    def record(event: Event) -> None:
        if isinstance(event, CallSucceeded):
            answered.append((event.method, event.host, event.namespace))

    async with AsyncReplicas([dead, local_broker.address], socket_timeout=30.0, connect_timeout=5.0) as replicas:
        replicas.listeners.register(record)
        if not await replicas.broker.namespace_exists("typed"):
            await replicas.broker.namespace_create("typed")
        logs = replicas.namespace("typed")
        assert isinstance(logs, AsyncNamespaceCalls) and logs.name == "typed"
        if not await logs.table_exists("t"):
            await logs.hql_query("CREATE TABLE t (a)")
        # a write: the first replica is down, so it fails over to the second, stamped like call("set_cells")
        await logs.set_cells("t", [Cell(Key("ar1", "a", ""), b"av1")])
        assert dead in replicas.health.down()
        assert ("set_cells", local_broker.address, "typed") in answered
        cells = await logs.get_cells("t", ScanSpec(row_regexp="^ar"))
        assert [c.key.row for c in cells] == ["ar1"] and cells[0].key.timestamp is not None
        assert await logs.get_cell("t", "ar1", "a") == b"av1"
        assert isinstance(await replicas.broker.status(), Status)
        assert {"get_cells", "get_cell", "status"} <= {method for method, _, _ in answered}  # the routed path
    async with AsyncResources([local_broker.address], namespace="typed") as resources:
        assert await resources.namespace().get_cell("t", "ar1", "a") == b"av1"  # the default namespace
        assert isinstance(await resources.broker.status(), Status)
        with pytest.raises(ConfigError, match="needs a namespace"):
            AsyncResources([local_broker.address]).namespace()
    async with AsyncShards([(local_broker.address, "only")]) as shards:
        assert await shards.namespace("only", "typed").get_cell("t", "ar1", "a") == b"av1"
        with pytest.raises(KeyError):
            shards.namespace("elsewhere", "typed")


def test_mypy_checks_typed_calls(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(textwrap.dedent("""
        from htcluster import Replicas
        from htcluster.types import Cell, ScanSpec

        replicas = Replicas("h1,h2")
        cells: list[Cell] = replicas.namespace("logs").get_cells("LogDb", ScanSpec())
        value: bytes = replicas.namespace("logs").get_cell("LogDb", "row", "cf")
        wrong: str = replicas.namespace("logs").get_cells(7, ScanSpec())
        replicas.namespace("logs").get_cels("LogDb", ScanSpec())
    """))
    async_sample = tmp_path / "async_sample.py"
    async_sample.write_text(textwrap.dedent("""
        from htcluster.aio import AsyncReplicas, AsyncResources, AsyncShards
        from htcluster.quart_ext import Hypertable
        from htcluster.types import Cell, ScanSpec, Status

        async def main(replicas: AsyncReplicas, resources: AsyncResources, shards: AsyncShards,
                       ht: Hypertable) -> None:
            cells: list[Cell] = await replicas.namespace("logs").get_cells("LogDb", ScanSpec())
            status: Status = await replicas.broker.status()
            up: Status = await resources.broker.status()
            value: bytes = await resources.namespace().get_cell("LogDb", "row", "cf")
            shard: bytes = await shards.namespace("eu", "logs").get_cell("LogDb", "row", "cf")
            bound: list[Cell] = await ht.namespace("logs").get_cells("LogDb", ScanSpec())
            wrong: str = await replicas.namespace("logs").get_cells(7, ScanSpec())
            unawaited: list[Cell] = replicas.namespace("logs").get_cells("LogDb", ScanSpec())
            await replicas.namespace("logs").get_cels("LogDb", ScanSpec())
    """))
    done = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--strict", "--follow-imports=silent",
                           str(sample), str(async_sample)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith(str(sample))]
    assert len(lines) == 3, done.stdout  # the two errors of `wrong`, and the misspelt method
    assert any("get_cels" in line for line in lines)
    assert any('"int"' in line and '"str"' in line for line in lines)
    lines = [line for line in done.stdout.splitlines() if line.startswith(str(async_sample)) and " error: " in line]
    # the two errors of `wrong`, the coroutine not awaited, the misspelt method; nothing else
    assert len(lines) == 4, done.stdout
    assert any("get_cels" in line for line in lines)
    assert any('"int"' in line and '"str"' in line for line in lines)
    assert any(":15:" in line and "Coroutine" in line for line in lines), done.stdout
