"""Does a study look like the data the bundle was evaluated on?

Models trained on one capsule's images can score another device's frames in a systematic way
(on the Capsule Vision test frames, today's models put 71 % of all frames into Worms). The
bundle stores what its held-out evaluation saw (``DeviceReference``, written by training); a
study whose frames fall far outside it gets a warning at the top of its report, and callers
put the same message in the audit row and the log.

The bound is one-sided on purpose: a healthy patient's study is mostly Normal, so a condition
taking a far *smaller* share than in the (condition-rich) held-out split is expected; a
condition taking a far larger share, or scoring high on most of the study, is what a foreign
device looks like.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import pandas as pd

from gicls.models.bundle import DeviceReference


class DeviceStatus(StrEnum):
    OK = "ok"
    WARNING = "warning"
    NO_REFERENCE = "no_reference"
    TOO_FEW_FRAMES = "too_few_frames"


NO_REFERENCE_MESSAGE = "no device reference in this bundle (trained before gicls stored one)"


@dataclass(frozen=True)
class DeviceCheck:
    """The outcome: ``message`` is one line for a log or audit row, ``findings`` one line per
    class outside the bound (empty unless ``status`` is WARNING)."""

    status: DeviceStatus
    message: str
    findings: tuple[str, ...] = ()

    @property
    def warning(self) -> bool:
        return self.status is DeviceStatus.WARNING


def device_check(
    frames: pd.DataFrame, classes: Sequence[str], reference: DeviceReference | None
) -> DeviceCheck:
    """Check a study's scored frames against the bundle's ``reference``.

    ``frames``: one row per scored frame with a ``predicted_class`` column and one score column
    per class (``study_frames``, a Parquet frame table and the audit log's scored rows all
    have them).
    """
    if reference is None:
        return DeviceCheck(DeviceStatus.NO_REFERENCE, NO_REFERENCE_MESSAGE)
    count = len(frames)
    if count < reference.min_frames:
        return DeviceCheck(
            DeviceStatus.TOO_FEW_FRAMES,
            f"not judged: {count} scored frame(s), the check needs at least {reference.min_frames}",
        )
    shares = frames["predicted_class"].value_counts(normalize=True)
    findings = []
    for name in classes:
        share = float(shares.get(name, 0.0))
        held_out = reference.predicted_share.get(name, 0.0)
        bound = held_out + reference.share_tolerance
        if share > bound:
            findings.append(
                f"{name}: {share:.0%} of the study's frames are predicted {name}, "
                f"{held_out:.0%} of the held-out images were (bound {bound:.0%})"
            )
    for name in classes:
        upper = reference.score_upper.get(name)
        median = float(pd.to_numeric(frames[name], errors="coerce").median())
        if upper is not None and median > upper:
            findings.append(
                f"{name}: the study's median {name} score is {median:.2f}, above the "
                f"{reference.score_quantile:.0%} quantile of the held-out images' ({upper:.2f})"
            )
    measured = (
        f"{count} frames against {reference.images} held-out images ({reference.measured_on})"
    )
    if findings:
        return DeviceCheck(
            DeviceStatus.WARNING,
            f"outside what the bundle's evaluation saw: {measured}",
            tuple(findings),
        )
    return DeviceCheck(DeviceStatus.OK, f"within what the bundle's evaluation saw: {measured}")
