"""The held-out split as the bundle records it, so that every figure can be replayed.

A bundle keeps ``split.csv`` (one row per held-out image: sha256 and class, in the order the
ensemble was evaluated) and, in ``manifest.data["split"]``, the settings that made the split
and a digest of its rows. ``gicls-train evaluate`` replays exactly those images (found by
sha256, wherever they are now), and ``gicls-train fit CLASS`` keeps the other models only
while today's split is the one they were validated on.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gicls.errors import DatasetError, ModelBundleError
from gicls.training.scan import ImageRecord
from gicls.training.split import Split

SPLIT_FILE = "split.csv"
# How images are grouped before the split (a group never straddles it).
GROUPING = "sha256 content, then dHash near-duplicates within balance.near_duplicate_bits"

HeldOutRow = tuple[str, str]  # (sha256, class name)


def split_settings(
    seed: int,
    fraction: float | None,
    near_duplicate_bits: int,
    validation_dir: Path | None,
    group_by: str = "none",
    group_pattern: str = "",
) -> dict[str, Any]:
    """Everything that decides the split, keyed by the configuration key that sets it.

    The ``balance.group_by`` keys appear only when grouping is on, so that the bundles made
    before they existed (ungrouped) still match today's ungrouped split.
    """
    settings: dict[str, Any] = {
        "balance.seed": seed,
        "balance.validation_fraction": fraction,
        "balance.near_duplicate_bits": near_duplicate_bits,
        "paths.validation_dir": None if validation_dir is None else str(validation_dir),
        "grouping": GROUPING,
    }
    if group_by != "none":
        settings["balance.group_by"] = group_by
        settings["balance.group_pattern"] = group_pattern if group_by == "pattern" else None
    return settings


def held_out_rows(split: Split, classes: Sequence[str]) -> list[HeldOutRow]:
    return [(r.sha256, classes[r.class_index]) for r in split.validation]


def split_digest(settings: Mapping[str, Any], rows: Sequence[HeldOutRow]) -> str:
    """Changes when a setting or the set of held-out images changes (not with their order)."""
    text = json.dumps({"settings": dict(settings), "rows": sorted(rows)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def split_record(
    settings: Mapping[str, Any],
    rows: Sequence[HeldOutRow],
    fractions: Mapping[str, Mapping[str, float]] | None = None,
    groups: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """What the manifest keeps under ``data["split"]``."""
    record: dict[str, Any] = {
        "settings": dict(settings),
        "digest": split_digest(settings, rows),
        "held_out_images": len(rows),
        "file": SPLIT_FILE,
    }
    if fractions:
        record["fractions"] = {name: dict(f) for name, f in fractions.items()}
    if groups:
        record["groups"] = {name: dict(g) for name, g in groups.items()}
    return record


def write_split_csv(rows: Sequence[HeldOutRow], path: Path) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sha256", "class"])
        writer.writerows(rows)
    return path


def read_split_csv(path: Path) -> list[HeldOutRow]:
    try:
        with path.open(newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != ["sha256", "class"]:
                raise ModelBundleError(f"{path}: expected the header 'sha256,class'")
            return [(row[0], row[1]) for row in reader]
    except FileNotFoundError:
        raise ModelBundleError(
            f"{path} is missing: this bundle does not record its held-out split "
            "(retrain it with gicls-train all, or evaluate with --data)"
        ) from None


def split_changes(
    recorded: Mapping[str, Any] | None,
    recorded_rows: Sequence[HeldOutRow],
    settings: Mapping[str, Any],
    rows: Sequence[HeldOutRow],
) -> list[str]:
    """Why today's split is not the recorded one (empty when it is the same)."""
    if not recorded:
        return ["the bundle records no split"]
    before = recorded.get("settings", {})
    changes = [
        f"{key} changed from {before.get(key)!r} to {value!r}"
        for key, value in settings.items()
        if before.get(key) != value
    ]
    if changes or recorded.get("digest") == split_digest(settings, rows):
        return changes
    differ = sum(
        (
            (Counter(recorded_rows) - Counter(rows)) + (Counter(rows) - Counter(recorded_rows))
        ).values()
    )
    return [f"{differ} held-out images differ (the training data changed)"]


def replay_held_out(
    rows: Sequence[HeldOutRow], records: Sequence[ImageRecord], classes: Sequence[str], where: str
) -> list[ImageRecord]:
    """The scanned records of the recorded held-out rows, in the recorded order.

    Each row takes its own record (copies of one image count as many times as recorded).
    """
    available: dict[HeldOutRow, list[ImageRecord]] = defaultdict(list)
    for record in records:
        available[(record.sha256, classes[record.class_index])].append(record)
    replayed: list[ImageRecord] = []
    missing = 0
    for row in rows:
        if available[row]:
            replayed.append(available[row].pop(0))
        else:
            missing += 1
    if missing:
        raise DatasetError(
            f"{missing} of the bundle's {len(rows)} held-out images are not in {where} "
            "(matched by sha256 and class): the held-out figures cannot be replayed"
        )
    return replayed
