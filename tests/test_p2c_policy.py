"""The gray-failure policy as pure values: P2C over peak EWMA, outlier ejection with its cap, slow start.

No sockets and no sleeping: clocks are :class:`~htcluster.faults.ManualClock`, random sources seeded.
"""
from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from htcluster import codes
from htcluster._policy.balance import P2CBalancer, PeakEwma, coerce_balancer
from htcluster._policy.classify import is_transient
from htcluster._policy.health import HostHealth
from htcluster._policy.outliers import MIN_RAMP, Outliers
from htcluster._policy.plans import CachedBalancer
from htcluster.errors import ClientException, ConfigError
from htcluster.faults import ManualClock

HOSTS = ["a:1", "b:1", "c:1"]


def idle(host: str) -> tuple[int, int]:
    return (1, 0)


def shares(balancer: P2CBalancer, n: int = 3000, load=idle, seed: int = 1) -> Counter:
    rng = random.Random(seed)
    return Counter(balancer.pick(HOSTS, load, rng) for _ in range(n))


def test_peak_ewma_jumps_up_at_once_and_comes_down_by_time():
    e = PeakEwma(0.001, 0.0)
    e.update(0.020, 0.001, 10.0)
    assert e.cost == 0.020  # peak: a slower answer is taken at once
    e.update(0.001, 10.001, 10.0)  # ten seconds later: ~63 % of the way down
    assert 0.007 < e.cost < 0.008
    assert e.decayed(10.001 + 30.0, 10.0) < e.cost * 0.06  # unmeasured, it fades towards 0


def test_p2c_sends_almost_nothing_to_a_slow_host():
    clock = ManualClock()
    balancer = P2CBalancer(clock=clock)
    for host, took in (("a:1", 0.0002), ("b:1", 0.0002), ("c:1", 0.020)):
        balancer.observe(host, took, failed=False)
    got = shares(balancer)
    assert got["c:1"] == 0
    assert 1200 <= got["a:1"] <= 1800, got  # the fast two share evenly (ties go to the first drawn)


def test_a_slow_host_is_measured_again_after_a_while_not_avoided_forever():
    clock = ManualClock()
    balancer = P2CBalancer(decay_time=10.0, clock=clock)
    for host, took in (("a:1", 0.0002), ("b:1", 0.0002), ("c:1", 0.020)):
        balancer.observe(host, took, failed=False)
    rng = random.Random(2)
    for _ in range(60):  # a minute of steady traffic to the fast hosts
        clock.advance(1.0)
        for host in ("a:1", "b:1"):
            balancer.observe(host, 0.0002, failed=False)
    assert balancer.costs(["c:1"])["c:1"] < 0.0002  # its old cost faded below theirs
    assert "c:1" in {balancer.pick(HOSTS, idle, rng) for _ in range(50)}


def test_a_stall_of_a_busy_host_is_washed_out_by_its_next_answers_not_kept_for_decay_time():
    clock = ManualClock()
    balancer = P2CBalancer(clock=clock)
    for host, took in (("a:1", 0.002), ("b:1", 0.002), ("c:1", 0.025)):  # c:1 is the slow one
        balancer.observe(host, took, failed=False)
    balancer.observe("a:1", 0.030, failed=False)  # one stall on a busy fast host (a client-side pause)
    assert balancer.costs(["a:1"])["a:1"] == 0.030  # peak-sensitive: taken at once
    for _ in range(40):  # its next answers come a fraction of a millisecond apart
        clock.advance(0.0003)
        balancer.observe("a:1", 0.002, failed=False)
    # the time weight alone would leave it near 30 ms (above slow c:1) for seconds
    assert balancer.costs(["a:1"])["a:1"] < 0.004
    assert shares(balancer, load=lambda h: (0, 3) if h != "c:1" else (0, 0))["c:1"] < 3000 * 0.1
    idle_host = P2CBalancer(clock=clock)
    idle_host.observe("c:1", 0.025, failed=False)
    clock.advance(10.0)  # a host not called fades by time alone, as before: re-measured as often
    assert idle_host.costs(["c:1"])["c:1"] == pytest.approx(0.025 * math.exp(-1.0))
    pure = P2CBalancer(clock=clock, answer_pull=0.0)  # tower's and Finagle's weighting
    pure.observe("a:1", 0.030, failed=False)
    for _ in range(40):
        clock.advance(0.0003)
        pure.observe("a:1", 0.002, failed=False)
    assert pure.costs(["a:1"])["a:1"] > 0.025
    with pytest.raises(ConfigError, match="answer_pull"):
        P2CBalancer(answer_pull=1.5)


def test_in_flight_calls_push_traffic_to_the_others():
    balancer = P2CBalancer(clock=ManualClock())
    for host in HOSTS:
        balancer.observe(host, 0.001, failed=False)
    got = shares(balancer, load=lambda h: (0, 9) if h == "a:1" else (1, 0))
    assert got["a:1"] == 0


def test_a_failure_counts_as_a_slow_answer():
    balancer = P2CBalancer(failure_penalty=1.0, clock=ManualClock())
    balancer.observe("a:1", 0.0002, failed=False)
    balancer.observe("b:1", 0.0002, failed=False)
    balancer.observe("c:1", 0.0001, failed=True)  # failing fast must not look fast
    assert balancer.costs(["c:1"])["c:1"] == 1.0
    assert shares(balancer)["c:1"] == 0


def test_an_unmeasured_host_gets_the_median_not_zero():
    balancer = P2CBalancer(clock=ManualClock())
    balancer.observe("a:1", 0.001, failed=False)
    balancer.observe("b:1", 0.003, failed=False)
    assert balancer.costs(HOSTS)["c:1"] == pytest.approx(0.002)
    got = shares(balancer)
    assert 0 < got["c:1"] < 3000 * 0.5  # not flooded
    balancer.forget("a:1")  # back after a probe: the prior again
    assert balancer.costs(["a:1", "b:1", "c:1"])["a:1"] == pytest.approx(0.003)


def test_balance_names():
    assert isinstance(coerce_balancer(None, None), CachedBalancer)
    assert isinstance(coerce_balancer("p2c", None), P2CBalancer)
    with pytest.raises(ConfigError, match="cached, p2c"):
        coerce_balancer("round-robin", None)
    with pytest.raises(ConfigError, match="not both"):
        coerce_balancer("p2c", CachedBalancer())


def test_transient_codes():
    assert is_transient(ClientException(code=codes.REQUEST_TIMEOUT, message="x"))
    assert is_transient(ClientException(code=codes.COMM_BROKEN_CONNECTION, message="x"))
    assert is_transient(ClientException(code=0x0001FFFF, message="x"))
    for final in (codes.TABLE_NOT_FOUND, codes.BAD_KEY, codes.HQL_PARSE_ERROR, codes.NAMESPACE_DOES_NOT_EXIST):
        assert not is_transient(ClientException(code=final, message="x"))
    assert not is_transient(None) and not is_transient(ValueError())


def test_errors_in_a_row_eject_a_host_for_a_while():
    clock = ManualClock()
    outliers = Outliers(consecutive_gateway_failure=3, base_ejection_time=10.0, clock=clock, rng=random.Random(1))
    rng = random.Random(1)
    for _ in range(2):
        assert not outliers.answered("a:1", error=True)
    outliers.answered("a:1", error=False)  # another answer ends the streak
    assert [outliers.answered("a:1", error=True) for _ in range(3)] == [False, False, True]
    assert outliers.serving(HOSTS, rng) == ["b:1", "c:1"]
    assert 8.0 <= outliers.ejected("a:1") <= 10.0
    clock.advance(10.0)
    assert outliers.serving(HOSTS, rng) == HOSTS
    for _ in range(3):
        outliers.answered("a:1", error=True)
    assert 16.0 <= outliers.ejected("a:1") <= 20.0  # a second ejection lasts twice as long


def test_ejection_never_sets_aside_more_than_the_cap():
    clock = ManualClock()
    outliers = Outliers(max_ejection=0.5, consecutive_gateway_failure=1, clock=clock, rng=random.Random(1))
    rng = random.Random(1)
    outliers.answered("a:1", error=True)
    outliers.answered("b:1", error=True)
    # two of three ejected, the cap is one (half of three, rounded down): one of them serves again
    serving = outliers.serving(HOSTS, rng)
    assert len(serving) == 2 and "c:1" in serving
    assert outliers.serving(["a:1"], rng) == ["a:1"]  # a single candidate is never set aside
    none_out = Outliers(max_ejection=0.0, consecutive_gateway_failure=1, clock=clock)
    assert sorted(none_out.serving(HOSTS, rng)) == sorted(HOSTS)


def test_slow_start_ramps_a_recovered_host_up():
    clock = ManualClock()
    outliers = Outliers(slow_start=10.0, clock=clock)
    outliers.revived("a:1")
    rng = random.Random(5)

    def share() -> float:
        return sum("a:1" in outliers.serving(HOSTS, rng) for _ in range(2000)) / 2000

    assert outliers.ramp("a:1") == MIN_RAMP
    assert 0.05 < share() < 0.15
    clock.advance(5.0)
    assert 0.4 < share() < 0.6
    clock.advance(5.0)
    assert share() == 1.0 and not outliers.active
    outliers.revived("b:1")
    assert outliers.serving(["b:1"], rng) == ["b:1"]  # never left without a candidate


def test_health_feeds_the_meter_and_ramps_after_a_probe():
    clock = ManualClock()
    health = HostHealth(HOSTS, clock=clock, outliers=Outliers(slow_start=5.0, clock=clock))
    health.meter = balancer = P2CBalancer(clock=clock)
    health.measured("a:1", 0.005, failed=False)
    assert balancer.costs(["a:1"])["a:1"] == 0.005
    health.failed("a:1")
    assert health.claim_due(["a:1"]) == [] and not health.all_live
    clock.advance(60.0)
    assert health.claim_due(["a:1"]) == ["a:1"]
    health.succeeded("a:1", probe=True)
    assert "a:1" not in balancer.costs(["b:1"])  # forgotten: the prior again
    assert health.outliers.ramp("a:1") == MIN_RAMP
    assert not health.all_live  # the router leaves its fast path while a host warms up
    health.succeeded("b:1", transient=ClientException(code=codes.REQUEST_TIMEOUT, message="x"))
    assert not health.outliers.clean("b:1")
    health.succeeded("b:1")
    assert health.outliers.clean("b:1")


def test_a_host_added_by_a_membership_change_warms_up_and_gets_the_prior():
    clock = ManualClock()
    health = HostHealth(["a:1", "b:1"], clock=clock, outliers=Outliers(slow_start=5.0, clock=clock))
    health.meter = balancer = P2CBalancer(clock=clock)
    for host, took in (("a:1", 0.002), ("b:1", 0.004), ("c:1", 0.5)):
        balancer.observe(host, took, failed=False)  # c:1 was a member once, and slow then
    assert health.track(["a:1", "b:1", "c:1"]) == ("c:1",)
    assert health.outliers.ramp("c:1") == MIN_RAMP and health.outliers.ramp("a:1") == 1.0
    assert not health.all_live  # the router leaves its fast path while c:1 warms up
    assert balancer.costs(["a:1", "b:1", "c:1"])["c:1"] == pytest.approx(0.003)  # the median, not 0.5
    clock.advance(5.0)
    assert health.outliers.ramp("c:1") == 1.0
    balancer.observe("b:1", 0.004, failed=False)
    assert health.track(["a:1", "c:1"]) == ()  # b:1 leaves: its cost goes with it
    assert health.track(["a:1", "c:1", "b:1"]) == ("b:1",)
    assert balancer.costs(["a:1", "c:1", "b:1"])["b:1"] != 0.004
    assert HostHealth(["a:1"], clock=clock).track(["a:1", "d:1"]) == ("d:1",)  # slow_start 0: no ramp
    assert HostHealth(["a:1"], clock=clock).outliers.ramp("d:1") == 1.0


def test_many_threads_share_one_balancer_and_one_outliers():
    import threading

    balancer = P2CBalancer()
    outliers = Outliers(consecutive_gateway_failure=2, slow_start=0.5)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for i in range(2000):
                host = HOSTS[i % 3]
                balancer.observe(host, rng.random() / 100, failed=rng.random() < 0.1)
                assert balancer.pick(HOSTS, idle, rng) in HOSTS
                outliers.answered(host, error=rng.random() < 0.3)
                if i % 100 == 0:
                    balancer.forget(host)
                    outliers.revived(host)
                assert outliers.serving(HOSTS, rng)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(0 <= cost < 2.0 for cost in balancer.costs(HOSTS).values())
