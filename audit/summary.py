"""What the audit log says, as tables: ``gicls-audit summary`` and ``gicls-audit tail``.

Times are UTC (as logged). Confidence percentiles use classified and review rows only: a
duplicate row repeats an image already counted, a quarantined row has no score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from gicls.audit.reader import AuditTable, display
from gicls.audit.schema import FLAG_SEPARATOR, STATUSES

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
    "study",
)
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
    confidence: index "all" then each predicted class, columns rows + p5 .. p95.
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
        latency = "n/a" if self.median_latency_ms is None else f"{self.median_latency_ms:.0f} ms"
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
            _section("Confidence percentiles (classified and review rows)", self.confidence),
            f"Throughput: {rate} from first to last row; median latency {latency}",
            _section("Model bundles", bundles),
        ]
        return "\n\n".join(sections)


def summarise(log: AuditTable) -> Summary:
    """Count and describe the rows of ``log``."""
    table = log.table
    rows = len(table)
    status = table["status"]
    predicted = table["predicted_class"].replace("", NO_VALUE)
    extra = sorted(set(predicted) - set(log.classes) - {NO_VALUE})
    class_order = [*log.classes, *extra, *([NO_VALUE] if (predicted == NO_VALUE).any() else [])]
    by_status = status.value_counts().reindex(STATUSES, fill_value=0).rename("rows").to_frame()
    by_status["share"] = by_status["rows"] / rows
    by_status.index.name = "status"
    first_at, last_at = table["processed_at"].min(), table["processed_at"].max()
    span_hours = (last_at - first_at).total_seconds() / 3600
    latency = table["latency_ms"].dropna()
    return Summary(
        log=" + ".join(str(segment.path) for segment in log.segments),
        rows=rows,
        first_at=first_at,
        last_at=last_at,
        by_status=by_status,
        by_class=_counts(predicted.rename("predicted_class"), status, class_order),
        by_day=_counts(table["processed_at"].dt.strftime("%Y-%m-%d").rename("day"), status),
        confidence=_confidence(table, class_order),
        reasons=_reasons(table),
        flags=_flags(table, log.classes),
        review_rate=float((status == "review").mean()),
        quarantine_rate=float((status == "quarantined").mean()),
        # Below a minute the rate says more about batching than about throughput.
        rows_per_hour=rows / span_hours if span_hours * 60 >= 1 else None,
        median_latency_ms=float(latency.median()) if len(latency) else None,
        bundles=_bundles(table),
    )


def by_study(log: AuditTable) -> pd.DataFrame:
    """Rows per study (NO_VALUE for loose files): index study, columns STATUSES, total,
    first_at and last_at (UTC timestamps), studies in name order, loose files last."""
    table = log.table
    study = table["study"].replace("", NO_VALUE).rename("study")
    counts = _counts(study, table["status"])
    times = table["processed_at"].groupby(study)
    frame = counts.assign(first_at=times.min(), last_at=times.max())
    order = sorted(set(study) - {NO_VALUE}) + ([NO_VALUE] if (study == NO_VALUE).any() else [])
    return frame.reindex(order)


def by_study_text(frame: pd.DataFrame) -> str:
    shown = frame.assign(
        first_at=frame["first_at"].dt.strftime(_TIME_FORMAT),
        last_at=frame["last_at"].dt.strftime(_TIME_FORMAT),
    )
    return _section("Per study (UTC)", shown)


def by_study_dict(frame: pd.DataFrame) -> dict[str, Any]:
    return _plain(frame.to_dict(orient="index"))


def tail(log: AuditTable, count: int) -> str:
    """The last ``count`` rows as a readable table, oldest first."""
    last = log.table.tail(count)
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


def _counts(labels: pd.Series, status: pd.Series, order: list[str] | None = None) -> pd.DataFrame:
    counts = pd.crosstab(labels, status).reindex(columns=list(STATUSES), fill_value=0)
    if order is not None:
        counts = counts.reindex(order, fill_value=0)
    counts["total"] = counts.sum(axis=1)
    counts.columns.name = None
    return counts.astype("int64")


def _confidence(table: pd.DataFrame, class_order: list[str]) -> pd.DataFrame:
    scored = table[table["status"].isin(SCORED_STATUSES) & table["confidence"].notna()]
    groups = [("all", scored["confidence"])] if len(scored) else []
    for name in class_order:
        values = scored.loc[scored["predicted_class"] == name, "confidence"]
        if len(values):
            groups.append((name, values))
    columns = [f"p{p}" for p in PERCENTILES]
    rows = [
        [key, len(values), *(float(values.quantile(p / 100)) for p in PERCENTILES)]
        for key, values in groups
    ]
    return pd.DataFrame(rows, columns=["class", "rows", *columns]).set_index("class")


def _reasons(table: pd.DataFrame) -> pd.DataFrame:
    flagged = table[table["status"].isin(("review", "quarantined"))]
    reasons = flagged["reason"].replace("", NO_VALUE)
    counts = flagged.groupby([flagged["status"], reasons]).size()
    return (
        counts.rename("rows").reset_index().sort_values(["status", "rows"], ascending=[True, False])
    )


def _flags(table: pd.DataFrame, classes: tuple[str, ...]) -> pd.DataFrame:
    # One row can be flagged for several classes ("Bleeding;Ulcer"): count each.
    named = table["flags"].str.split(FLAG_SEPARATOR).explode()
    counts = named[named != ""].value_counts().reindex(list(classes), fill_value=0)
    frame = counts.rename("rows").astype("int64").to_frame()
    frame.index.name = "class"
    return frame


def _bundles(table: pd.DataFrame) -> pd.DataFrame:
    seen = table[table["model_bundle"] != ""]
    grouped = seen.groupby("model_bundle")["processed_at"]
    bundles = pd.DataFrame(
        {"first_seen": grouped.min(), "last_seen": grouped.max(), "rows": grouped.size()}
    )
    return bundles.sort_values("first_seen").reset_index()


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
