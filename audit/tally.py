"""Counts and time spans summed over the audit log's chunks.

A summary is folded chunk by chunk (``gicls.audit.reader.AuditSource.chunks``), so what it
keeps grows with the distinct keys (statuses, classes, days, reasons, studies, bundles), never
with the rows.
"""

from __future__ import annotations

import pandas as pd


class Counts:
    """Rows per key: one label per row, or a tuple of labels (a MultiIndex)."""

    def __init__(self) -> None:
        self._sizes: pd.Series | None = None

    def add(self, *labels: pd.Series) -> None:
        """Count the rows of one chunk by ``labels`` (named Series of equal index)."""
        sizes = labels[0].groupby(list(labels)).size()
        self._sizes = sizes if self._sizes is None else self._sizes.add(sizes, fill_value=0)

    def series(self) -> pd.Series:
        """int64 rows per key, keys sorted (after at least one ``add``)."""
        assert self._sizes is not None, "Counts.series before any add"
        return self._sizes.astype("int64").sort_index()


class Spans:
    """First and last time and rows per key."""

    def __init__(self) -> None:
        self._frame: pd.DataFrame | None = None

    def add(self, times: pd.Series, keys: pd.Series) -> None:
        """Fold one chunk's ``times`` (UTC timestamps) grouped by ``keys`` (named)."""
        chunk = times.groupby(keys).agg(["min", "max", "size"])
        if self._frame is not None:
            both = pd.concat([self._frame, chunk]).groupby(level=0)
            chunk = pd.DataFrame(
                {"min": both["min"].min(), "max": both["max"].max(), "size": both["size"].sum()}
            )
        self._frame = chunk

    def frame(self, name: str) -> pd.DataFrame:
        """Index ``name`` (sorted keys), columns first, last (timestamps) and rows (int64);
        after at least one ``add``."""
        assert self._frame is not None, "Spans.frame before any add"
        frame = self._frame.rename(columns={"min": "first", "max": "last", "size": "rows"})
        frame.index.name = name
        return frame.astype({"rows": "int64"}).sort_index()
