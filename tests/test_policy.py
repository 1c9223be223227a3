"""Policy values: backoff, retry, host health and read/write classification (no sockets, no sleeping)."""
from __future__ import annotations

import random
import threading

import pytest

from htcluster.errors import BrokerUnavailable, ConfigError
from htcluster import Backoff, HostHealth, HostState, Retry
from htcluster._policy.classify import hql_is_read, is_write
from htcluster.testing import ManualClock


class NoJitter(random.Random):
    """A random source whose draws are all 0.0: backoff delays come out exact."""

    def random(self) -> float:
        return 0.0


def test_backoff_sequence_doubles_and_caps():
    backoff = Backoff()
    rng = NoJitter()
    assert [backoff.delay(n, rng) for n in range(0, 8)] == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.delay(10_000, rng) == 30.0  # no overflow on huge counts


def test_backoff_jitter_only_shortens_within_the_fraction():
    backoff = Backoff(base=0.5, factor=3.0, cap=10.0, jitter=0.25)
    rng = random.Random(7)
    for n in range(1, 10):
        full = min(10.0, 0.5 * 3.0 ** (n - 1))
        for _ in range(50):
            d = backoff.delay(n, rng)
            assert 0.75 * full <= d <= full


@pytest.mark.parametrize("kwargs", [dict(base=0), dict(factor=0.5), dict(base=5, cap=1), dict(jitter=1.0)])
def test_backoff_rejects_bad_values(kwargs):
    with pytest.raises(ConfigError):
        Backoff(**kwargs)


def test_backoff_coerce():
    assert Backoff.coerce(None) == Backoff()
    assert Backoff.coerce(0.1) == Backoff(base=0.1)
    assert Backoff.coerce(60) == Backoff(base=60.0, cap=60.0)
    assert Backoff.coerce({"base": 0.2, "cap": 2}) == Backoff(base=0.2, cap=2)
    b = Backoff(base=3)
    assert Backoff.coerce(b) is b
    with pytest.raises(ConfigError, match="unknown Backoff fields"):
        Backoff.coerce({"bsae": 1})
    with pytest.raises(ConfigError):
        Backoff.coerce("1s")
    with pytest.raises(ConfigError):
        Backoff.coerce(True)


def test_retry_is_a_value():
    assert Retry.from_int(None) == Retry() == Retry.from_int(True)
    assert Retry.from_int(False) == Retry(total=0)
    r = Retry.from_int(1)
    assert Retry.from_int(r) is r
    r1 = r.increment("a:1")
    assert (r.total, r.history) == (1, ())  # unchanged
    assert (r1.total, r1.history, r1.exhausted) == (0, ("a:1",), False)
    r2 = r1.increment("b:1")
    assert r2.exhausted and r2.history == ("a:1", "b:1")
    unlimited = Retry().increment("a:1").increment("b:1")
    assert not unlimited.exhausted
    with pytest.raises(ConfigError):
        Retry.from_int(-1)
    with pytest.raises(ConfigError):
        Retry.from_int("3")  # type: ignore[arg-type]


def make_health(**kwargs) -> tuple[HostHealth, ManualClock]:
    clock = ManualClock()
    return HostHealth(["a:1", "b:1"], backoff=Backoff(), clock=clock, rng=NoJitter(), **kwargs), clock


def test_failure_marks_dead_for_the_backoff_then_one_trial():
    health, clock = make_health()
    error = BrokerUnavailable("refused", host="a:1", sent=False)
    assert health.claim("a:1")
    assert health.failed("a:1", error) == 1.0
    assert not health.usable("a:1") and not health.claim("a:1")
    assert "1 consecutive failure" in health.describe("a:1") and "refused" in health.describe("a:1")
    clock.advance(0.999)
    assert not health.claim("a:1")
    clock.advance(0.002)
    assert health.usable("a:1")
    assert health.claim("a:1")            # the trial
    assert not health.claim("a:1")        # half-open: nobody else meanwhile
    assert not health.usable("a:1")
    assert health.failed("a:1", error) == 2.0   # the trial failed: longer backoff
    clock.advance(2.0)
    assert health.claim("a:1")
    health.succeeded("a:1")
    assert health.state("a:1") == HostState()
    assert health.claim("a:1") and health.claim("a:1")  # live: everybody
    assert health.failed("a:1") == 1.0   # the count restarted


def test_backoff_sequence_through_health():
    health, clock = make_health()
    delays = []
    for _ in range(7):
        assert health.claim("a:1", force=True)
        delays.append(health.failed("a:1"))
        clock.advance(delays[-1])
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_in_flight_failures_do_not_escalate():
    health, clock = make_health()
    for _ in range(5):  # five calls in flight when the broker died
        assert health.claim("a:1")
    assert health.failed("a:1") == 1.0
    for _ in range(4):
        assert health.failed("a:1") <= 1.0
    assert health.state("a:1").failures == 1


def test_release_hands_the_trial_on():
    health, clock = make_health()
    health.failed("a:1")
    clock.advance(1.0)
    assert health.claim("a:1")
    health.release("a:1")               # e.g. PoolTimeout: nothing learnt
    assert health.state("a:1").failures == 1
    assert health.claim("a:1")


def test_soonest_and_force():
    health, clock = make_health()
    health.failed("a:1")
    health.failed("b:1")
    clock.advance(0.5)
    health.claim("a:1", force=True)
    health.failed("a:1")                # a: now dead for 2 s more (trial failed)
    assert health.soonest(["a:1", "b:1"]) == "b:1"
    assert not health.claim("b:1")
    assert health.claim("b:1", force=True)
    assert health.soonest([]) is None
    assert set(health.down()) == {"a:1", "b:1"}


def test_only_one_of_many_threads_gets_the_trial():
    health, clock = make_health()
    health.failed("a:1")
    clock.advance(1.0)
    barrier = threading.Barrier(16)
    granted = []

    def worker() -> None:
        barrier.wait(10)
        granted.append(health.claim("a:1"))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(granted) == [False] * 15 + [True]


def test_state_stays_consistent_under_random_outcomes_from_many_threads():
    """Every claim gets one report: afterwards no trial is stuck and the count matches the state."""
    clock = ManualClock()
    health = HostHealth(["h:1"], backoff=Backoff(base=0.01, cap=0.05), clock=clock, rng=random.Random(3))
    tick = threading.Lock()
    claims = [0]

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(2000):
            if health.claim("h:1"):
                outcome = rng.random()
                if outcome < 0.3:
                    health.failed("h:1")
                elif outcome < 0.4:
                    health.release("h:1")
                else:
                    health.succeeded("h:1")
                with tick:
                    claims[0] += 1
            with tick:
                clock.advance(0.001)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    state = health.state("h:1")
    assert not state.trial
    assert state.live == (state.failures == 0)
    assert 0 < claims[0] < 16000  # some claims were refused while the host was dead


@pytest.mark.parametrize("method,args,write", [
    ("get_cells", (1, "t", None), False),
    ("get_row", ("t", "r"), False),
    ("table_exists", (1, "t"), False),
    ("status", (), False),
    ("set_cells", (1, "t", []), True),
    ("set_cell", ("t", None), True),
    ("mutator_set_cells", (5, []), True),
    ("mutator_flush", (5,), True),
    ("shared_mutator_set_cells", (1, "t", None, []), True),
    ("offer_cells", (1, "t", None, []), True),
    ("table_create", (1, "t", None), True),
    ("table_drop", (1, "t", True), True),
    ("table_rename", (1, "t", "u"), True),
    ("table_alter", (1, "t", None), True),
    ("namespace_create", ("ns",), True),
    ("namespace_drop", ("ns", True), True),
    ("create_cell_unique", (1, "t", None, "v"), True),
    ("hql_query", (1, "select * from t"), False),
    ("hql_query", ("  SHOW TABLES",), False),
    ("hql_exec", (1, "DESCRIBE TABLE t", False, False), False),
    ("hql_query", ("exists table t",), False),
    ("hql_query", ("GET LISTING",), False),
    ("hql_query", ("GET",), True),
    ("hql_query", ("INSERT INTO t VALUES ('r', 'c', 'v')",), True),
    ("hql_query", (1, "CREATE TABLE t (a)"), True),
    ("hql_query2", ("delete * from t where row = 'r'",), True),
    ("hql_query", (1, ""), True),
    ("some_future_method", (), True),
])
def test_is_write(method, args, write):
    assert is_write(method, args) is write


def test_hql_is_read_needs_the_whole_verb():
    assert hql_is_read("get   listing")
    assert not hql_is_read("GETLISTING")
    assert not hql_is_read("SELECTED")


def test_verdicts_classify_how_an_attempt_ended():
    """A transport failure blames the host; a broker's answer credits it; the caller's own trouble teaches nothing."""
    from thrift.Thrift import TApplicationException

    from htcluster.errors import (ClientException, ClientResourceError, DeadlineExceeded, InvalidRequest,
                                  PoolTimeout, WriteOutcomeUnknown)
    from htcluster._policy.classify import ANSWERED, FAILED, NOTHING, verdict

    assert verdict(None) is ANSWERED
    assert verdict(ClientException(code=48, message="table not found")) is ANSWERED
    assert verdict(TApplicationException(TApplicationException.UNKNOWN_METHOD)) is ANSWERED
    assert verdict(BrokerUnavailable("reset", host="a:1")) is FAILED
    assert verdict(WriteOutcomeUnknown("lost", host="a:1")) is FAILED
    for mine in (DeadlineExceeded("late"), PoolTimeout("full"), InvalidRequest("bad"), KeyboardInterrupt(),
                 GeneratorExit(), ClientResourceError("no fds", 24), MemoryError()):
        assert verdict(mine) is NOTHING, mine


def test_health_verbs_revive_blame_and_release():
    health, clock = make_health()
    health.failed("a:1", BrokerUnavailable("reset", host="a:1"))
    assert health.state("a:1").failures == 1 and not health.usable("a:1")
    clock.advance(1.0)
    assert health.claim_due(["a:1", "b:1"]) == ["a:1"]  # its backoff ended: its trial is taken, once
    assert health.claim_due(["a:1"]) == []
    health.release("a:1")  # nothing learnt: the trial goes to the next caller
    assert health.state("a:1").failures == 1 and health.claim("a:1")
    health.succeeded("a:1")  # an answer: live again
    assert health.state("a:1") == HostState() and health.all_live
