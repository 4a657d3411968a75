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

import os
import time
from collections.abc import Callable
from pathlib import Path

from gicls.audit.schema import neutralise
from gicls.daemon.journal import Entry
from gicls.daemon.notify import Notifier
from gicls.daemon.pipeline import Pipeline
from gicls.daemon.route import QUARANTINE_FOLDER
from gicls.daemon.studies import Source
from gicls.daemon.video_job import (
    MANIFEST_SUFFIX,
    VIDEO_UNREADABLE,
    VIDEOS_FOLDER,
    VideoJob,
    VideoSettings,
    plan_cells,
    plan_extra,
    staging_folder,
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
        report: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``report(study folder)``: ask for a study's report (background_reports.py)."""
        self.pipeline = pipeline
        self.report = report
        self.settings = settings
        self.notifier = notifier
        self._clock = clock
        self._job: VideoJob | None = None
        self._entry: Entry | None = None
        self._last_log = 0.0
        self.finished: list[str] = []  # inbox names of the videos finished, in order

    @property
    def busy(self) -> bool:
        return self._job is not None or bool(self.pipeline.videos)

    def step(self) -> bool:
        """Score one batch of the current video (starting the next one if needed), or finish
        it; False when there is no video to work on."""
        if self._job is None:
            # Refused or already finished videos are dealt with by _start alone.
            return self._start()
        job, entry = self._job, self._entry
        assert entry is not None
        try:
            scored = job.step()
            if scored:
                self.pipeline.faults.reached("video_batch")
                self._progress(entry, job)
                return True
            # Scoring is over; what follows (key frames, the table, the plan) is timed apart.
            log.info(
                "video_scored",
                file_name=self.pipeline.studies.display(entry.name),
                frames_scored=job.frames_scored,
                seconds=round(self._clock() - job.started, 3),
            )
            self._finish(entry, job)
        except OSError:
            # A full disk mid-video: give the video back to the queue, to start again later;
            # one already planned is finished by recovery from its plan instead.
            self._drop_job()
            if entry.plan is None:
                self.pipeline.videos.setdefault(entry.id, entry)
            raise
        return True

    def holds(self, folder: str) -> bool:
        """Whether a video of the study in inbox folder ``folder`` is queued or being scored."""
        entries = [*self.pipeline.videos.values(), *([self._entry] if self._entry else [])]
        return any(self.pipeline.studies.folder_of(entry.name) == folder for entry in entries)

    def _start(self) -> bool:
        if not self.pipeline.videos:
            return False
        entry_id = next(iter(self.pipeline.videos))
        entry = self.pipeline.videos.pop(entry_id)
        pipeline = self.pipeline
        if entry.plan is not None or not os.path.lexists(pipeline.work / entry.id):
            return True  # finished meanwhile (recovery after a full disk completed its plan)
        source = pipeline.studies.video_source_of(entry.name)
        if source.refusal is not None:
            self._refuse(entry, source)
            return True
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
        log.info("video_started", file_name=source.source_path, frames=self._job.frames_expected)
        return True

    def _progress(self, entry: Entry, job: VideoJob) -> None:
        done, total = job.frames_scored, job.frames_expected
        elapsed = max(1e-6, self._clock() - job.started)
        left = (total - done) * elapsed / done if total > done else 0.0
        of = f"/{total}" if total else ""
        name = self.pipeline.studies.display(entry.name)
        self.notifier.status(f"video {name}: {done}{of} frames, {left:.0f} s left")
        now = self._clock()
        if now - self._last_log >= PROGRESS_LOG_SECONDS:
            self._last_log = now
            log.info(
                "video_progress",
                file_name=name,
                frames_done=done,
                frames_total=total,
                seconds_left=round(left, 1),
            )

    def _finish(self, entry: Entry, job: VideoJob) -> None:
        source = self.pipeline.studies.video_source_of(entry.name)
        study = source.study
        if job.error is None:
            folder, status = f"{study}/{VIDEOS_FOLDER}", "classified"
        else:
            folder, status = f"{study}/{QUARANTINE_FOLDER}/{VIDEO_UNREADABLE}", "quarantined"
        destination = self.pipeline.router.choose(folder, source.file_name, entry.id, set())
        stem = Path(destination).stem
        outputs = job.stage_outputs(study, stem, destination)
        cells, moves = plan_cells(job, outputs, f"{study}/{stem}{MANIFEST_SUFFIX}")
        cells["status"] = status
        self.pipeline.finish_video(entry, source, destination, cells, plan_extra(moves))
        log.info(
            "video_done" if job.error is None else "video_unreadable",
            file_name=source.source_path,
            destination=destination,
            frames_scored=job.frames_scored,
            seconds=round(self._clock() - job.started, 3),
            reason=cells.get("reason"),
        )
        self._finished(entry, source)

    def _refuse(self, entry: Entry, source: Source) -> None:
        """A video whose study id is refused: to the root quarantine, never decoded."""
        assert source.refusal is not None
        folder = f"{QUARANTINE_FOLDER}/{source.refusal.word}"
        destination = self.pipeline.router.choose(folder, source.file_name, entry.id, set())
        cells = {"status": "quarantined", "reason": neutralise(str(source.refusal))}
        self.pipeline.finish_video(entry, source, destination, cells, {})
        self._finished(entry, source)
        log.warning("video_refused", file_name=source.source_path, reason=str(source.refusal))

    def _finished(self, entry: Entry, source: Source) -> None:
        self._job = self._entry = None
        self.finished.append(entry.name)
        at_root = not self.pipeline.studies.folder_of(entry.name)
        if source.study and at_root and self.report is not None:
            # A video at the inbox root is its study's only source (a study folder of the
            # same name has its own completion): its report is due now.
            self.report(Path(entry.name).stem)

    def _drop_job(self) -> None:
        if self._job is not None:
            self._job.abandon()
        self._job = self._entry = None

    def interrupt(self) -> None:
        """An orderly stop: drop the current video's staged work; every claimed video stays
        in the journal to be done again, without counting as a crash."""
        entries = list(self.pipeline.videos.values())
        if self._entry is not None:
            name = self.pipeline.studies.display(self._entry.name)
            log.info("video_interrupted", file_name=name)
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
