"""The report's time line: each condition's score over the study, as an embedded PNG.

One plot per series: the study's image files in natural order of their names (frame order),
and each video over its frame time. One row per condition, sharing the x axis, so a bleed
shows as a peak in one row at the place it happened. Drawn with matplotlib's Agg canvas
directly (no pyplot: no global figure state, safe in the daemon's threads).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

# A plot never needs more points than it has pixels: longer series are reduced to this many
# bins, each keeping its maximum, so that a short bleed still shows as a peak.
MAX_POINTS = 1500
_WIDTH_IN = 10.0
_ROW_IN = 0.55
_DPI = 80


@dataclass(frozen=True)
class Timeline:
    title: str
    png_base64: str


def timelines(frames: pd.DataFrame, classes: Sequence[str]) -> tuple[Timeline, ...]:
    """The plots of ``frames`` (``gicls.audit.study_model.study_frames``): the image files
    first (when there are any), then each video."""
    plots = []
    for series, part in frames.groupby("series", sort=True):
        count = len(part)
        if series == "":
            title = f"Image files in name order ({count} frame{'s' if count != 1 else ''})"
            x, label = part["position"].to_numpy(dtype=float) + 1, "frame (name order)"
        else:
            title = f"Video {series} ({count} frame{'s' if count != 1 else ''} scored)"
            x, label = part["time_s"].to_numpy(dtype=float), "time in the video"
        scores = part[list(classes)].to_numpy(dtype=float)
        plots.append(Timeline(title, _plot(x, scores, classes, label, timed=series != "")))
    return tuple(plots)


def peak_bins(x: np.ndarray, scores: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N,) and ``scores`` (N, C) reduced to at most ``points`` bins of consecutive
    frames: each bin's first x and its maximum score per class."""
    if len(x) <= points:
        return x, scores
    edges = np.linspace(0, len(x), points + 1).astype(int)
    starts = edges[:-1]
    return x[starts], np.maximum.reduceat(scores, starts, axis=0)


def clock(seconds: float, _position: object = None) -> str:
    """``seconds`` as h:mm:ss (also a matplotlib tick formatter)."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _plot(
    x: np.ndarray, scores: np.ndarray, classes: Sequence[str], label: str, timed: bool
) -> str:
    x, scores = peak_bins(x, scores, MAX_POINTS)
    figure = Figure(figsize=(_WIDTH_IN, 0.6 + _ROW_IN * len(classes)), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(classes), 1, sharex=True, squeeze=False)[:, 0]
    for row, (axis, name) in enumerate(zip(axes, classes, strict=True)):
        axis.fill_between(x, scores[:, row], step="post", color=f"C{row % 10}", alpha=0.8)
        axis.set_ylim(0, 1)
        axis.set_yticks([])
        axis.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        axis.spines[["top", "right"]].set_visible(False)
    if len(x):
        span = float(x[-1] - x[0]) if len(x) > 1 else 1.0
        axes[-1].set_xlim(float(x[0]), float(x[0]) + (span if math.isfinite(span) else 1.0))
    axes[-1].xaxis.set_major_locator(MaxNLocator(nbins=10, integer=not timed))
    if timed:
        axes[-1].xaxis.set_major_formatter(FuncFormatter(clock))
    axes[-1].set_xlabel(label, fontsize=8)
    axes[-1].tick_params(labelsize=8)
    figure.subplots_adjust(
        left=0.15, right=0.98, top=0.98, bottom=0.5 / figure.get_figheight(), hspace=0.15
    )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
