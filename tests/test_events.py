"""The listener API of htcluster.events, with synthetic events (no sockets needed)."""
from __future__ import annotations

import dataclasses
import logging
import os
import threading

import pytest

from htcluster import events
from htcluster.errors import ConfigError, PoolTimeout
from htcluster.events import (EVENT_KINDS, CallFailed, CallStarted, CallSucceeded, Event,
                              HostUp, LatencyWindow, Listeners)


@pytest.fixture(autouse=True)
def clean_global():
    """Every test starts and ends with an empty process-wide registry."""
    before = len(events.listeners)
    yield
    assert len(events.listeners) == before, "a test left a global listener behind"


def started(host="h:1", attempt=1):
    return CallStarted(host, "status", None, attempt, ())


# -- the events --------------------------------------------------------------

def test_every_event_is_a_frozen_slotted_dataclass_with_a_unique_kind():
    assert len(EVENT_KINDS) == 16
    for kind, cls in EVENT_KINDS.items():
        assert issubclass(cls, Event) and cls.kind == kind
        assert dataclasses.is_dataclass(cls)
        assert "__slots__" in cls.__dict__
        assert cls.__dataclass_params__.frozen
    ev = CallSucceeded("h:1", "get_cell", "ns", 1, 0.25)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.duration = 1.0  # type: ignore[misc]
    assert ev.args == () and ev.kind == "call_succeeded"


def test_host_comes_first_in_every_event_but_budget():
    for cls in EVENT_KINDS.values():
        names = [f.name for f in dataclasses.fields(cls)]
        if cls is events.BudgetExhausted:
            assert names == ["what"]
        elif cls is events.MembershipChanged:  # about many hosts at once
            assert names == ["added", "removed", "hosts", "drain"]
        else:
            assert names[0] == "host", cls


def test_call_event_fields_in_contract_order():
    err = PoolTimeout("x")
    ev = CallFailed("h:1", "hql_query", "ns", 2, 0.5, err, ("SELECT 1",))
    assert (ev.host, ev.method, ev.namespace, ev.attempt, ev.duration, ev.error, ev.args) == \
        ("h:1", "hql_query", "ns", 2, 0.5, err, ("SELECT 1",))


# -- registration and emission ------------------------------------------------

def test_listeners_run_in_registration_order_then_the_parents():
    parent = Listeners(parent=None)
    child = Listeners(parent=parent)
    seen = []
    parent.register(lambda e: seen.append("parent"))
    child.register(lambda e: seen.append("first"))
    child.register(lambda e: seen.append("second"))
    child.emit(started())
    assert seen == ["first", "second", "parent"]
    seen.clear()
    parent.emit(started())  # a parent does not reach its children
    assert seen == ["parent"]


def test_register_is_a_decorator_and_idempotent_and_unregister_removes():
    reg = Listeners(parent=None)
    seen = []

    @reg.register
    def listener(event):
        seen.append(event)

    assert listener.__name__ == "listener"  # returned unchanged
    reg.register(listener)
    assert len(reg) == 1
    reg.emit(started())
    assert len(seen) == 1
    reg.unregister(listener)
    reg.unregister(listener)  # no-op the second time
    assert not reg and len(reg) == 0
    reg.emit(started())
    assert len(seen) == 1


def test_bound_methods_unregister_though_each_access_is_a_new_object():
    reg = Listeners(parent=None)

    class Recorder:
        def __init__(self):
            self.seen = []

        def record(self, event):
            self.seen.append(event)

    rec = Recorder()
    reg.register(rec.record)
    reg.register(rec.record)
    assert len(reg) == 1
    reg.unregister(rec.record)
    assert len(reg) == 0


def test_object_with_on_kind_methods_gets_only_those_events():
    reg = Listeners(parent=None)

    class Calls:
        def __init__(self):
            self.ok, self.failed = [], []

        def on_call_succeeded(self, event):
            self.ok.append(event)

        def on_call_failed(self, event):
            self.failed.append(event)

    obj = Calls()
    assert reg.register(obj) is obj
    assert obj in reg
    reg.emit(started())
    reg.emit(CallSucceeded("h:1", "status", None, 1, 0.1))
    reg.emit(CallFailed("h:1", "status", None, 1, 0.1, OSError("x")))
    reg.emit(HostUp("h:1"))
    assert [e.kind for e in obj.ok] == ["call_succeeded"]
    assert [e.kind for e in obj.failed] == ["call_failed"]
    reg.unregister(obj)
    assert not reg


def test_neither_callable_nor_on_methods_is_a_config_error():
    reg = Listeners(parent=None)
    with pytest.raises(ConfigError, match="on_<kind>"):
        reg.register(object())
    with pytest.raises(ConfigError, match="parent"):
        Listeners(parent="global")


def test_exception_in_a_listener_is_logged_with_traceback_and_never_raised(caplog):
    reg = Listeners(parent=None)
    after = []

    def broken(event):
        raise RuntimeError("listener bug")

    reg.register(broken)
    reg.register(after.append)
    with caplog.at_level(logging.ERROR, logger="htcluster.events"):
        reg.emit(started())
    assert after, "a failing listener must not stop the next one"
    [record] = [r for r in caplog.records if r.name == "htcluster.events"]
    assert record.levelno == logging.ERROR
    assert record.exc_info and record.exc_info[0] is RuntimeError
    assert "call_started" in record.getMessage()


def test_keyboard_interrupt_in_a_listener_passes_through():
    reg = Listeners(parent=None)

    def interrupt(event):
        raise KeyboardInterrupt

    reg.register(interrupt)
    with pytest.raises(KeyboardInterrupt):
        reg.emit(started())


def test_bool_is_false_when_empty_and_true_when_any_level_listens():
    top = Listeners(parent=None)
    mid = Listeners(parent=top)
    low = Listeners(parent=mid)
    assert not top and not mid and not low
    top.register(print)
    assert top and mid and low
    top.unregister(print)
    assert not low
    low.register(print)
    assert low and not mid


def test_default_parent_is_the_global_registry_and_both_receive():
    local = Listeners()
    assert local.parent is events.listeners
    got_local, got_global = [], []
    local.register(got_local.append)
    assert not events.listeners  # registering locally does not make the global one listen
    events.register(got_global.append)
    try:
        ev = started()
        local.emit(ev)
        assert got_local == [ev] and got_global == [ev]
        other = Listeners()
        assert other  # a fresh per-object registry listens through the global one
        other.emit(HostUp("h:2"))
        assert got_global == [ev, HostUp("h:2")] and got_local == [ev]
    finally:
        events.unregister(got_global.append)
    assert not Listeners()


def test_no_event_is_built_when_nobody_listens():
    """The hot-path idiom: the event constructor runs only when ``bool(listeners)``."""
    reg = Listeners()
    built = []

    def make():
        built.append(1)
        return started()

    for _ in range(3):
        if reg:
            reg.emit(make())
    assert built == []
    reg.register(lambda e: None)
    if reg:
        reg.emit(make())
    assert built == [1]


def test_register_and_unregister_while_other_threads_emit():
    """Copy-on-write: emitters never see a half-updated set, and nothing raises."""
    reg = Listeners(parent=None)
    stop = threading.Event()
    errors: list[BaseException] = []
    counts = [0] * 4
    steady = []
    reg.register(steady.append)

    def emitter(i):
        try:
            while not stop.is_set():
                reg.emit(started(attempt=i))
                counts[i] += 1
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    def churn():
        for n in range(300):
            def fn(e, n=n):
                return None
            reg.register(fn)
            reg.unregister(fn)

    threads = [threading.Thread(target=emitter, args=(i,)) for i in range(4)]
    churners = [threading.Thread(target=churn) for _ in range(3)]
    for t in threads + churners:
        t.start()
    for t in churners:
        t.join(60)
    stop.set()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(reg) == 1 and steady.append in reg
    # The steady listener saw every emission exactly once.
    assert len(steady) == sum(counts)


# -- LatencyWindow -------------------------------------------------------------

def test_latency_window_percentiles_by_nearest_rank():
    w = LatencyWindow()
    assert w.percentile(50) is None
    assert w.snapshot() == {"count": 0, "p50": None, "p99": None, "max": None}
    for ms in range(1, 101):  # 0.001 .. 0.100 s, recorded out of order
        w.record((101 - ms) / 1000)
    assert w.percentile(50) == pytest.approx(0.050)
    assert w.percentile(99) == pytest.approx(0.099)
    assert w.percentile(100) == pytest.approx(0.100)
    assert w.percentile(0) == pytest.approx(0.001)
    snap = w.snapshot()
    assert snap["count"] == 100 and snap["p50"] == pytest.approx(0.050)
    assert snap["p99"] == pytest.approx(0.099) and snap["max"] == pytest.approx(0.100)


def test_latency_window_keeps_only_the_last_samples():
    w = LatencyWindow(size=10)
    for _ in range(50):
        w.record(5.0)
    for _ in range(10):
        w.record(0.01)
    assert len(w) == 10 and w.total == 60
    assert w.snapshot()["p99"] == pytest.approx(0.01)


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "10"])
def test_latency_window_size_must_be_a_positive_int(size):
    with pytest.raises(ConfigError, match="size"):
        LatencyWindow(size)


def test_latency_window_refuses_negative_nan_and_bad_percentiles():
    w = LatencyWindow()
    for bad in (-0.1, float("nan")):
        with pytest.raises(ConfigError, match="seconds"):
            w.record(bad)
    assert len(w) == 0
    for p in (-1, 101):
        with pytest.raises(ConfigError, match="percentile"):
            w.percentile(p)


def test_latency_window_records_from_many_threads():
    w = LatencyWindow(size=100_000)
    snaps = []

    def work():
        for _ in range(2000):
            w.record(0.001)

    def reader():
        for _ in range(50):
            snaps.append(w.snapshot()["count"])

    threads = [threading.Thread(target=work) for _ in range(4)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert w.total == 8000 and len(w) == 8000
    assert snaps == sorted(snaps)


@pytest.mark.parametrize("name", ["htcluster.events", "htcluster._policy.latency", "htcluster.otel"])
def test_public_names_exist_and_are_sorted(name):
    import importlib
    if name == "htcluster.otel":
        pytest.importorskip("opentelemetry.metrics")
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__, key=lambda n: (not n.isupper(), n))
    assert all(hasattr(module, attr) for attr in module.__all__)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_registers_and_records_though_the_parent_held_the_locks():
    """A thread of the parent holds the locks at fork time; the child must not hang."""
    import signal
    import time
    window = LatencyWindow()
    held = threading.Event()
    release = threading.Event()

    def hold():
        with events._registration_lock, window._lock:
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(30)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                reg = Listeners(parent=None)
                reg.register(print)
                window.record(0.1)
                os._exit(0 if len(reg) == 1 and len(window) == 1 else 1)
            finally:
                os._exit(2)
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            time.sleep(0.05)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on a lock held by the parent's thread")
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        release.set()
        holder.join(30)


# -- the call path emits (real brokers) ----------------------------------------------

FAST = dict(socket_timeout=30.0, connect_timeout=30.0)


def test_pool_call_emits_checkout_call_and_checkin_in_order(broker_address):
    from htcluster import Pool
    pool = Pool(broker_address, size=1, **FAST)
    seen: list[events.Event] = []
    pool.listeners.register(seen.append)
    try:
        pool.call("status")
        pool.call("status")
    finally:
        pool.close()
    kinds = [e.kind for e in seen]
    assert kinds[:5] == ["connection_opened", "pool_checked_out", "call_started", "pool_checked_in",
                         "call_succeeded"]
    assert kinds[5:9] == ["pool_checked_out", "call_started", "pool_checked_in", "call_succeeded"]
    ok = [e for e in seen if isinstance(e, CallSucceeded)]
    assert all(e.host == broker_address and e.method == "status" and e.attempt == 1 for e in ok)
    assert all(0 <= e.duration < 30 for e in ok)


def test_a_broker_refusal_is_a_call_failed_with_the_error(broker_address):
    from htcluster import Pool
    pool = Pool(broker_address, **FAST)
    failed: list[CallFailed] = []
    pool.listeners.register(lambda e: failed.append(e) if isinstance(e, CallFailed) else None)
    try:
        from htcluster.types import ClientException
        with pytest.raises(ClientException):
            pool.call("namespace_open", "no_such_namespace_for_events")
    finally:
        pool.close()
    [event] = failed
    assert event.method == "namespace_open" and event.args == ("no_such_namespace_for_events",)
    assert event.error.code == 40  # NAMESPACE_DOES_NOT_EXIST, protocol.md section 4


def test_a_failing_listener_never_breaks_a_real_call(broker_address, caplog):
    from htcluster import Pool
    pool = Pool(broker_address, **FAST)

    def broken(event):
        raise ValueError("listener bug")

    pool.listeners.register(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="htcluster.events"):
            status = pool.call("status")  # the call returns normally
    finally:
        pool.close()
    assert status is not None
    assert any(r.exc_info and r.exc_info[0] is ValueError for r in caplog.records)


def test_failover_reports_failed_over_and_host_down(local_cluster_factory):
    from htcluster import Replicas
    from htcluster import Backoff
    cluster = local_cluster_factory(2)
    first, second = cluster.hosts
    cluster.stop(0)
    replicas = Replicas([first, second], backoff=Backoff(base=5.0, cap=5.0, jitter=0.0), **FAST)
    seen: list[events.Event] = []
    replicas.listeners.register(seen.append)
    try:
        replicas.call("status", write=True)  # a write goes to the first host, fails over to the second
    finally:
        replicas.close()
    [over] = [e for e in seen if isinstance(e, events.FailedOver)]
    [down] = [e for e in seen if isinstance(e, events.HostDown)]
    assert over.host == first and down.host == first
    assert down.failures == 1 and down.backoff == pytest.approx(5.0)
    assert [e.host for e in seen if isinstance(e, CallSucceeded)] == [second]


def test_a_registry_passed_in_is_kept_even_while_empty():
    from htcluster import Replicas, Resources
    for cls in (Resources, Replicas):
        registry = Listeners()
        routing = cls(["127.0.0.1:1", "127.0.0.1:2"], listeners=registry)
        try:
            assert routing.listeners is registry
            assert all(pool.listeners is registry for pool in routing.values())
        finally:
            routing.close()
