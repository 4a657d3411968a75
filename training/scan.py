"""Scan a labelled tree: one folder per class, images found recursively below each.

The Capsule Vision 2024 release nests source folders (KID, Kvasir, ...) under every class
folder, so the walk is recursive. Every image is hashed: identical files are reported and the
split keeps all copies of one image on the same side. Files that are not images are reported
and skipped; a missing or unexpected class folder stops the scan before anything is written.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gicls.errors import DatasetError
from gicls.hashing import file_sha256
from gicls.logs import get_logger
from gicls.models.preprocessing import has_image_extension
from gicls.progress import track

log = get_logger(__name__)


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    class_index: int
    sha256: str


@dataclass
class ScanResult:
    classes: tuple[str, ...]
    records: list[ImageRecord]
    # Files under class folders that are not images by extension, or could not be read.
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def per_class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for record in self.records:
            counts[self.classes[record.class_index]] += 1
        return counts

    def duplicate_groups(self) -> list[list[ImageRecord]]:
        """Groups of two or more records with identical content."""
        by_hash: dict[str, list[ImageRecord]] = defaultdict(list)
        for record in self.records:
            by_hash[record.sha256].append(record)
        return [group for group in by_hash.values() if len(group) > 1]

    def conflicting_labels(self) -> list[list[ImageRecord]]:
        """Identical images filed under different classes (a labelling problem to report)."""
        return [
            group
            for group in self.duplicate_groups()
            if len({record.class_index for record in group}) > 1
        ]


def _class_folders(root: Path, classes: Sequence[str]) -> dict[str, Path]:
    if not root.is_dir():
        raise DatasetError(f"labelled image folder {root} does not exist")
    present = {entry.name for entry in root.iterdir() if entry.is_dir()}
    missing = [name for name in classes if name not in present]
    unexpected = sorted(name for name in present - set(classes) if not name.startswith((".", "_")))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing class folder(s): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected folder(s) not in 'classes': {', '.join(unexpected)}")
        raise DatasetError(
            f"{root}: {'; '.join(parts)} (folder names must match the configured classes exactly)"
        )
    return {name: root / name for name in classes}


def _walk_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / name for name in sorted(filenames))
    return found


def scan_labelled_tree(root: Path, classes: Sequence[str], workers: int = 4) -> ScanResult:
    """List and hash every image under ``root/<Class>/**``; order is deterministic."""
    folders = _class_folders(root, classes)
    candidates: list[tuple[Path, int]] = []
    skipped: list[tuple[Path, str]] = []
    for index, name in enumerate(classes):
        for path in _walk_files(folders[name]):
            if path.name.startswith("."):
                continue
            if has_image_extension(path):
                candidates.append((path, index))
            else:
                skipped.append((path, "not an image file extension"))

    def hash_one(item: tuple[Path, int]) -> ImageRecord | tuple[Path, str]:
        path, index = item
        try:
            return ImageRecord(path, index, file_sha256(path))
        except OSError as exc:
            return (path, f"unreadable: {exc.strerror or exc}")

    records: list[ImageRecord] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(hash_one, candidates)
        for result in track(results, total=len(candidates), description=f"scanning {root.name}"):
            if isinstance(result, ImageRecord):
                records.append(result)
            else:
                skipped.append(result)
    result = ScanResult(tuple(classes), records, skipped)
    for path, reason in skipped:
        log.warning("file_skipped", path=str(path), reason=reason)
    duplicates = result.duplicate_groups()
    if duplicates:
        log.warning(
            "duplicate_images",
            groups=len(duplicates),
            files=sum(len(g) for g in duplicates),
            example=[str(r.path) for r in duplicates[0][:3]],
        )
    for group in result.conflicting_labels():
        log.warning(
            "conflicting_labels",
            files=[f"{classes[r.class_index]}: {r.path}" for r in group],
        )
    log.info("scan_done", root=str(root), images=len(records), skipped=len(skipped))
    return result
