"""The decode-ahead iterator: same items, same order, errors after the items before them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from gicls.daemon.prefetch import Prefetcher


def test_items_arrive_in_order_and_the_iterator_ends():
    assert list(Prefetcher(iter(range(50)), depth=2, name="t")) == list(range(50))


def test_an_error_arrives_after_the_items_produced_before_it():
    def damaged() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("frame 3 is damaged")

    reader = Prefetcher(damaged(), depth=4, name="t")
    assert [next(reader), next(reader)] == [1, 2]
    with pytest.raises(ValueError, match="frame 3 is damaged"):
        next(reader)
    with pytest.raises(StopIteration):
        next(reader)


def test_the_source_runs_ahead_of_the_reader_by_depth_items_and_no_more():
    produced: list[int] = []

    def counted() -> Iterator[int]:
        for item in range(100):
            produced.append(item)
            yield item

    reader = Prefetcher(counted(), depth=3, name="t")
    assert next(reader) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # time to run further ahead if it wrongly could
    # One taken, three queued, one produced and waiting for room: no more.
    assert len(produced) == 5
    reader.close()


def test_close_mid_stream_stops_the_producer_and_closes_the_generator_on_its_own_thread():
    closed_on: list[str] = []

    def endless() -> Iterator[int]:
        try:
            item = 0
            while True:
                yield item
                item += 1
        finally:
            closed_on.append(threading.current_thread().name)

    reader = Prefetcher(endless(), depth=2, name="decode-ahead")
    assert next(reader) == 0
    reader.close()
    assert closed_on == ["decode-ahead"]
    assert not any(t.name == "decode-ahead" for t in threading.enumerate())
    with pytest.raises(StopIteration):
        next(reader)
