"""One source for both I/O flavours: the engine's logic as generators of I/O steps, and their blocking driver.

A function that must wait (for a pool slot, a connect, a probe's answer)
is written once as a generator: where the blocking code would wait, it
yields a *step*, an object naming the wait (``Wait``, ``Open``, ``Ping`` of
:mod:`htcluster._pool.pool`; ``NewLoop``, ``LoopWait`` of
:mod:`htcluster._call.loop`).  The driver makes the step and sends its
value back in (or throws its exception in, so the generator's own
``except``/``finally`` clean up exactly as they would around a blocking call).

:func:`drive` is the blocking driver: it calls the step's ``run()``.  The
asyncio front end (:mod:`htcluster._aio`) drives the very same generators
with an ``await`` per step, so the two flavours share every rule and differ
only in how they wait (h11's sans-IO shape; httpcore's one-source idea
without code generation).

A generator that produces items as it goes (a scan) yields them wrapped in
:class:`Deliver` between its steps; :func:`stream` is its blocking driver (a
generator of the items).  When the consumer stops early,
:class:`ConsumerLeft` is thrown into the engine generator (not
``GeneratorExit``: ``yield from`` would turn that into ``close()``, which
forbids the cleanup's own steps), whose cleanup still makes its steps
(closing a scanner) before it ends.
"""
from __future__ import annotations

from typing import Any, Generator, Iterator, NamedTuple, Protocol, TypeVar

__all__ = ["ConsumerLeft", "Deliver", "Feed", "Step", "Steps", "T", "drive", "stream"]

T = TypeVar("T")


class Step(Protocol):
    """One wait of an engine generator; ``run()`` makes it blocking and returns its value."""

    def run(self) -> Any:
        """Make the wait in the calling thread; return what the generator receives."""


#: An engine generator: yields steps, receives their values, returns its result.
Steps = Generator[Step, Any, T]


def drive(steps: "Steps[T]") -> T:
    """Run ``steps`` to its end, making each step blocking; return the generator's result.

    An exception raised by a step (including ``KeyboardInterrupt``) is thrown
    into the generator at the ``yield`` that asked for it.
    """
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        value = error = None
        try:
            value = step.run()
        except BaseException as exc:  # thrown into the generator: its cleanup runs where it waited
            error = exc


class ConsumerLeft(BaseException):
    """Thrown into a streaming engine generator when its consumer stopped early (like ``GeneratorExit``)."""


class Deliver(NamedTuple):
    """Not a wait: an item a streaming engine generator hands to its consumer (e.g. a batch of cells)."""

    item: Any

    def run(self) -> Any:
        """A delivery is no wait: only :func:`stream` (or its asyncio twin) drives a delivering generator.

        :raises TypeError: always.
        """
        raise TypeError("this engine generator delivers items: drive it with stream(), not drive()")


class Feed:
    """What a driver of a streaming engine generator sends in next: the bookkeeping both drivers share.

    A driver loops on :meth:`next`; for a step it sets :attr:`value` (or
    :attr:`error`) to the step's outcome; for a :class:`Deliver` it hands the
    item to its consumer and calls :meth:`leave` if the consumer left, or
    sets :attr:`error` to what the consumer threw in.
    """

    __slots__ = ("steps", "value", "error", "closing")

    def __init__(self, steps: "Steps[Any]") -> None:
        self.steps = steps
        self.value: Any = None
        self.error: BaseException | None = None
        self.closing = False  # the consumer left: the generator is cleaning up

    def next(self) -> Any:
        """Send the last outcome in; return the next step or delivery, or ``None`` once the generator ended.

        Once the consumer has left, no delivery is returned: :class:`ConsumerLeft`
        is thrown back in instead, until the generator ends.

        :raises BaseException: what the generator raised (not after the consumer left).
        """
        while True:
            try:
                step = self.steps.send(self.value) if self.error is None else self.steps.throw(self.error)
            except StopIteration:
                return None
            except ConsumerLeft:
                if self.closing:
                    return None
                raise
            self.value = self.error = None
            if self.closing and isinstance(step, Deliver):
                self.error = ConsumerLeft()
                continue
            return step

    def leave(self) -> None:
        """The consumer stopped early: the generator gets :class:`ConsumerLeft` and cleans up (its steps still made)."""
        self.error, self.closing = ConsumerLeft(), True


def stream(steps: "Steps[Any]") -> Iterator[Any]:
    """Run a streaming engine generator, making each step blocking; yield the items it delivers.

    Closing the returned generator throws ``GeneratorExit`` into ``steps``,
    whose cleanup steps are still made (nothing more is delivered).
    """
    feed = Feed(steps)
    while (step := feed.next()) is not None:
        if isinstance(step, Deliver):
            try:
                yield step.item
            except GeneratorExit:  # the consumer left: the engine cleans up (its own steps still made)
                feed.leave()
            except BaseException as exc:
                feed.error = exc
            continue
        try:
            feed.value = step.run()
        except BaseException as exc:
            feed.error = exc
