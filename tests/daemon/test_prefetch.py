"""The decode-ahead iterator: same items, same order, errors after the items before them."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator

import pytest

from gicls.daemon.prefetch import Prefetcher, lower_own_priority


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


def _endless(closed_on: list[str], stall_before: int | None = None) -> Iterator[int]:
    """0, 1, 2, ... recording the name of the thread that closes it; before item
    ``stall_before`` it stalls as a producer that gets no CPU would."""
    try:
        item = 0
        while True:
            if item == stall_before:
                time.sleep(0.4)
            yield item
            item += 1
    finally:
        closed_on.append(threading.current_thread().name)


def test_close_mid_stream_stops_the_producer_and_closes_the_generator_on_its_own_thread():
    closed_on: list[str] = []
    reader = Prefetcher(_endless(closed_on), depth=2, name="decode-ahead")
    assert next(reader) == 0
    reader.close()
    assert closed_on == ["decode-ahead"]
    assert not any(t.name == "decode-ahead" for t in threading.enumerate())
    with pytest.raises(StopIteration):
        next(reader)


def _policies(starve_at: int | None) -> Iterator[tuple[int, int]]:
    """Six items, each with the scheduling policy of the thread that produced it; before item
    ``starve_at`` the producer stalls as one that gets no CPU would."""
    for item in range(6):
        if item == starve_at:
            time.sleep(0.6)
        yield item, os.sched_getscheduler(0)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="no SCHED_IDLE on this system")
def test_a_background_producer_runs_at_idle_priority_and_hands_over_when_starved():
    probe = threading.Thread(target=lambda: allowed.append(lower_own_priority()))
    allowed: list[bool] = []
    probe.start()
    probe.join()
    if not allowed[0]:
        pytest.skip("this system refuses SCHED_IDLE to this user")

    reader = Prefetcher(_policies(None), depth=1, name="t", background=True, starved_after=5)
    assert list(reader) == [(item, os.SCHED_IDLE) for item in range(6)]

    reader = Prefetcher(_policies(1), depth=1, name="t", background=True, starved_after=0.2)
    # Item 1 is finished by the starved producer; a normal-priority one produces the rest.
    assert list(reader) == [(0, os.SCHED_IDLE), (1, os.SCHED_IDLE)] + [
        (item, os.SCHED_OTHER) for item in range(2, 6)
    ]


def test_closing_after_a_hand_over_closes_the_source_once():
    closed_on: list[str] = []
    source = _endless(closed_on, stall_before=1)
    reader = Prefetcher(source, depth=1, name="t", background=True, starved_after=0.1)
    assert [next(reader) for _ in range(4)] == [0, 1, 2, 3]
    reader.close()
    assert closed_on == ["t"]  # once, by the producer that took over
    assert not any(t.name == "t" for t in threading.enumerate())
