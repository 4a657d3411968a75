"""The main loop: gather candidates, form batches, run them, report liveness.

A batch is sent as soon as ``max_batch`` files are ready, or when the oldest ready file has
waited ``max_wait``; with a backlog every batch is full, so batches grow with the load. A
partial batch is sent at once when no other file can become ready before that deadline
(nothing is settling and a new file needs ``stability`` seconds to settle), so one file
dropped into an idle daemon does not wait for company that cannot come. Between
batches the loop swaps in a bundle that finished loading in the background (and starts a load
when the manifest changed or SIGHUP asked), rescans the inbox on schedule, supervises the
observer, and pings the systemd watchdog, but only while it is going round and the observer is
alive: a stuck loop or a dead observer must look dead to systemd. WATCHDOG=1 means "the loop
is alive", so nothing long runs inside a turn: bundle loads and study reports run on their
own threads, and every wait (idle, a back-off, the reports at a stop) keeps pinging. ``stop``
is only looked at between batches, so the batch in flight always finishes. When storage is full
(storage.py) the loop stops claiming but keeps going round, and retries recovery when the
back-off is due.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gicls.daemon.metrics import DaemonMetrics
from gicls.daemon.notify import Notifier
from gicls.daemon.pipeline import InFlight, Pipeline
from gicls.daemon.recovery import recover_running
from gicls.daemon.scoring import PendingScores
from gicls.daemon.seen_store import SeenStore
from gicls.daemon.serving import ServingModel
from gicls.daemon.settle import Settled, SettleTracker
from gicls.daemon.startup import InboxGuard
from gicls.daemon.storage import StorageBackoff, is_storage_full
from gicls.daemon.study_watch import StudyWatch
from gicls.daemon.thread_names import name_threads
from gicls.daemon.video_runner import VideoRunner
from gicls.daemon.watch import InboxWatcher, scan
from gicls.logs import get_logger

log = get_logger(__name__)

OBSERVER_RESTART_SECONDS = 1.0
REPORT_WAIT_SECONDS = 1.0  # at a stop, the watchdog is pinged between waits this long


@dataclass(frozen=True)
class LoopSettings:
    max_batch: int
    max_wait: float  # seconds a partial batch waits for more files
    rescan_seconds: float
    tick: float  # idle sleep between polls
    once: bool  # exit when nothing is left to do (no observer, no rescans)
    stability: float = 0.0  # stability_seconds: the soonest an untracked file can be ready
    # Batches started (claimed, decoded, sent to be scored) and not finished yet, at most: 2
    # with the daemon's local scoring thread (the next batch is decoded while one is scored),
    # 1 where the ensemble scores inside ``start``; with an actor pool one more than its
    # actors, so an actor that finishes finds the next batch queued.
    in_flight: int = 1


@dataclass(frozen=True)
class _Started:
    settled: list[Settled]  # what the batch was taken from (its study's quiet time)
    batch: InFlight


class Loop:
    def __init__(
        self,
        *,
        settings: LoopSettings,
        tracker: SettleTracker,
        watcher: InboxWatcher | None,
        guard: InboxGuard,
        pipeline: Pipeline,
        seen_store: SeenStore,
        model: ServingModel,
        notifier: Notifier,
        stop: threading.Event,
        reload: threading.Event,
        studies: StudyWatch | None = None,
        videos: VideoRunner | None = None,
        metrics: DaemonMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.tracker = tracker
        self.watcher = watcher
        self.guard = guard
        self.pipeline = pipeline
        self.seen_store = seen_store
        self.model = model
        self.notifier = notifier
        self.stop = stop
        self.reload = reload
        self.studies = studies
        self._clock = clock
        self._ready: deque[Settled] = deque()
        self._in_flight: deque[_Started] = deque()
        self._ready_since = 0.0
        now = clock()
        self._last_rescan = now
        self._last_ping = now - (notifier.watchdog_interval or 0.0)
        self._last_restart = 0.0
        self._storage = StorageBackoff()
        # None: a loop that is never given videos (the daemon always has a runner).
        self.videos = videos
        self.metrics = metrics
        self.processed = 0

    def run(self) -> None:
        while not self.stop.is_set():
            name_threads()
            self._refresh_model()
            self._gather()
            self._retry_storage()
            full = len(self._in_flight) >= self.settings.in_flight
            batch = [] if self._storage.pending or full else self._take_batch()
            if batch:
                self._start(batch)
            finished = self._finish_scored()
            # One batch of a video per turn, after the files': neither starves the other.
            video = not self._storage.pending and self._run_video()
            if batch or finished or video:
                pass
            elif (
                self.settings.once
                and not self._ready
                and len(self.tracker) == 0
                and not self._storage.pending
                and not self._in_flight
                and not (self.videos and self.videos.busy)
            ):
                if self.studies is not None:
                    self.studies.finish_all(self.busy)  # with --once nothing more will come
                break
            else:
                if self.studies is not None and not self._storage.pending:
                    self.studies.check(self.busy)
                self._pause(self.settings.tick)
            self._heartbeat()
        while self._in_flight:
            self._pause(self.settings.tick)
            self._finish_scored()  # the batches in flight always finish
        if self.videos is not None:
            self.videos.interrupt()  # stopped mid-video: it is done again at the next start
        self._settle_reports()

    def _settle_reports(self) -> None:
        """Wait for the study reports asked for, and finish their studies: a stop drops none
        (a study's folders would stay in the inbox until it is found complete again)."""
        while self.studies is not None and not self.studies.settle(REPORT_WAIT_SECONDS):
            self._heartbeat()

    def _pause(self, seconds: float, scores: PendingScores | None = None) -> None:
        """Wait up to ``seconds`` (less if stopped), still pinging the watchdog when due.

        With batches in flight it waits for the oldest one's ``scores`` instead, and returns
        as soon as they are in (a stop does not cut that wait: the batch will be finished).
        """
        if scores is None and self._in_flight:
            scores = self._in_flight[0].batch.scores
        deadline = self._clock() + seconds
        while scores is not None or not self.stop.is_set():
            if scores is not None and scores.done():
                return
            self._heartbeat()
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            interval = self.notifier.watchdog_interval
            # Slices of half the ping interval: a due ping is late by at most that much.
            step = remaining if interval is None else min(remaining, interval / 2)
            if scores is None:
                self.stop.wait(step)
            else:
                scores.wait(step)

    def _refresh_model(self) -> None:
        forced = self.reload.is_set()
        self.reload.clear()
        if self.model.refresh(force=forced):
            self.notifier.status(f"serving bundle {self.model.bundle_id}")

    def _gather(self) -> None:
        now = self._clock()
        if self.watcher is not None:
            self._supervise_observer(self.watcher, now)
            self._observe(self.watcher.drain())
            if now - self._last_rescan >= self.settings.rescan_seconds:
                self.guard.check()
                self._observe(scan(self.guard.inbox))
                if self.studies is not None:
                    self.studies.discover()
                self._last_rescan = now
        settled = self.tracker.poll()
        if self.studies is not None:
            self.studies.noticed(item.name for item in settled)
        if settled and not self._ready:
            self._ready_since = now
        self._ready.extend(settled)

    def _observe(self, names: list[str]) -> None:
        self.tracker.observe(names)
        if self.studies is not None:
            self.studies.noticed(names)

    def busy(self, folder: str) -> bool:
        """Whether this daemon still holds a file of the study in inbox folder ``folder``."""
        prefix = folder + "/"
        return (
            self.tracker.holds_under(folder)
            or any(item.name.startswith(prefix) for item in self._ready)
            or any(item.name.startswith(prefix) for s in self._in_flight for item in s.settled)
            or (self.videos is not None and self.videos.holds(folder))
        )

    def _supervise_observer(self, watcher: InboxWatcher, now: float) -> None:
        if watcher.alive() or now - self._last_restart < OBSERVER_RESTART_SECONDS:
            return
        self._last_restart = now
        log.error("observer_died", inbox=str(self.guard.inbox))
        self.guard.check()
        watcher.restart()
        # Whatever happened while it was down was missed: look at everything.
        self._observe(scan(self.guard.inbox))

    def _take_batch(self) -> list[Settled]:
        count = len(self._ready)
        if count == 0:
            return []
        now = self._clock()
        deadline = self._ready_since + self.settings.max_wait
        if (
            count < self.settings.max_batch
            and now < deadline
            and self._more_may_come(now, deadline)
        ):
            return []
        return [self._ready.popleft() for _ in range(min(count, self.settings.max_batch))]

    def _more_may_come(self, now: float, deadline: float) -> bool:
        """Whether another file could be ready to join the batch before ``deadline``."""
        if len(self.tracker) > 0:
            return True  # something is settling now
        if self.settings.once:
            return False  # with --once nothing new is looked for
        # A file not tracked yet starts its quiet period no earlier than now.
        return now + self.settings.stability < deadline

    def _retry_storage(self) -> None:
        if not self._storage.due(self._clock()):
            return
        try:
            recovered = recover_running(self.pipeline, self.seen_store)
        except OSError as exc:
            if not is_storage_full(exc):
                raise
            self._storage.failed(exc, self._clock())
            return
        self.processed += recovered
        if recovered:
            self._storage.recovered(self._clock())
        else:
            self._storage.retried()

    def _start(self, batch: list[Settled]) -> None:
        try:
            started, claims = self.pipeline.start_batch(batch)
        except OSError as exc:
            if not is_storage_full(exc):
                raise
            self._storage_failed(exc)
            # What was claimed is finished by recovery; what is still in the inbox settles
            # again and is claimed once storage is back.
            for item in batch:
                self.tracker.release(item.name)
            self.tracker.observe(item.name for item in batch)
            return
        for item in batch:
            self.tracker.release(item.name)
        self.tracker.observe(item.name for item in claims.changed)
        for item, error in claims.refused:
            self.tracker.refuse(item, error)
        if started is None:
            if self.studies is not None:
                self.studies.noticed((item.name for item in batch), processed=True)
            return
        self._in_flight.append(_Started(batch, started))

    def _finish_scored(self) -> bool:
        """Finish, oldest first, the batches whose scores are in; True if any was finished."""
        finished = False
        while self._in_flight and self._in_flight[0].batch.scores.done():
            started = self._in_flight.popleft()
            try:
                report = self.pipeline.finish(started.batch)
            except OSError as exc:
                if not is_storage_full(exc):
                    raise
                self._storage_failed(exc)
                return finished
            finished = True
            if self.studies is not None:
                self.studies.noticed((item.name for item in started.settled), processed=True)
            self._storage.recovered(self._clock())  # if storage was full: the batch wrote
            self.seen_store.quiet()  # the batch is done: nothing is open in the journal
            self.processed += report.files
            if self.metrics is not None:
                self.metrics.batch_done(report.files, report.seconds)
            waiting = len(self._ready) + len(self.tracker)
            log.info(
                "batch_done",
                batch_id=report.batch_id,
                files=report.files,
                seconds=round(report.seconds, 3),
                waiting=waiting,
                bundle_id=report.bundle_id,
                **dict(report.statuses),
            )
            self.notifier.status(f"{self.processed} files processed, {waiting} waiting")
        return finished

    def _storage_failed(self, exc: OSError) -> None:
        """Back off, and leave the batches in flight to recovery: it processes every claimed
        entry again (recovery.py), so finishing them here too would write second rows."""
        self._storage.failed(exc, self._clock())
        self.notifier.status(f"storage full: {exc.filename}; retrying")
        while self._in_flight:
            self.pipeline.forget(self._in_flight.popleft().batch)

    def _run_video(self) -> bool:
        if self.videos is None:
            return False
        finished = len(self.videos.finished)
        try:
            worked = self.videos.step()
            if worked and self.metrics is not None:
                self.metrics.progressed()
        except OSError as exc:
            if not is_storage_full(exc):
                raise
            self._storage_failed(exc)
            return False
        done = self.videos.finished[finished:]
        if done:
            self._storage.recovered(self._clock())
            self.seen_store.quiet()
            self.processed += len(done)
            if self.studies is not None:  # its study's quiet time starts now
                self.studies.noticed(done, processed=True)
        return worked

    def _heartbeat(self) -> None:
        if self.metrics is not None:
            self.metrics.serving(self.model.bundle_id)
            self.metrics.tick(waiting=len(self._ready) + len(self.tracker))
        interval = self.notifier.watchdog_interval
        if interval is None or (self.watcher is not None and not self.watcher.alive()):
            return
        now = self._clock()
        if now - self._last_ping >= interval:
            self.notifier.watchdog()
            self._last_ping = now
