"""Client timestamps: unique across processes, increasing within one, never ahead of the clock.

Hypertable keeps the version of a cell with the larger timestamp (nanoseconds
since the epoch, a signed 64-bit ``Key.timestamp``); a client that stamps its
own cells makes a retried write store the same version again instead of a new
one.  A stamp is built from two parts::

    stamp = slot * 2**TAG_BITS + tag        slot = a clock reading // 2**TAG_BITS

* ``tag``: ``TAG_BITS`` (12) random bits drawn from :func:`os.urandom` when the
  :class:`Stamper` is made (the module's :data:`default_stamper`: at import)
  and drawn again, different from the parent's, in a child made by
  :func:`os.fork`.  Each process owns one residue class modulo ``2**TAG_BITS``,
  so two processes with different tags never issue the same stamp, whatever
  their clocks say.
* ``slot``: the wall clock (:func:`time.time_ns`) in units of ``2**TAG_BITS``
  ns (4.096 µs), or the slot after the last one issued if that is later, so
  stamps are strictly increasing across all threads of a process.

One slot holds one stamp per process, so a process can issue at most
``1e9 / 2**TAG_BITS`` = 244,140 stamps per second (:data:`MAX_RATE`) without
running ahead of the clock.  A burst may run ahead by at most
:data:`MAX_LEAD_NS` (1 ms, i.e. about 244 stamps); a caller asking for more
*waits* (sleeps, outside the lock) until the clock has caught up, so no stamp
is ever returned more than 1 ms ahead of the highest wall-clock reading the
process has made.  The library stamps once per call, or once per batch of
cells with distinct keys (:func:`stamp_batch`), far below that rate; only
per-cell stamping of huge batches reaches it.

If the wall clock steps backwards (an NTP step, a manual change), stamps go on
increasing from where they were instead of stalling until the clock is back:
they are then ahead of the stepped clock by the size of the step, and never
more than 1 ms ahead of the highest reading made before.  The collision
probability for N writer processes and the rule that decides between two
writes of one cell are in ``docs/guide/consistency.rst``.

Use :func:`next_timestamp` for one stamp, :func:`stamp_cells` to give every
unstamped cell its own stamp, and :func:`stamp_batch` to give a whole batch
one stamp where the cells' keys allow it.  All three use :data:`default_stamper`;
a :class:`Stamper` of your own takes an injectable clock, sleep and tag (tests).
"""
from __future__ import annotations

import secrets
import threading
import time
from typing import Callable, Optional, Sequence, Union, overload

from ..errors import ConfigError
from .forks import renew_after_fork
from ..types import Cell, Key, KeyFlag

__all__ = ["MAX_LEAD_NS", "MAX_RATE", "TAG_BITS", "Stamper", "default_stamper", "next_timestamp",
           "stamp_batch", "stamp_cells"]

#: Low bits of every stamp that hold the per-process tag (4,096 tags; a slot of 4.096 µs).
TAG_BITS = 12
#: Nanoseconds a stamp may be ahead of the wall clock when it is returned (1 ms).
MAX_LEAD_NS = 1_000_000
#: Stamps per second one process can issue at most without running ahead: ``1e9 / 2**TAG_BITS``.
MAX_RATE = 1e9 / 2 ** TAG_BITS

#: Every live Stamper, so that a forked child re-creates each one's lock and tag.


def _check_int(name: str, value: object, low: int, high: int) -> int:
    """Return ``value`` if it is an int (not a bool) in ``[low, high]``, else raise :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an int between {low} and {high}, got {value!r}")
    return value


class Stamper:
    """Issue client timestamps: strictly increasing here, disjoint from other processes', close to the clock.

    :param tag: this process's tag, an int in ``[0, 2**tag_bits)``; ``None``
        (the default) draws one from :func:`os.urandom`.  A forked child always
        draws a new one, different from its parent's (one tag cannot be right
        in two processes).
    :param tag_bits: low bits reserved for the tag (int, 1 to 20; default
        :data:`TAG_BITS`).  A process can issue ``1e9 / 2**tag_bits`` stamps
        per second without running ahead of the clock.
    :param max_lead_ns: nanoseconds (int) a returned stamp may be ahead of the
        wall clock; at least ``2**tag_bits`` (a stamp of the current slot may be
        ahead by up to that).  Default :data:`MAX_LEAD_NS`, 1 ms.
    :param now_ns: callable returning the wall clock in nanoseconds since the
        epoch (default :func:`time.time_ns`).  Read under the stamper's lock.
    :param sleep: callable sleeping for a number of seconds (float; default
        :func:`time.sleep`), used when stamps are asked for faster than the clock
        allows.  With a fake ``now_ns``, make it advance the fake clock.
    :raises ConfigError: a value is not an int, or out of range.

    Thread-safe; the lock is re-created in a child made by :func:`os.fork`, so
    a fork while another thread stamps never leaves the child's lock held.

    Example::

        stamper = Stamper(tag=5, now_ns=lambda: 1_700_000_000_000_000_000)
        a, b = stamper.next(), stamper.next()
        assert a < b and a % 4096 == b % 4096 == 5
    """

    def __init__(self, *, tag: Optional[int] = None, tag_bits: int = TAG_BITS, max_lead_ns: int = MAX_LEAD_NS,
                 now_ns: Callable[[], int] = time.time_ns, sleep: Callable[[float], None] = time.sleep) -> None:
        self._bits = _check_int("tag_bits", tag_bits, 1, 20)
        self._lead = _check_int("max_lead_ns", max_lead_ns, 2 ** self._bits, 10 ** 12)
        self._tag = secrets.randbelow(2 ** self._bits) if tag is None else \
            _check_int("tag", tag, 0, 2 ** self._bits - 1)
        self._now = now_ns
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot = 0  # the lowest slot not yet issued
        self._seen = 0  # the highest clock reading so far (ns)
        renew_after_fork(self)

    @property
    def tag(self) -> int:
        """The tag in the low bits of every stamp of this process (int in ``[0, 2**tag_bits)``)."""
        return self._tag

    @property
    def tag_bits(self) -> int:
        """How many low bits hold the tag (int)."""
        return self._bits

    @property
    def step(self) -> int:
        """The distance between two consecutive stamps of this stamper: ``2**tag_bits`` ns."""
        return 1 << self._bits

    @property
    def max_rate(self) -> float:
        """Stamps per second this stamper can issue without running ahead of the clock: ``1e9 / step``."""
        return 1e9 / self.step

    @property
    def max_lead_ns(self) -> int:
        """Nanoseconds a returned stamp may be ahead of the wall clock (int)."""
        return self._lead

    def __repr__(self) -> str:
        return f"<Stamper tag={self._tag} tag_bits={self._bits} max_lead_ns={self._lead}>"

    def next(self) -> int:
        """Return one stamp: larger than every stamp this process issued before.

        :returns: nanoseconds since the epoch (int), ``≡ tag (mod step)``, at
            most ``max_lead_ns`` ahead of the wall clock when returned.
        """
        return self.reserve(1)[0]

    def reserve(self, count: int) -> range:
        """Return ``count`` consecutive stamps of this process, in increasing order.

        The stamps are ``first, first + step, ...``: no other thread of this
        process gets any of them, and every stamp issued later is larger.
        When the last of them would be more than ``max_lead_ns`` ahead of the
        clock, this call sleeps (outside the lock) until it is not; so
        reserving more than ``max_lead_ns / step`` stamps at once (244 with
        the defaults) costs about ``count * step`` ns of waiting.

        :param count: how many stamps (int >= 1).
        :returns: a :class:`range` of the stamps (nanoseconds since the epoch).
        :raises ValueError: ``count`` is not a positive int.
        """
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive int, got {count!r}")
        bits = self._bits
        with self._lock:
            now = self._now()
            if now > self._seen:
                self._seen = now
            slot = max(self._seen >> bits, self._next_slot)
            self._next_slot = slot + count
            tag = self._tag
        first = (slot << bits) | tag
        last = ((slot + count - 1) << bits) | tag
        self._wait_for(last)
        return range(first, last + 1, 1 << bits)

    def retag(self, tag: Optional[int] = None) -> None:
        """Use ``tag`` from now on, or draw a new random one different from the current one.

        Give each writer process a distinct tag (e.g. a worker number, after
        the worker has started: a fork draws a random one again) to rule out
        collisions between them entirely; stamps stay increasing.

        :param tag: an int in ``[0, 2**tag_bits)``, or ``None`` to draw one.
        :raises ConfigError: ``tag`` is out of range.
        """
        if tag is not None:
            tag = _check_int("tag", tag, 0, 2 ** self._bits - 1)
        with self._lock:
            self._tag = self._draw_other() if tag is None else tag

    def stamp_cells(self, cells: Union[Cell, Sequence[Cell]]) -> Union[Cell, list[Cell]]:
        """Return ``cells`` with a stamp of its own on each cell that has no timestamp.

        See the module function :func:`stamp_cells`.

        :param cells: one :class:`~htcluster.types.Cell` or a sequence of them.
        :returns: a Cell, or a new list of Cells.
        """
        if isinstance(cells, Cell):
            if not _needs_stamp(cells):
                return cells
            return _with_timestamp(cells, self.next())
        todo = [i for i, cell in enumerate(cells) if _needs_stamp(cell)]
        out = list(cells)
        if todo:
            for i, stamp in zip(todo, self.reserve(len(todo))):
                out[i] = _with_timestamp(out[i], stamp)
        return out

    def stamp_batch(self, cells: Union[Cell, Sequence[Cell]]) -> Union[Cell, list[Cell]]:
        """Return ``cells`` stamped as one write: one stamp for distinct keys, more only where keys repeat.

        See the module function :func:`stamp_batch`.

        :param cells: one :class:`~htcluster.types.Cell` or a sequence of them.
        :returns: a Cell, or a new list of Cells.
        """
        if isinstance(cells, Cell):
            return self.stamp_cells(cells)
        out = list(cells)
        rounds = _rounds(out)
        if rounds:
            stamps = self.reserve(max(rounds.values()) + 1)
            for i, r in rounds.items():
                out[i] = _with_timestamp(out[i], stamps[r])
        return out

    def _wait_for(self, stamp: int) -> None:
        """Sleep until ``stamp`` is at most ``max_lead_ns`` ahead of the clock (the highest reading)."""
        while True:
            # against the highest reading (raised under the lock by reserve): a clock stepped back never stalls
            ahead = stamp - max(self._now(), self._seen) - self._lead
            if ahead <= 0:
                return
            self._sleep(ahead / 1e9)

    def _draw_other(self) -> int:
        """Return a random tag different from the current one."""
        tag = secrets.randbelow(2 ** self._bits - 1)
        return tag + 1 if tag >= self._tag else tag

    def after_fork(self) -> None:
        """Re-create the lock and draw a new tag, different from the parent's: run in a forked child.

        Called for every Stamper by an :func:`os.register_at_fork` hook of this
        module (another thread of the parent may have held the lock at the fork;
        the parent keeps its tag).  Stamps stay larger than the parent's last.
        """
        self._lock = threading.Lock()
        self._tag = self._draw_other()


#: The stamper of this process, used by :func:`next_timestamp`, :func:`stamp_cells` and :func:`stamp_batch`.
default_stamper = Stamper()


def _needs_stamp(cell: Cell) -> bool:
    key = cell.key
    return key is not None and key.timestamp is None


def _with_timestamp(cell: Cell, stamp: int) -> Cell:
    """Return a copy of ``cell`` whose key carries ``stamp`` (built field by field: cheaper than copy)."""
    key = cell.key
    return Cell(Key(key.row, key.column_family, key.column_qualifier, stamp, key.revision, key.flag), cell.value)


def _name(value: object) -> object:
    """Return ``value`` in the form the broker compares: str as UTF-8 bytes, bytes-like as bytes, None as ``b''``."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return value


def _rounds(cells: Sequence[Cell]) -> dict[int, int]:
    """Return ``{index: round}`` for the cells that need a stamp; cells of one round may share a stamp.

    A cell's round is one more than the highest round of the earlier cells of
    the batch it must be ordered after: the same (row, family, qualifier), or
    a delete whose scope (row, family) holds it, or, for such a delete, any
    earlier cell in its scope.  Later rounds get larger stamps, so the batch
    keeps its order where order matters (a delete hides versions up to its
    own timestamp) and costs one stamp where it does not.
    """
    rounds: dict[int, int] = {}
    cell_top: dict[tuple[object, object, object], int] = {}  # highest round of a cell key
    family_top: dict[tuple[object, object], int] = {}  # of anything in a (row, family)
    row_top: dict[object, int] = {}  # of anything in a row
    family_delete: dict[tuple[object, object], int] = {}  # of DELETE_CF markers
    row_delete: dict[object, int] = {}  # of DELETE_ROW markers
    for i, cell in enumerate(cells):
        key = cell.key
        if key is None or key.timestamp is not None:
            continue
        row = _name(key.row)
        flag = KeyFlag.INSERT if key.flag is None else key.flag
        if flag == KeyFlag.DELETE_ROW:
            r = row_top.get(row, -1) + 1
            row_delete[row] = r
        else:
            family = (row, _name(key.column_family))
            if flag == KeyFlag.DELETE_CF:
                r = max(family_top.get(family, -1), row_delete.get(row, -1)) + 1
                family_delete[family] = r
            else:
                ident = (row, family[1], _name(key.column_qualifier))
                r = max(cell_top.get(ident, -1), family_delete.get(family, -1), row_delete.get(row, -1)) + 1
                cell_top[ident] = r
            family_top[family] = max(family_top.get(family, -1), r)
        row_top[row] = max(row_top.get(row, -1), r)
        rounds[i] = r
    return rounds


def next_timestamp() -> int:
    """Return a client timestamp from :data:`default_stamper` (see :meth:`Stamper.next`).

    :returns: nanoseconds since the epoch (int): larger than every stamp this
        process issued before, never equal to a stamp of a process with another
        tag, at most 1 ms ahead of :func:`time.time_ns` when returned (the call
        sleeps when stamps are asked for faster than :data:`MAX_RATE` per second).
    """
    return default_stamper.reserve(1)[0]


@overload
def stamp_cells(cells: Cell) -> Cell: ...


@overload
def stamp_cells(cells: Sequence[Cell]) -> list[Cell]: ...


def stamp_cells(cells: Union[Cell, Sequence[Cell]]) -> Union[Cell, list[Cell]]:
    """Return ``cells`` with a timestamp of its own on each cell that has none.

    Every stamped cell gets a distinct stamp, increasing in the order of
    ``cells`` (one reservation from :data:`default_stamper`).  Stamped cells are
    copies: the caller's objects are never changed.  A cell that already has a
    timestamp, and a cell without a key (the broker refuses it with
    ``BAD_KEY``), is returned as it is.  For large batches prefer
    :func:`stamp_batch`, which uses one stamp where it can: each stamp here
    takes one 4.096 µs clock slot, so stamping more than about 244 cells at
    once waits for the clock.

    :param cells: one :class:`~htcluster.types.Cell` or a sequence of them.
    :returns: a Cell (the same object when it needs no stamp), or a new list of Cells.
    """
    return default_stamper.stamp_cells(cells)


@overload
def stamp_batch(cells: Cell) -> Cell: ...


@overload
def stamp_batch(cells: Sequence[Cell]) -> list[Cell]: ...


def stamp_batch(cells: Union[Cell, Sequence[Cell]]) -> Union[Cell, list[Cell]]:
    """Return ``cells`` stamped as one write: ONE stamp when the cells' keys are distinct.

    Cells that need a stamp (a key, no timestamp) whose ``(row, family,
    qualifier)`` keys are all distinct share one stamp, so a large
    ``set_cells`` costs one clock slot, not one per cell.  Where keys repeat,
    later cells get larger stamps, so the later write of a cell wins as it
    would have if sent alone: the k-th occurrence of a key gets the k-th stamp
    of one reservation.  Delete markers count over their scope: a
    ``DELETE_ROW`` is ordered after every earlier cell of its row and before
    every later one; a ``DELETE_CF`` likewise within its family (a delete hides
    the versions up to its own timestamp, so a delete and a later insert must
    not share one).  Rows and names compare as the broker compares them
    (``'r'`` and ``b'r'`` are one row; qualifier ``None`` and ``''`` are one).

    Stamped cells are copies; cells with a timestamp and cells without a key
    are returned as they are.  A retry must resend the returned cells, so that
    it repeats the same versions.

    :param cells: one :class:`~htcluster.types.Cell` (stamped as by
        :func:`stamp_cells`) or a sequence of them.
    :returns: a Cell, or a new list of Cells.
    """
    return default_stamper.stamp_batch(cells)
