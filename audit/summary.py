"""What the audit log says, as tables: ``gicls-audit summary`` and ``gicls-audit tail``.

Times are UTC (as logged). Confidence percentiles use classified and review rows only: a
duplicate row repeats an image already counted, a quarantined row has no score.

``summary`` and ``--by study`` read the log a chunk at a time and keep counts, never rows, so
their memory does not grow with the log. Percentiles therefore come from counts on a fixed
grid (``gicls.audit.quantiles``): confidences rounded to 4 decimals (each percentile within
0.00005 of the exact one), latencies exact to the millisecond below 100 s and to 4 significant
digits above.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from gicls.audit.quantiles import (
    CONFIDENCE_GRID,
    CONFIDENCE_STEP,
    LATENCY_EXACT_BELOW,
    LATENCY_GRID,
    GridQuantiles,
)
from gicls.audit.reader import AuditSource, display
from gicls.audit.schema import FLAG_SEPARATOR, STATUSES
from gicls.audit.tally import Counts, Spans

PERCENTILES = (5, 25, 50, 75, 95)
SCORED_STATUSES = ("classified", "review")
NO_VALUE = "(none)"
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The columns ``summarise`` and ``by_study`` read, and those ``tail`` shows: what the reader keeps.
SUMMARY_COLUMNS = (
    "processed_at",
    "status",
    "predicted_class",
    "confidence",
    "reason",
    "flags",
    "model_bundle",
    "latency_ms",
)
STUDY_COLUMNS = ("processed_at", "status", "study")
TAIL_COLUMNS = (
    "processed_at",
    "status",
    "file_name",
    "predicted_class",
    "confidence",
    "destination",
)


@dataclass(frozen=True)
class Summary:
    """Every figure of ``gicls-audit summary``; tables are indexed by their first column.

    by_status: index status (all STATUSES), columns rows, share (0..1).
    by_class: index predicted class (configured classes first, NO_VALUE for none), columns
        STATUSES + total.
    by_day: index UTC date "YYYY-MM-DD", columns STATUSES + total.
    confidence: index "all" then each predicted class, columns rows + p5 .. p95 (of the
        confidences rounded to CONFIDENCE_STEP).
    reasons: columns status, reason, rows (review and quarantined rows).
    flags: index class (configured classes), column rows: rows flagged for it (``flags``).
    bundles: columns model_bundle, first_seen, last_seen (UTC timestamps), rows.
    """

    log: str
    rows: int
    first_at: pd.Timestamp
    last_at: pd.Timestamp
    by_status: pd.DataFrame
    by_class: pd.DataFrame
    by_day: pd.DataFrame
    confidence: pd.DataFrame
    reasons: pd.DataFrame
    flags: pd.DataFrame
    review_rate: float
    quarantine_rate: float
    rows_per_hour: float | None
    median_latency_ms: float | None
    bundles: pd.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values: times as ISO 8601 strings, missing numbers as None."""
        return _plain(
            {
                "log": self.log,
                "rows": self.rows,
                "first_at": self.first_at,
                "last_at": self.last_at,
                "status": self.by_status.to_dict(orient="index"),
                "classes": self.by_class.to_dict(orient="index"),
                "days": self.by_day.to_dict(orient="index"),
                "confidence_percentiles": self.confidence.to_dict(orient="index"),
                "confidence_percentiles_rounded_to": CONFIDENCE_STEP,
                "review_rate": self.review_rate,
                "quarantine_rate": self.quarantine_rate,
                "reasons": self.reasons.to_dict(orient="records"),
                "flags": self.flags["rows"].to_dict(),
                "throughput": {
                    "rows_per_hour": self.rows_per_hour,
                    "median_latency_ms": self.median_latency_ms,
                },
                "bundles": self.bundles.to_dict(orient="records"),
            }
        )

    def to_text(self) -> str:
        """Readable tables for a terminal."""
        status = self.by_status.assign(share=self.by_status["share"].map(_percent))
        bundles = self.bundles.assign(
            first_seen=self.bundles["first_seen"].dt.strftime(_TIME_FORMAT),
            last_seen=self.bundles["last_seen"].dt.strftime(_TIME_FORMAT),
        )
        rate = (
            "n/a (rows span less than a minute)"
            if self.rows_per_hour is None
            else f"{self.rows_per_hour:.1f} rows/hour"
        )
        latency = _latency(self.median_latency_ms)
        sections = [
            f"Audit log {self.log}: {self.rows} rows from "
            f"{self.first_at:{_TIME_FORMAT}} to {self.last_at:{_TIME_FORMAT}} UTC",
            _section("Status", status),
            f"Review rate {_percent(self.review_rate)}, "
            f"quarantine rate {_percent(self.quarantine_rate)}",
            _section("Reasons (review and quarantined rows)", self.reasons),
            _section("Flags (rows at or above a class's bundle threshold)", self.flags),
            _section("Predicted class x status", self.by_class),
            _section("Per day (UTC)", self.by_day),
            _section(
                "Confidence percentiles (classified and review rows; of the confidences rounded "
                f"to {np.format_float_positional(CONFIDENCE_STEP)}, so each within "
                f"{np.format_float_positional(CONFIDENCE_STEP / 2)} of exact)",
                self.confidence,
            ),
            f"Throughput: {rate} from first to last row; median latency {latency}",
            _section("Model bundles", bundles),
        ]
        return "\n\n".join(sections)


def summarise(log: AuditSource) -> Summary:
    """Count and describe the rows of ``log``, a chunk at a time."""
    tallies = _Tallies()
    for chunk in log.chunks(SUMMARY_COLUMNS):
        tallies.add(chunk.table)
    return tallies.summary(log)


@dataclass
class _Tallies:
    """What ``summarise`` keeps of the rows read so far: counts and grids, no rows."""

    rows: int = 0
    first_at: pd.Timestamp | None = None
    last_at: pd.Timestamp | None = None
    classes: Counts = field(default_factory=Counts)  # (predicted_class, status)
    days: Counts = field(default_factory=Counts)  # (day, status)
    reasons: Counts = field(default_factory=Counts)  # (status, reason)
    flags: Counts = field(default_factory=Counts)  # class
    bundles: Spans = field(default_factory=Spans)
    latency: GridQuantiles = field(default_factory=lambda: GridQuantiles(LATENCY_GRID))
    scored: GridQuantiles = field(default_factory=lambda: GridQuantiles(CONFIDENCE_GRID))
    scored_by_class: defaultdict[str, GridQuantiles] = field(
        default_factory=lambda: defaultdict(lambda: GridQuantiles(CONFIDENCE_GRID))
    )

    def add(self, table: pd.DataFrame) -> None:
        """Fold in one chunk of the typed table (SUMMARY_COLUMNS)."""
        status = table["status"]
        times = table["processed_at"]
        self.rows += len(table)
        if len(table):
            first, last = times.min(), times.max()
            self.first_at = first if self.first_at is None else min(self.first_at, first)
            self.last_at = last if self.last_at is None else max(self.last_at, last)
        self.classes.add(table["predicted_class"].replace("", NO_VALUE), status)
        self.days.add(times.dt.strftime("%Y-%m-%d").rename("day"), status)
        flagged = table[status.isin(("review", "quarantined"))]
        self.reasons.add(flagged["status"], flagged["reason"].replace("", NO_VALUE))
        # One row can be flagged for several classes ("Bleeding;Ulcer"): count each.
        named = table["flags"].str.split(FLAG_SEPARATOR).explode()
        self.flags.add(named[named != ""].rename("class"))
        seen = table[table["model_bundle"] != ""]
        self.bundles.add(seen["processed_at"], seen["model_bundle"])
        self.latency.add(table["latency_ms"].dropna().to_numpy())
        scored = table[status.isin(SCORED_STATUSES) & table["confidence"].notna()]
        self.scored.add(scored["confidence"].to_numpy())
        for name, values in scored["confidence"].groupby(scored["predicted_class"]):
            self.scored_by_class[str(name)].add(values.to_numpy())

    def summary(self, log: AuditSource) -> Summary:
        rows = self.rows
        assert self.first_at is not None and self.last_at is not None, "a log has rows"
        by_class = self.classes.series()
        predicted = set(by_class.index.get_level_values("predicted_class"))
        extra = sorted(predicted - set(log.classes) - {NO_VALUE})
        class_order = [*log.classes, *extra, *([NO_VALUE] if NO_VALUE in predicted else [])]
        by_status = (
            by_class.groupby(level="status")
            .sum()
            .reindex(STATUSES, fill_value=0)
            .rename("rows")
            .to_frame()
        )
        by_status["share"] = by_status["rows"] / rows
        by_status.index.name = "status"
        span_hours = (self.last_at - self.first_at).total_seconds() / 3600
        return Summary(
            log=" + ".join(str(segment.path) for segment in log.segments),
            rows=rows,
            first_at=self.first_at,
            last_at=self.last_at,
            by_status=by_status,
            by_class=_counts(by_class, class_order),
            by_day=_counts(self.days.series()),
            confidence=self._confidence(class_order),
            reasons=self._reasons(),
            flags=self._flags(log.classes),
            review_rate=float(by_status.at["review", "rows"] / rows),
            quarantine_rate=float(by_status.at["quarantined", "rows"] / rows),
            # Below a minute the rate says more about batching than about throughput.
            rows_per_hour=rows / span_hours if span_hours * 60 >= 1 else None,
            median_latency_ms=self.latency.quantile(0.5) if self.latency.count else None,
            bundles=self._bundles(),
        )

    def _confidence(self, class_order: list[str]) -> pd.DataFrame:
        found = self.scored_by_class
        named = [(name, found[name]) for name in class_order if name in found]
        groups = [(key, grid) for key, grid in [("all", self.scored), *named] if grid.count]
        columns = [f"p{p}" for p in PERCENTILES]
        rows = [
            [key, grid.count, *(grid.quantile(p / 100) for p in PERCENTILES)]
            for key, grid in groups
        ]
        return pd.DataFrame(rows, columns=["class", "rows", *columns]).set_index("class")

    def _reasons(self) -> pd.DataFrame:
        return (
            self.reasons.series()
            .rename("rows")
            .reset_index()
            .sort_values(["status", "rows"], ascending=[True, False])
        )

    def _flags(self, classes: tuple[str, ...]) -> pd.DataFrame:
        frame = self.flags.series().reindex(list(classes), fill_value=0).rename("rows").to_frame()
        frame.index.name = "class"
        return frame

    def _bundles(self) -> pd.DataFrame:
        spans = self.bundles.frame("model_bundle")
        bundles = spans.rename(columns={"first": "first_seen", "last": "last_seen"})
        return bundles.sort_values("first_seen").reset_index()


def by_study(log: AuditSource) -> pd.DataFrame:
    """Rows per study (NO_VALUE for loose files): index study, columns STATUSES, total,
    first_at and last_at (UTC timestamps), studies in name order, loose files last."""
    counts, spans = Counts(), Spans()
    for chunk in log.chunks(STUDY_COLUMNS):
        table = chunk.table
        study = table["study"].replace("", NO_VALUE).rename("study")
        counts.add(study, table["status"])
        spans.add(table["processed_at"], study)
    times = spans.frame("study")
    frame = _counts(counts.series()).assign(first_at=times["first"], last_at=times["last"])
    studies = set(frame.index)
    order = sorted(studies - {NO_VALUE}) + ([NO_VALUE] if NO_VALUE in studies else [])
    return frame.reindex(order)


def by_study_text(frame: pd.DataFrame) -> str:
    shown = frame.assign(
        first_at=frame["first_at"].dt.strftime(_TIME_FORMAT),
        last_at=frame["last_at"].dt.strftime(_TIME_FORMAT),
    )
    return _section("Per study (UTC)", shown)


def by_study_dict(frame: pd.DataFrame) -> dict[str, Any]:
    return _plain(frame.to_dict(orient="index"))


def tail(audit: AuditSource, count: int) -> str:
    """The last ``count`` rows as a readable table, oldest first. The log is read a chunk at
    a time and only the last ``count`` rows are kept, so memory does not grow with the log."""
    chunks = audit.chunks(TAIL_COLUMNS)
    # There is a first chunk: open_audit_log refuses a log without rows.
    last = next(chunks).table.tail(count)
    for chunk in chunks:
        last = pd.concat([last, chunk.table]).tail(count)
    shown = pd.DataFrame(
        {
            "time (UTC)": last["processed_at"].dt.strftime(_TIME_FORMAT),
            "status": last["status"],
            "file": last["file_name"].map(_safe),
            "class": last["predicted_class"].map(_safe),
            "confidence": last["confidence"].map(lambda v: "" if math.isnan(v) else f"{v:.3f}"),
            "destination": last["destination"].map(_safe),
        }
    )
    return _aligned(shown)


def _safe(cell: str) -> str:
    # Cells written by gicls are already printable; a hand-edited log may hold a raw newline.
    return display(cell.encode("utf-8"))


def _counts(sizes: pd.Series, order: list[str] | None = None) -> pd.DataFrame:
    """Rows per (label, status) as a table: index label, columns STATUSES then total."""
    counts = sizes.unstack("status", fill_value=0).reindex(columns=list(STATUSES), fill_value=0)
    if order is not None:
        counts = counts.reindex(order, fill_value=0)
    counts["total"] = counts.sum(axis=1)
    counts.columns.name = None
    return counts.astype("int64")


def _latency(median_ms: float | None) -> str:
    if median_ms is None:
        return "n/a"
    rounded = " (to 4 significant digits)" if median_ms >= LATENCY_EXACT_BELOW else ""
    return f"{median_ms:.0f} ms{rounded}"


def _section(title: str, frame: pd.DataFrame) -> str:
    if frame.index.name is not None:
        frame = frame.reset_index()
    return f"{title}\n" + ("(none)" if frame.empty else _aligned(frame))


def _aligned(frame: pd.DataFrame) -> str:
    """Plain-text table: numbers right-aligned, text (names above all) left-aligned."""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    body = [
        [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        for row in frame.itertuples(index=False, name=None)
    ]
    rows = [[str(c) for c in frame.columns], *body]
    widths = [max(len(row[i]) for row in rows) for i in range(len(numeric))]
    return "\n".join(
        "  ".join(
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(row, widths, numeric, strict=True)
        ).rstrip()
        for row in rows
    )


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"


def _plain(value: Any) -> Any:
    """``value`` with pandas and numpy scalars turned into JSON types."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
