"""An iterator advanced on a thread of its own, a few items ahead of its reader.

A capsule video is decoded and scored batch by batch. Decoding (FFmpeg, swscale, Pillow's
resize) and scoring (TensorFlow) both release the GIL, so decoding the next batch while the
current one is scored keeps the decoder off the scoring's critical path; done in turn, the
loop's time per frame is their sum.

Only the producer thread ever advances or closes the wrapped iterator (a generator may not be
resumed from two threads at once; after a hand-over, below, the new producer starts only once
the old one has left), so ``close`` asks it to stop and waits for it. An exception the
iterator raises reaches the reader in order, after the items produced before it.

A ``background`` producer runs at the lowest priority the system has (SCHED_IDLE on Linux): it
takes only CPU time nothing else wants, mostly the moments inside a batch's scoring when a
core waits, and never preempts one of TensorFlow's two compute threads, which would leave the
other spinning at its next sync point (measured: scoring beside such a decode thread ran
about 6 % faster, BENCHMARKS.md). On a machine busy with other work there may be no such
moments. So when the reader has waited ``starved_after`` seconds for an item, production is
handed, after the item in progress, to a new producer thread at normal priority (a thread may
not raise its own priority again unless privileged), which goes on to the end.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from gicls.logs import get_logger

log = get_logger(__name__)

Item = TypeVar("Item")

# How long a blocked put or get waits before it looks at the stop flag again: an orderly stop
# waits at most this long plus the item being produced.
_POLL_SECONDS = 0.05
# A background producer the reader has waited this long for is starved (a batch of 32 video
# frames takes about 0.1 s of one core to decode).
STARVED_SECONDS = 2.0


class _End:
    """The producer's last message: the iterator ended, by exhaustion or by ``error``."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Prefetcher(Generic[Item]):
    def __init__(
        self,
        source: Iterator[Item],
        depth: int,
        name: str,
        background: bool = False,
        starved_after: float = STARVED_SECONDS,
    ) -> None:
        """Advance ``source`` on a daemon thread named ``name``, at most ``depth`` items ahead
        of the reader (``depth`` >= 1: memory holds ``depth`` + 2 items at most); with
        ``background``, at the lowest priority until the reader starves (see above)."""
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._source = source
        self._name = name
        self._queue: queue.Queue[Item | _End] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._handoff = threading.Event()  # the background producer leaves the source
        self._source_done = False  # ended, raised or closed: nobody advances it again
        self._ended = False
        self._starved_after = starved_after if background else None
        self._thread = self._start(self._produce_in_background if background else self._produce)

    def __iter__(self) -> Prefetcher[Item]:
        return self

    def __next__(self) -> Item:
        if self._ended:
            raise StopIteration
        item = self._next_item()
        if isinstance(item, _End):
            self._ended = True
            self._thread.join()
            if item.error is not None:
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the producer (after the item it is producing) and release the source."""
        self._stop.set()
        self._thread.join()
        self._ended = True

    def _start(self, target: Callable[[], None]) -> threading.Thread:
        thread = threading.Thread(target=target, name=self._name, daemon=True)
        thread.start()
        return thread

    def _next_item(self) -> Item | _End:
        if self._starved_after is not None:
            try:
                return self._queue.get(timeout=self._starved_after)
            except queue.Empty:
                self._hand_off()
        return self._queue.get()

    def _hand_off(self) -> None:
        """The background producer is starved: a producer at normal priority takes over."""
        log.info(
            "decode_starved",
            thread=self._name,
            waited_s=self._starved_after,
            then="decoding at normal priority",
        )
        self._starved_after = None
        self._handoff.set()
        starved = self._thread

        def take_over() -> None:
            starved.join()  # it finishes the item in progress, then leaves the source
            if not self._source_done:
                self._produce()

        self._thread = self._start(take_over)

    def _produce_in_background(self) -> None:
        lower_own_priority()
        self._produce(until=self._handoff)

    def _produce(self, until: threading.Event | None = None) -> None:
        """Queue the source's items until it ends, a stop, or ``until`` is set: then the
        source is left as it is, for the next producer."""
        handed_off = False
        try:
            while True:
                if until is not None and until.is_set():
                    handed_off = True
                    return
                try:
                    item = next(self._source)
                except StopIteration:
                    self._put(_End(None))
                    return
                if not self._put(item):
                    return
        except BaseException as exc:  # handed to the reader, who decides what it means
            self._put(_End(exc))
        finally:
            if not handed_off:
                self._source_done = True
                close = getattr(self._source, "close", None)
                if close is not None:
                    close()

    def _put(self, item: Item | _End) -> bool:
        """Queue ``item`` unless a stop is asked for first; False when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False


def lower_own_priority() -> bool:
    """Run the calling thread at SCHED_IDLE; False where the system has no such policy or
    refuses it (the thread then keeps its priority: nothing else changes)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: the calling thread
    except (AttributeError, OSError):
        return False
    return True
