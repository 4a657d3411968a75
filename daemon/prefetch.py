"""An iterator advanced on a thread of its own, a few items ahead of its reader.

A capsule video is decoded and scored batch by batch. Decoding (FFmpeg, swscale, Pillow's
resize) and scoring (TensorFlow) both release the GIL, so decoding the next batch while the
current one is scored keeps the decoder off the scoring's critical path; done in turn, the
loop's time per frame is their sum.

Only the producer thread ever advances or closes the wrapped iterator (a generator may not be
resumed from two threads), so ``close`` asks it to stop and waits for it. An exception the
iterator raises reaches the reader in order, after the items produced before it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

Item = TypeVar("Item")

# How long a blocked put or get waits before it looks at the stop flag again: an orderly stop
# waits at most this long plus the item being produced.
_POLL_SECONDS = 0.05


class _End:
    """The producer's last message: the iterator ended, by exhaustion or by ``error``."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Prefetcher(Generic[Item]):
    def __init__(self, source: Iterator[Item], depth: int, name: str) -> None:
        """Advance ``source`` on a daemon thread named ``name``, at most ``depth`` items ahead
        of the reader (``depth`` >= 1: memory holds ``depth`` + 2 items at most)."""
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._source = source
        self._queue: queue.Queue[Item | _End] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=self._produce, name=name, daemon=True)
        self._thread.start()

    def __iter__(self) -> Prefetcher[Item]:
        return self

    def __next__(self) -> Item:
        if self._ended:
            raise StopIteration
        item = self._queue.get()
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

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_End(None))
        except BaseException as exc:  # handed to the reader, who decides what it means
            self._put(_End(exc))
        finally:
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
