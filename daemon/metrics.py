"""Operators' metrics: Prometheus text format in a file that node_exporter's textfile collector
reads ([daemon] metrics_file).

A file rather than a port keeps the hardened unit's PrivateNetwork=yes. The file is rewritten
whole every ``WRITE_SECONDS`` through prometheus-client's writer (a temporary file renamed over
it, so a scrape never reads half a file). Files are counted as their audit rows are written,
which covers batches, videos and start-up recovery alike. Metrics are for dashboards and
alerts; a failure to write them is logged and never stops the daemon. Counters start at zero
with each daemon start, which Prometheus' rate() expects.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, write_to_textfile

from gicls.logs import get_logger

log = get_logger(__name__)

# Often enough for a 15-60 s scrape interval; each write is one small file.
WRITE_SECONDS = 5.0
# Files per batch: the powers of two up to well past the largest usual max_batch.
BATCH_FILES_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
# Seconds per batch, from one small image on a GPU to a large CPU batch of big images.
BATCH_SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class DaemonMetrics:
    """The daemon's metrics and their file. ``clock`` is wall-clock time (time.time)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self.registry = CollectorRegistry()
        self._files = Counter(
            "gicls_files",
            "Files with an audit row, by status (classified, review, quarantined, ...).",
            ["status"],
            registry=self.registry,
        )
        self._classes = Counter(
            "gicls_files_predicted",
            "Files the models assigned to a condition (classified or review), by condition.",
            ["condition"],
            registry=self.registry,
        )
        self._queue = Gauge(
            "gicls_queue_depth",
            "Files in the inbox waiting for a batch (settled or still settling).",
            registry=self.registry,
        )
        self._batch_files = Histogram(
            "gicls_batch_files",
            "Files per image batch.",
            buckets=BATCH_FILES_BUCKETS,
            registry=self.registry,
        )
        self._batch_seconds = Histogram(
            "gicls_batch_seconds",
            "Seconds per image batch, from reading the files to their audit rows.",
            buckets=BATCH_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._bundle = Gauge(
            "gicls_bundle_info",
            "The model bundle being served (value 1, its id as a label).",
            ["bundle_id"],
            registry=self.registry,
        )
        self._last_batch = Gauge(
            "gicls_last_batch_timestamp_seconds",
            "When a batch of files or of video frames last finished (the start time before).",
            registry=self.registry,
        )
        self._bundle_id: str | None = None
        self._written_at: float | None = None
        self._write_failed = False
        self._last_batch.set(clock())  # an alert on "no batch for 10 min" must not fire at start

    def row_written(self, row: Mapping[str, str]) -> None:
        """Count one audit row (the cells the audit writer was given)."""
        self._files.labels(status=row.get("status", "")).inc()
        predicted = row.get("predicted_class", "")
        if predicted:
            self._classes.labels(condition=predicted).inc()

    def batch_done(self, files: int, seconds: float) -> None:
        self._batch_files.observe(files)
        self._batch_seconds.observe(seconds)
        self.progressed()

    def progressed(self) -> None:
        """A batch of video frames finished: the daemon is making progress."""
        self._last_batch.set(self._clock())

    def serving(self, bundle_id: str) -> None:
        if bundle_id == self._bundle_id:
            return
        if self._bundle_id is not None:
            self._bundle.remove(self._bundle_id)
        self._bundle.labels(bundle_id=bundle_id).set(1)
        self._bundle_id = bundle_id

    def tick(self, waiting: int) -> None:
        """Record the queue depth and rewrite the file when ``WRITE_SECONDS`` have passed."""
        self._queue.set(waiting)
        now = self._clock()
        if self._written_at is None or now - self._written_at >= WRITE_SECONDS:
            self.write()

    def write(self, strict: bool = False) -> None:
        """Rewrite the file; a failure is logged once, or raised when ``strict`` (at start-up:
        a file that cannot be written is a set-up error the operator should see at once)."""
        self._written_at = self._clock()
        try:
            write_to_textfile(str(self.path), self.registry)
        except OSError as exc:
            if strict:
                raise
            if not self._write_failed:  # once, not every few seconds
                log.warning("metrics_write_failed", path=str(self.path), error=str(exc))
            self._write_failed = True
        else:
            if self._write_failed:
                log.info("metrics_write_recovered", path=str(self.path))
            self._write_failed = False
