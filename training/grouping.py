"""Which images belong together: a patient, a study, a video, a source data set.

A random split by image lets frames of one patient (or one video, one hospital) land on both
sides, and the held-out figures then measure how well a model recognises that patient again,
not how it does on a new one. ``balance.group_by`` names the unit that must stay on one side;
the same labels give ``gicls-train evaluate`` its per-source breakdown.

A label is read from a file's path relative to its class folder:

- ``folder``: the first sub-folder (``<Class>/<label>/.../frame.jpg``);
- ``pattern``: the one capture group of a regular expression searched in that relative path
  (``Kvasir-Capsule`` frame names begin with their video id).

A file directly in its class folder, or whose path the pattern does not match, has no label:
it is a group of its own. Labels do not include the class: patient ``P7`` filed under two
classes is one patient, kept on one side.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path

from gicls.training.scan import ImageRecord

# The source of a file that has no label (loose in its class folder, or not matched).
NO_SOURCE = "(none)"


def relative_to_class_folder(
    record: ImageRecord, roots: Sequence[Path], classes: Sequence[str]
) -> Path:
    """The record's path below ``<root>/<Class>/`` for the first root it lies under."""
    for root in roots:
        folder = root / classes[record.class_index]
        if record.path.is_relative_to(folder):
            return record.path.relative_to(folder)
    return Path(record.path.name)


def path_label(relative: Path, mode: str, pattern: re.Pattern[str] | None) -> str | None:
    """The group label of a path relative to its class folder (None: a group of its own)."""
    if mode == "folder":
        return relative.parts[0] if len(relative.parts) > 1 else None
    if mode == "pattern" and pattern is not None:
        match = pattern.search(relative.as_posix())
        return match.group(1) if match else None
    return None


def record_labels(
    records: Sequence[ImageRecord],
    roots: Sequence[Path],
    classes: Sequence[str],
    mode: str,
    pattern: re.Pattern[str] | None,
) -> list[str | None]:
    return [path_label(relative_to_class_folder(r, roots, classes), mode, pattern) for r in records]


def merge_units(
    records: Sequence[ImageRecord],
    labels: Sequence[str | None],
    near_group_of: Mapping[str, str],
) -> dict[str, str]:
    """Split unit of every content hash: union-find over same content, near-duplicates and
    same label, so that a near-duplicate pair across two patients joins the two.

    Returns ``{sha256: unit key}`` for the hashes in a unit of more than one hash; the key is
    the smallest member name (content-based, so it does not renumber when images are added).
    """
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def union(a: str, b: str) -> None:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)

    for record, label in zip(records, labels, strict=True):
        find(record.sha256)
        if label is not None:
            union(record.sha256, f"group-{label}")
    for sha, near in near_group_of.items():
        union(sha, near)
    members: dict[str, set[str]] = defaultdict(set)
    for record in records:
        members[find(record.sha256)].add(record.sha256)
    return {sha: f"unit-{min(shas)}" for shas in members.values() if len(shas) > 1 for sha in shas}


def record_sources(
    records: Sequence[ImageRecord],
    roots: Sequence[Path],
    classes: Sequence[str],
    pattern: re.Pattern[str] | None,
) -> list[str]:
    """The source of each record: its first sub-folder, or the capture group of ``pattern``
    (``NO_SOURCE`` for a file without one)."""
    mode = "folder" if pattern is None else "pattern"
    labels = record_labels(records, roots, classes, mode, pattern)
    return [NO_SOURCE if label is None else label for label in labels]
