"""The per-batch pipeline: claim -> read -> decode -> predict -> decide -> plan -> route -> audit.

Every step that moves a file is preceded by a fsynced journal record saying what is about to
happen, so recovery (``recovery.py``) can always finish what a crash interrupted and never does
anything twice: the claim record precedes the rename into the work folder, the plan record (the
full audit row and destination) precedes the link into the output tree, and the done record
follows the fsynced audit row.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from gicls.audit.schema import FLAG_SEPARATOR, encode_name, neutralise
from gicls.daemon.audit_writer import AuditWriter
from gicls.daemon.claim import Claims, claim_batch
from gicls.daemon.decide import ReviewPolicy, decide
from gicls.daemon.decode import decode_batch
from gicls.daemon.dedupe import SeenIndex
from gicls.daemon.faults import Faults
from gicls.daemon.intake import Intake, read_claimed, unread
from gicls.daemon.journal import Entry, Journal
from gicls.daemon.reasons import UNREADABLE, Reason
from gicls.daemon.route import Router, destination_folder
from gicls.daemon.scoring import PendingScores, Scores, ScoringThread, submit
from gicls.daemon.serving import ServingModel
from gicls.daemon.settle import Settled
from gicls.daemon.studies import Source, StudyNames
from gicls.daemon.video_job import is_video_entry, staging_folder
from gicls.fsutil import fsync_dir
from gicls.hashing import file_sha256
from gicls.logs import get_logger

log = get_logger(__name__)

_EVENT_FOR_STATUS = {
    "classified": "image_classified",
    "review": "image_for_review",
    "quarantined": "file_quarantined",
    "duplicate": "duplicate_skipped",
}


def new_batch_id() -> str:
    return uuid.uuid4().hex[:12]


def _score(value: float) -> str:
    return f"{value:.6f}"


@dataclass
class BatchReport:
    batch_id: str
    files: int
    statuses: Counter[str]
    seconds: float
    bundle_id: str  # of the bundle that scored the batch (a reload may since have replaced it)


@dataclass(frozen=True)
class InFlight:
    """A batch read, decoded and sent to be scored, not planned yet (lists in entry order)."""

    entries: tuple[Entry, ...]
    intakes: list[Intake]
    sources: list[Source]
    reasons: list[Reason | None]
    skipped: list[bool]
    scored: list[int]  # positions in ``entries`` of the images sent, in the order sent
    scores: PendingScores
    started: float  # time.monotonic() when the batch was started


@dataclass(frozen=True)
class PipelineOptions:
    classes: tuple[str, ...]
    review: ReviewPolicy
    on_duplicate: Literal["process", "skip"]


class Pipeline:
    def __init__(
        self,
        *,
        inbox: Path,
        work: Path,
        router: Router,
        journal: Journal,
        audit: AuditWriter,
        seen: SeenIndex,
        model: ServingModel,
        options: PipelineOptions,
        faults: Faults,
        studies: StudyNames,
        scorer: ScoringThread | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``scorer``: where a local ensemble scores (None: in ``start``, before it returns)."""
        self.inbox = inbox
        self.work = work
        self.router = router
        self.journal = journal
        self.audit = audit
        self.seen = seen
        self.model = model
        self.options = options
        self.faults = faults
        self.studies = studies
        self.scorer = scorer
        self._wall_clock = wall_clock
        # Claimed videos waiting to be scored, by entry id, in claim order.
        self.videos: dict[str, Entry] = {}
        # sha256 of the files of started batches not finished yet (duplicates across them).
        self._hashes_in_flight: Counter[str] = Counter()

    def run_batch(self, settled: Sequence[Settled]) -> tuple[BatchReport | None, Claims]:
        """Claim and process settled files; also returns what the claim found."""
        batch, claims = self.start_batch(settled)
        return (self.finish(batch) if batch else None), claims

    def start_batch(self, settled: Sequence[Settled]) -> tuple[InFlight | None, Claims]:
        """Claim settled files and send their images to be scored (``finish`` takes them on).

        Claimed videos are not processed here: they wait in ``videos`` for the loop to score
        them batch by batch (video_runner.py).
        """
        claims = claim_batch(
            settled, self.inbox, self.work, self.journal, self.faults, self.studies.display
        )
        images = []
        for entry in claims.entries:
            if is_video_entry(self.work, entry):
                self.videos[entry.id] = entry
            else:
                images.append(entry)
        return (self.start(images) if images else None), claims

    def process(self, entries: Sequence[Entry], forced_reason: Reason | None = None) -> BatchReport:
        """Take claimed entries to the end; ``forced_reason`` quarantines without reading."""
        return self.finish(self.start(entries, forced_reason))

    def start(self, entries: Sequence[Entry], forced_reason: Reason | None = None) -> InFlight:
        """Read and decode claimed entries and send their images to be scored.

        Nothing is journaled here: if the process dies before ``finish``, the entries are
        claimed-but-unplanned and recovery processes them again, whoever was scoring them.
        """
        started = time.monotonic()
        intakes = [
            unread(self.work / entry.id, forced_reason)
            if forced_reason
            else read_claimed(self.work / entry.id)
            for entry in entries
        ]
        sources = [self.studies.source_of(entry.name) for entry in entries]
        # A refused study's files are read (their rows keep the sha256) but never decoded.
        reasons = [
            intake.reason or source.refusal for intake, source in zip(intakes, sources, strict=True)
        ]
        for source, reason in zip(sources, reasons, strict=True):
            if reason is not None and reason.word == UNREADABLE:
                log.warning("file_unreadable", file_name=source.source_path, reason=str(reason))
        hashes = [intake.sha256 for intake in intakes]
        # Batches still being scored are not planned yet: their files count as earlier copies.
        earlier = list(self._hashes_in_flight.elements())
        repeated = self.seen.repeats(earlier + hashes)[len(earlier) :]
        self._hashes_in_flight.update(hashes)
        # Within a study every frame is scored: a capsule resting still repeats its bytes.
        skipped = [
            self.options.on_duplicate == "skip" and repeat and reason is None and not source.study
            for repeat, reason, source in zip(repeated, reasons, sources, strict=True)
        ]
        ensemble = self.model.ensemble  # one bundle for the whole batch, even across a reload
        wanted = [k for k, reason in enumerate(reasons) if reason is None and not skipped[k]]
        blobs = [intakes[k].data or b"" for k in wanted]
        images, failures = decode_batch(blobs, ensemble.image_size)
        for position, error in failures.items():
            reasons[wanted[position]] = Reason(error.reason)
        self.faults.reached("decoded")
        decodable = [position for position in range(len(wanted)) if position not in failures]
        return InFlight(
            entries=tuple(entries),
            intakes=intakes,
            sources=sources,
            reasons=reasons,
            skipped=skipped,
            scored=[wanted[position] for position in decodable],
            scores=submit(ensemble, images[decodable], self.scorer),
            started=started,
        )

    def finish(self, batch: InFlight) -> BatchReport:
        """Wait for a started batch's scores, then plan, route, audit and close it."""
        scored = batch.scores.result()
        self.forget(batch)
        self.faults.reached("predicted")
        batch_id = new_batch_id()
        scores_of = dict(zip(batch.scored, scored.values, strict=True))
        reserved: set[str] = set()
        for k, entry in enumerate(batch.entries):
            plan = self._plan(
                entry,
                batch.sources[k],
                batch.intakes[k],
                batch.reasons[k],
                batch.skipped[k],
                scores_of.get(k),
                batch_id,
                scored,
                reserved,
            )
            self.journal.plan(entry, plan)
        self.journal.sync()
        self.faults.reached("route_journaled")
        statuses = self.complete(batch.entries)
        seconds = time.monotonic() - batch.started
        return BatchReport(batch_id, len(batch.entries), statuses, seconds, scored.bundle_id)

    def forget(self, batch: InFlight) -> None:
        """Stop counting a started batch as in flight (finished, or left to recovery)."""
        self._hashes_in_flight.subtract(intake.sha256 for intake in batch.intakes)
        self._hashes_in_flight = +self._hashes_in_flight  # drop the zero counts

    def _plan(
        self,
        entry: Entry,
        source: Source,
        intake: Intake,
        reason: Reason | None,
        skipped: bool,
        scores: np.ndarray | None,
        batch_id: str,
        scored: Scores,
        reserved: set[str],
    ) -> dict[str, Any]:
        # Looked up here, not before the batch: a copy of a file planned earlier in this batch
        # finds where that one goes.
        cells = self._file_cells(source, intake.sha256, intake.size, batch_id)
        predicted: str | None = None
        if reason is not None:
            status = "quarantined"
            cells["reason"] = neutralise(str(reason))
        elif skipped:
            status = "duplicate"
        else:
            if scores is None:
                raise ValueError(f"entry {entry.id} was decoded but not scored")
            # The thresholds of the bundle that scored the batch: a reload brings its own.
            decision = decide(
                scores,
                self.options.classes,
                self.options.review,
                scored.manifest.class_thresholds,
            )
            status, predicted = decision.status, decision.predicted_class
            cells["model_bundle"] = scored.bundle_id
            cells["precision"] = scored.precision
            # Written as they are, nan and inf included: the row shows what the model said.
            cells.update(zip(self.options.classes, map(_score, scores), strict=True))
            cells["flags"] = FLAG_SEPARATOR.join(decision.flags)
            if decision.reason is not None:
                cells["reason"] = neutralise(decision.reason)
            if predicted is not None:
                cells.update(
                    predicted_class=predicted,
                    confidence=_score(decision.confidence),
                    margin=_score(decision.margin),
                )
        cells["status"] = status
        folder = source.folder_prefix + destination_folder(status, predicted, reason)
        destination = self.router.choose(folder, source.file_name, entry.id, reserved)
        reserved.add(destination)
        self.seen.remember(intake.sha256, encode_name(os.fsencode(destination))[0])
        return {"destination_hex": os.fsencode(destination).hex(), "cells": cells}

    def _file_cells(
        self, source: Source, sha256: str, size: int | None, batch_id: str
    ) -> dict[str, str]:
        name_text, name_hex = encode_name(os.fsencode(source.file_name))
        return {
            "file_name": name_text,
            "file_name_hex": name_hex,
            "study": source.study,
            # Exact bytes are in the journal; the row keeps the escaped text like file_name.
            "source_path": encode_name(os.fsencode(source.source_path))[0],
            "sha256": sha256,
            "bytes": "" if size is None else str(size),
            "batch_id": batch_id,
            "duplicate_of": self.seen.lookup(sha256) or "",
        }

    def finish_video(
        self,
        entry: Entry,
        source: Source,
        destination: str,
        cells: dict[str, str],
        extra: dict[str, Any],
    ) -> None:
        """Journal the plan of a scored video and complete it: its row ``cells`` (status,
        frames_scored, ...), its ``destination`` and ``extra`` (the staged outputs to publish,
        video_job.py)."""
        path = self.work / entry.id
        sha256 = file_sha256(path, follow_symlinks=False)
        row = self._file_cells(source, sha256, os.lstat(path).st_size, new_batch_id())
        row.update(cells)
        self.seen.remember(sha256, encode_name(os.fsencode(destination))[0])
        plan = {"destination_hex": os.fsencode(destination).hex(), "cells": row, **extra}
        self.journal.plan(entry, plan)
        self.journal.sync()
        self.faults.reached("route_journaled")
        self.complete([entry])

    def complete(
        self, entries: Sequence[Entry], already_logged: Collection[str] = ()
    ) -> Counter[str]:
        """Link planned entries into place, log their rows, close them in the journal.

        Safe to repeat after a crash at any point: a link that exists is recognised by its
        inode, and entries in ``already_logged`` (ids whose row is in the log) get no second row.
        """
        for entry in entries:
            self._publish_outputs(entry)
        destinations = [self._place(entry) for entry in entries]
        self.router.sync_folders(destinations)
        for entry in entries:
            (self.work / entry.id).unlink(missing_ok=True)
            shutil.rmtree(staging_folder(self.work, entry.id), ignore_errors=True)
            self.faults.reached("unlinked")
        fsync_dir(self.work)
        statuses: Counter[str] = Counter()
        with self.audit.batch():
            for entry, destination in zip(entries, destinations, strict=True):
                cells = _plan_of(entry)["cells"]
                statuses[cells["status"]] += 1
                if entry.id in already_logged:
                    continue
                self.audit.append(self._row(entry, destination))
                self.faults.reached("audit_written")
                log.debug(
                    _EVENT_FOR_STATUS[cells["status"]],
                    file_name=self.studies.display(entry.name),
                    destination=destination,
                    predicted_class=cells.get("predicted_class"),
                    confidence=cells.get("confidence"),
                    reason=cells.get("reason"),
                )
        self.faults.reached("audited")
        for entry in entries:
            self.journal.done(entry)
        self.journal.sync()
        self.faults.reached("done")
        return statuses

    def _publish_outputs(self, entry: Entry) -> None:
        """Rename a video's staged outputs onto their journaled places (each once: after a
        crash, those already moved are simply there)."""
        moved = []
        for staging_hex, final in _plan_of(entry).get("outputs_staged", ()):
            staging = os.fsdecode(bytes.fromhex(staging_hex))
            target = self.router.output_dir / final
            if os.path.lexists(staging):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging, target)
                moved.append(target.parent)
        for folder in set(moved):
            fsync_dir(folder)

    def _place(self, entry: Entry) -> str:
        plan = _plan_of(entry)
        destination = os.fsdecode(bytes.fromhex(plan["destination_hex"]))
        source = self.work / entry.id
        if not os.path.lexists(source):
            if not self.router.present(destination):
                log.error(
                    "routed_file_missing",
                    file_name=self.studies.display(entry.name),
                    destination=destination,
                )
            return destination
        # Another process may have taken the name since it was chosen: choose again, journal
        # the new destination first, so recovery always looks in the right place.
        while not self.router.place(source, destination):
            folder = os.path.dirname(destination)
            name = self.studies.source_of(entry.name).file_name
            destination = self.router.choose(folder, name, entry.id, set())
            self.journal.plan(entry, {**plan, "destination_hex": os.fsencode(destination).hex()})
            self.journal.sync()
        self.faults.reached("linked")
        return destination

    def _row(self, entry: Entry, destination: str) -> dict[str, str]:
        now = self._wall_clock()
        destination_text, destination_hex = encode_name(os.fsencode(destination))
        return {
            **_plan_of(entry)["cells"],
            "processed_at": dt.datetime.fromtimestamp(now, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "destination": destination_text,
            "destination_hex": destination_hex,
            "latency_ms": str(max(0, round((now - entry.settled_at) * 1000))),
        }


def _plan_of(entry: Entry) -> dict[str, Any]:
    if entry.plan is None:
        raise ValueError(f"journal entry {entry.id} has no plan")
    return entry.plan
