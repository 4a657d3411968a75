"""Videos in the daemon's loop: one batch of the current video per turn of the loop.

Claimed videos wait in ``Pipeline.videos``; the loop calls ``step`` once per turn, between the
batches of loose files and study frames, so a 100,000-frame study never holds up a file dropped
after it. Progress (frames done, time left) goes to the systemd STATUS line on every batch and
to the log every ``PROGRESS_LOG_SECONDS``. A finished video is planned (journaled) and
completed by the pipeline like any file. ``interrupt`` (an orderly stop) drops what the current
video staged and leaves it claimed, so the next start does it again from the start; a stop is
not a crash, so it is not counted towards the poison limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from gicls.daemon.journal import Entry
from gicls.daemon.notify import Notifier
from gicls.daemon.pipeline import Pipeline
from gicls.daemon.route import QUARANTINE_FOLDER
from gicls.daemon.video_job import (
    MANIFEST_SUFFIX,
    VIDEO_UNREADABLE,
    VIDEOS_FOLDER,
    VideoJob,
    VideoSettings,
    plan_cells,
    plan_extra,
    staging_folder,
    video_study,
)
from gicls.logs import get_logger

log = get_logger(__name__)

PROGRESS_LOG_SECONDS = 10.0


class VideoRunner:
    def __init__(
        self,
        pipeline: Pipeline,
        settings: VideoSettings,
        notifier: Notifier,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.notifier = notifier
        self._clock = clock
        self._job: VideoJob | None = None
        self._entry: Entry | None = None
        self._last_log = 0.0
        self.finished = 0

    @property
    def busy(self) -> bool:
        return self._job is not None or bool(self.pipeline.videos)

    def step(self) -> bool:
        """Score one batch of the current video (starting the next one if needed), or finish
        it; False when there is no video to work on."""
        if self._job is None and not self._start():
            return False
        job, entry = self._job, self._entry
        assert job is not None and entry is not None
        try:
            scored = job.step()
            if scored:
                self.pipeline.faults.reached("video_batch")
                self._progress(entry, job)
                return True
            self._finish(entry, job)
        except OSError:
            # A full disk mid-video: give the video back to the queue, to start again later.
            self._drop_job()
            self.pipeline.videos.setdefault(entry.id, entry)
            raise
        return True

    def _start(self) -> bool:
        if not self.pipeline.videos:
            return False
        entry_id = next(iter(self.pipeline.videos))
        entry = self.pipeline.videos.pop(entry_id)
        pipeline = self.pipeline
        self._entry = entry
        self._job = VideoJob(
            pipeline.work / entry.id,
            staging_folder(pipeline.work, entry.id),
            pipeline.options.classes,
            pipeline.model.ensemble,
            pipeline.options.review,
            self.settings,
        )
        self._last_log = self._clock()
        log.info("video_started", file_name=entry.name, frames=self._job.frames_expected)
        return True

    def _progress(self, entry: Entry, job: VideoJob) -> None:
        done, total = job.frames_scored, job.frames_expected
        elapsed = max(1e-6, self._clock() - job.started)
        left = (total - done) * elapsed / done if total > done else 0.0
        of = f"/{total}" if total else ""
        self.notifier.status(f"video {entry.name}: {done}{of} frames, {left:.0f} s left")
        now = self._clock()
        if now - self._last_log >= PROGRESS_LOG_SECONDS:
            self._last_log = now
            log.info(
                "video_progress",
                file_name=entry.name,
                frames_done=done,
                frames_total=total,
                seconds_left=round(left, 1),
            )

    def _finish(self, entry: Entry, job: VideoJob) -> None:
        study = video_study(entry.name)
        if job.error is None:
            folder, status = f"{study}/{VIDEOS_FOLDER}", "classified"
        else:
            folder, status = f"{study}/{QUARANTINE_FOLDER}/{VIDEO_UNREADABLE}", "quarantined"
        destination = self.pipeline.router.choose(folder, entry.name, entry.id, set())
        stem = Path(destination).stem
        outputs = job.stage_outputs(study, stem, destination)
        cells, moves = plan_cells(job, outputs, f"{study}/{stem}{MANIFEST_SUFFIX}")
        cells.update(status=status, study=study)
        self.pipeline.plan_video(entry, destination, cells, plan_extra(moves))
        self.pipeline.complete([entry])
        self._job = self._entry = None
        self.finished += 1
        event = "video_done" if job.error is None else "video_unreadable"
        log.info(
            event,
            file_name=entry.name,
            destination=destination,
            frames_scored=job.frames_scored,
            seconds=round(self._clock() - job.started, 3),
            reason=cells.get("reason"),
        )

    def _drop_job(self) -> None:
        if self._job is not None:
            self._job.abandon()
        self._job = self._entry = None

    def interrupt(self) -> None:
        """An orderly stop: drop the current video's staged work; every claimed video stays
        in the journal to be done again, without counting as a crash."""
        entries = list(self.pipeline.videos.values())
        if self._entry is not None:
            log.info("video_interrupted", file_name=self._entry.name)
            entries.insert(0, self._entry)
        self._drop_job()
        self.pipeline.videos.clear()
        for entry in entries:
            # Recovery counts an attempt for every claimed entry it finds; this one was not a
            # crash, so the count goes down first (see recovery.MAX_ATTEMPTS).
            entry.attempt -= 1
            self.pipeline.journal.claim(entry)
        if entries:
            self.pipeline.journal.sync()
