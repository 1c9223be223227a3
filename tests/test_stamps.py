"""Client timestamps: increasing across threads, disjoint across processes, never 1 ms ahead of the clock.

The cross-process test runs the same harness on a reference of the stamping
rule used before this module (``max(time_ns(), last + 1)``, written here)
and requires it to collide, so the harness is shown to detect collisions.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from array import array
from pathlib import Path
from typing import Callable, Optional

import pytest

from htcluster._policy import stamps
from htcluster._policy.stamps import MAX_LEAD_NS, MAX_RATE, TAG_BITS, Stamper, stamp_batch, stamp_cells
from htcluster.errors import ConfigError
from htcluster.types import Cell, Key, KeyFlag

STEP = 2 ** TAG_BITS
T0 = 1_800_000_000_000_000_000  # a fake wall clock reading (ns)


class FakeClock:
    """A wall clock that moves only when slept on (every sleep is recorded)."""

    def __init__(self, start: int = T0) -> None:
        self.now = start
        self.slept = 0

    def __call__(self) -> int:
        return self.now

    def sleep(self, seconds: float) -> None:
        ns = max(1, int(seconds * 1e9 + 0.999))
        self.now += ns
        self.slept += ns


def fake_stamper(tag: int = 7, clock: Optional[FakeClock] = None) -> tuple[Stamper, FakeClock]:
    clock = clock or FakeClock()
    return Stamper(tag=tag, now_ns=clock, sleep=clock.sleep), clock


def cell(row: object, family: object = "f", qualifier: object = "q", value: bytes = b"v",
         flag: int = KeyFlag.INSERT, timestamp: Optional[int] = None) -> Cell:
    return Cell(Key(row=row, column_family=family, column_qualifier=qualifier, timestamp=timestamp, flag=flag), value)


# -- within one process -------------------------------------------------------------------------------------------

def test_numbers():
    assert TAG_BITS == 12 and STEP == 4096
    assert MAX_RATE == pytest.approx(244_140.625)
    assert MAX_LEAD_NS == 1_000_000
    assert stamps.default_stamper.step == STEP and stamps.default_stamper.max_rate == MAX_RATE


def test_stamps_increase_strictly_across_threads_and_carry_the_tag():
    stamper = Stamper()
    results: list[list[int]] = [[] for _ in range(8)]

    def work(out: list[int]) -> None:
        for _ in range(3000):
            out.append(stamper.next())

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [s for out in results for s in out]
    assert len(every) == 8 * 3000
    assert len(set(every)) == len(every)
    for out in results:
        assert all(a < b for a, b in zip(out, out[1:]))
    assert {s % STEP for s in every} == {stamper.tag}
    after = stamper.next()
    assert after > max(every)


def test_module_functions_use_the_default_stamper():
    a, b = stamps.next_timestamp(), stamps.next_timestamp()
    assert a < b and a % STEP == b % STEP == stamps.default_stamper.tag
    assert abs(a - time.time_ns()) < 10 ** 9


def test_never_more_than_one_millisecond_ahead_in_a_tight_loop():
    worst = -10 ** 18
    count = 0
    end = time.monotonic() + 0.5
    while time.monotonic() < end:  # faster than MAX_RATE on most machines: the stamper must wait
        for _ in range(1000):
            stamp = stamps.next_timestamp()
            worst = max(worst, stamp - time.time_ns())
        count += 1000
    assert worst <= MAX_LEAD_NS, f"{worst} ns ahead after {count} stamps"


def test_a_large_reservation_waits_for_the_clock():
    stamper = Stamper()
    before = time.time_ns()
    got = stamper.reserve(2000)  # 8.2 ms of clock slots
    after = time.time_ns()
    assert len(got) == 2000 and got.step == STEP
    assert got[-1] - after <= MAX_LEAD_NS
    assert after - before >= got[-1] - got[0] - MAX_LEAD_NS - STEP  # it waited, about 7.2 ms


def test_the_rate_limit_is_one_stamp_per_slot_with_a_one_millisecond_burst():
    stamper, clock = fake_stamper(tag=5)
    burst = MAX_LEAD_NS // STEP  # 244 stamps ahead of a clock that does not move
    issued = [stamper.next() for _ in range(burst)]
    assert clock.slept == 0
    assert issued[0] == (T0 // STEP) * STEP + 5
    assert all(b - a == STEP for a, b in zip(issued, issued[1:]))
    for _ in range(10_000):
        stamp = stamper.next()
        assert stamp - clock.now <= MAX_LEAD_NS
    # 10,000 stamps past the burst cost 10,000 slots of the clock: the rate is 1e9 / 2**TAG_BITS per second
    assert clock.now - T0 == pytest.approx(10_000 * STEP, abs=2 * STEP)


def test_a_clock_stepped_back_neither_repeats_nor_stalls():
    stamper, clock = fake_stamper()
    first = stamper.next()
    clock.now -= 10 * 10 ** 9  # an NTP step of 10 s backwards
    second = stamper.next()
    assert second > first and clock.slept == 0
    clock.now += 5 * 10 ** 9
    assert stamper.next() > second and clock.slept == 0


def test_retag():
    stamper, _ = fake_stamper(tag=9)
    stamper.retag(100)
    assert stamper.tag == 100 and stamper.next() % STEP == 100
    stamper.retag()
    assert stamper.tag != 100 and 0 <= stamper.tag < STEP


@pytest.mark.parametrize("options", [dict(tag=STEP), dict(tag=-1), dict(tag=True), dict(tag=1.0), dict(tag_bits=0),
                                     dict(tag_bits=21), dict(max_lead_ns=STEP - 1), dict(max_lead_ns=None)])
def test_bad_options_are_config_errors(options):
    with pytest.raises(ConfigError):
        Stamper(**options)


def test_bad_counts():
    stamper, _ = fake_stamper()
    for count in (0, -1, True, 1.0):
        with pytest.raises(ValueError):
            stamper.reserve(count)
    with pytest.raises(ConfigError):
        stamper.retag(STEP)


# -- stamping cells -----------------------------------------------------------------------------------------------

def test_stamp_cells_gives_each_cell_its_own_increasing_stamp_on_copies():
    cells = [cell("a"), cell("b"), cell("c", timestamp=42), Cell(None, b"x")]
    out = stamp_cells(cells)
    assert isinstance(out, list) and out is not cells
    assert [c.key.timestamp for c in cells[:2]] == [None, None]  # the caller's cells are untouched
    assert out[0].key.timestamp < out[1].key.timestamp
    assert out[2] is cells[2] and out[3] is cells[3]
    key = out[0].key
    assert (key.row, key.column_family, key.column_qualifier, out[0].value) == ("a", "f", "q", b"v")
    one = cell("z")
    assert stamp_cells(one).key.timestamp % STEP == stamps.default_stamper.tag and one.key.timestamp is None
    assert stamp_cells([]) == []


def test_a_batch_of_distinct_keys_costs_one_stamp():
    stamper, clock = fake_stamper(tag=11)
    cells = [cell(f"row{i}", qualifier=str(i % 7)) for i in range(50_000)]
    out = stamper.stamp_batch(cells)
    assert {c.key.timestamp for c in out} == {(T0 // STEP) * STEP + 11}
    assert stamper.next() == out[0].key.timestamp + STEP  # one slot used
    assert clock.slept == 0
    assert all(c.key.timestamp is None for c in cells)


def test_the_module_batch_function_stamps_a_large_batch_once():
    out = stamp_batch([cell(f"r{i}") for i in range(100_000)])
    assert len({c.key.timestamp for c in out}) == 1
    assert stamp_batch(cell("one")).key.timestamp is not None


def test_repeated_keys_get_later_stamps_in_batch_order():
    stamper, _ = fake_stamper()
    cells = [cell("a", value=b"1"), cell("b"), cell(b"a", value=b"2"), cell("a", qualifier=None),
             cell("a", qualifier="", value=b"3"), cell("c", timestamp=5), Cell(None, b"x"), cell(bytearray(b"b"))]
    out = stamper.stamp_batch(cells)
    s = out[0].key.timestamp
    # 'a'/b'a' are one row, qualifier None and '' one qualifier
    assert [c.key.timestamp for c in out[:6]] == [s, s, s + STEP, s, s + STEP, 5]
    assert out[5] is cells[5] and out[6] is cells[6]
    assert out[7].key.timestamp == s + STEP
    assert stamper.next() == s + 2 * STEP


def test_deletes_are_ordered_over_their_scope():
    stamper, _ = fake_stamper()
    cells = [
        cell("r", "f", "x"),                                   # 0
        cell("r", "g", "y"),                                   # 0
        cell("r", "f", None, flag=KeyFlag.DELETE_CF),          # 1: after every earlier cell of r/f
        cell("r", "g", "z"),                                   # 0: family g is not in the scope of DELETE_CF f
        cell("r", "f", "x"),                                   # 2: after the DELETE_CF
        cell("r", None, None, flag=KeyFlag.DELETE_ROW),        # 3: after everything earlier in row r
        cell("r", "h", "w"),                                   # 4: after the DELETE_ROW
        cell("s", "f", "x", flag=KeyFlag.DELETE_CELL),         # 0: another row
        cell("s", "f", "x"),                                   # 1: the insert after its delete
    ]
    out = stamper.stamp_batch(cells)
    s = min(c.key.timestamp for c in out)
    assert [(c.key.timestamp - s) // STEP for c in out] == [0, 0, 1, 0, 2, 3, 4, 0, 1]


# -- across processes ---------------------------------------------------------------------------------------------

DURATION = 1.0


def _naive_stamp() -> Callable[[], int]:
    """The rule used before this module: the clock, or one more than the last stamp (no tag)."""
    last = 0

    def next_stamp() -> int:
        nonlocal last
        last = max(time.time_ns(), last + 1)
        return last
    return next_stamp


def _stamp_for_a_while(which: str, path: str, go: "multiprocessing.synchronize.Event") -> None:
    """Child: wait for the start, stamp for DURATION s, write the stamps, then the tag and the worst lead."""
    next_stamp = stamps.next_timestamp if which == "stamps" else _naive_stamp()
    go.wait(60)
    out = array("q")
    worst = -10 ** 18
    end = time.monotonic() + DURATION
    while time.monotonic() < end:
        for _ in range(200):
            stamp = next_stamp()
            out.append(stamp)
            worst = max(worst, stamp - time.time_ns())
    with open(path, "wb") as f:
        array("q", [stamps.default_stamper.tag, worst]).tofile(f)
        out.tofile(f)


def _two_writers(method: str, which: str, tmp: Path) -> tuple[list[int], list[array]]:
    ctx = multiprocessing.get_context(method)
    go = ctx.Event()
    paths = [str(tmp / f"{method}-{which}-{i}.bin") for i in range(2)]
    procs = [ctx.Process(target=_stamp_for_a_while, args=(which, p, go)) for p in paths]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    heads, bodies = [], []
    for path in paths:
        data = array("q")
        data.frombytes(Path(path).read_bytes())
        heads.append(list(data[:2]))
        bodies.append(data[2:])
    return heads, bodies


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_two_processes_never_issue_the_same_stamp(method, tmp_path):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} here")
    heads, bodies = _two_writers(method, "stamps", tmp_path)
    if heads[0][0] == heads[1][0]:  # equal random tags, a chance of 1 in 4,096: draw again once
        heads, bodies = _two_writers(method, "stamps", tmp_path)
    (tag_a, lead_a), (tag_b, lead_b) = heads
    assert tag_a != tag_b
    if method == "fork":
        assert stamps.default_stamper.tag not in (tag_a, tag_b)  # each child drew its own
    for (tag, lead), body in zip(heads, bodies):
        assert len(body) > 1000
        assert all(a < b for a, b in zip(body, body[1:]))
        assert {s % STEP for s in body} == {tag}
        assert lead <= MAX_LEAD_NS
    assert not set(bodies[0]) & set(bodies[1])


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="the reference collides only when both writers run at once")
def test_the_harness_catches_the_collisions_of_the_untagged_rule(tmp_path):
    method = "fork" if sys.platform == "linux" else "spawn"
    collisions = 0
    for _ in range(3):  # on a busy machine the two writers may not overlap in one try
        _, bodies = _two_writers(method, "naive", tmp_path)
        collisions = len(set(bodies[0]) & set(bodies[1]))
        if collisions:
            break
    assert collisions > 0


# -- fork -------------------------------------------------------------------------------------------------------

def _in_child(action: Callable[[], bytes], timeout: float = 30.0) -> bytes:
    """Fork, run ``action`` in the child, return what it wrote; fail if the child takes over ``timeout`` s."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(read)
            os.write(write, action())
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            pytest.fail(f"the forked child did not finish in {timeout} s (a lock held at the fork?)")
        time.sleep(0.01)
    with os.fdopen(read, "rb") as f:
        return f.read()


needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")


@needs_fork
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12 warns of forks in threaded processes
def test_a_forked_child_draws_a_new_tag_and_keeps_increasing():
    before = stamps.next_timestamp()
    answer = _in_child(lambda: f"{stamps.default_stamper.tag} {stamps.next_timestamp()}".encode())
    tag, stamp = map(int, answer.split())
    assert tag != stamps.default_stamper.tag and stamp % STEP == tag
    assert stamp > before
    assert stamps.next_timestamp() % STEP == stamps.default_stamper.tag  # the parent keeps its tag


@needs_fork
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_fork_while_another_thread_holds_the_lock_does_not_deadlock_the_child():
    entered, release = threading.Event(), threading.Event()
    holder: list[threading.Thread] = []

    def clock() -> int:  # read under the stamper's lock: the holder thread blocks there
        if holder and threading.current_thread() is holder[0]:
            entered.set()
            release.wait(60)
        return time.time_ns()

    stamper = Stamper(now_ns=clock)
    parent_tag = stamper.tag
    holder.append(threading.Thread(target=stamper.next))
    holder[0].start()
    try:
        assert entered.wait(30)
        answer = _in_child(lambda: f"{stamper.tag} {stamper.next()} {stamper.next()}".encode(), timeout=30.0)
    finally:
        release.set()
        holder[0].join(30)
    tag, a, b = map(int, answer.split())
    assert tag != parent_tag and a < b and a % STEP == tag
