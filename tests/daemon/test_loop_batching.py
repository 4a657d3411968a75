"""When the loop sends a partial batch: at the deadline, or at once if nobody can join it."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

from gicls.daemon.loop import Loop, LoopSettings
from gicls.daemon.settle import SettleTracker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make_loop(folder: Path, clock: Clock, *, stability: float, once: bool = False) -> Loop:
    tracker = SettleTracker(folder, stability, 60.0, (), clock=clock)
    settings = LoopSettings(
        max_batch=4, max_wait=0.5, rescan_seconds=60.0, tick=0.1, once=once, stability=stability
    )
    return Loop(
        settings=settings,
        tracker=tracker,
        watcher=None,
        guard=None,  # type: ignore[arg-type]  # only used with a watcher
        pipeline=None,  # type: ignore[arg-type]
        seen_store=None,  # type: ignore[arg-type]
        model=None,  # type: ignore[arg-type]
        notifier=SimpleNamespace(watchdog_interval=None),  # type: ignore[arg-type]
        stop=threading.Event(),
        reload=threading.Event(),
        clock=clock,
    )


def settle(loop: Loop, clock: Clock, seconds: float) -> None:
    loop._gather()
    clock.now += seconds
    loop._gather()


def test_a_lone_file_in_an_idle_daemon_is_sent_without_waiting(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    clock = Clock()
    loop = make_loop(tmp_path, clock, stability=2.0)
    loop.tracker.observe(["a.jpg"])
    settle(loop, clock, 2.0)
    assert [item.name for item in loop._take_batch()] == ["a.jpg"]


def test_a_partial_batch_waits_while_another_file_is_settling(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(b"x")
    clock = Clock()
    loop = make_loop(tmp_path, clock, stability=2.0)
    loop.tracker.observe(["a.jpg"])
    loop._gather()
    clock.now += 1.9
    loop.tracker.observe(["b.jpg"])  # arrives later, still settling when a is ready
    clock.now += 0.1
    loop._gather()
    assert len(loop._ready) == 1 and len(loop.tracker) == 1
    assert loop._take_batch() == []
    clock.now += 0.5  # the deadline has passed: a goes alone
    assert [item.name for item in loop._take_batch()] == ["a.jpg"]


def test_with_a_short_stability_a_partial_batch_waits_for_the_deadline(tmp_path):
    # A new file could settle within max_wait, so it is worth waiting for.
    (tmp_path / "a.jpg").write_bytes(b"x")
    clock = Clock()
    loop = make_loop(tmp_path, clock, stability=0.25)
    loop.tracker.observe(["a.jpg"])
    settle(loop, clock, 0.25)
    assert loop._take_batch() == []
    clock.now += 0.5
    assert [item.name for item in loop._take_batch()] == ["a.jpg"]


def test_a_full_batch_is_sent_at_once(tmp_path):
    names = [f"{n}.jpg" for n in range(6)]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    clock = Clock()
    loop = make_loop(tmp_path, clock, stability=0.25)
    loop.tracker.observe(names)
    settle(loop, clock, 0.25)
    assert len(loop._take_batch()) == 4
