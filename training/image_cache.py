"""Decode every training and validation image exactly once per run.

All conditions train on subsets of the same images, so the decoded, resized pixels are kept in
one uint8 array (one row per unique content hash) and shared by every model's tf.data
pipeline. Files that fail to decode are reported and dropped before the split.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gicls.logs import get_logger
from gicls.models.preprocessing import decode_many
from gicls.training.scan import ImageRecord

log = get_logger(__name__)


@dataclass(frozen=True)
class ImageCache:
    """Pixels (n_unique, size, size, 3) uint8 and the row of each content hash."""

    pixels: np.ndarray
    row_of_hash: dict[str, int]

    def rows(self, records: Sequence[ImageRecord]) -> np.ndarray:
        return np.fromiter((self.row_of_hash[r.sha256] for r in records), dtype=np.int64)

    @property
    def image_size(self) -> int:
        return int(self.pixels.shape[1])


def default_workers() -> int:
    return max(1, (os.cpu_count() or 1) * 2)


def build_image_cache(
    records: Sequence[ImageRecord], image_size: int, workers: int | None = None
) -> tuple[ImageCache, list[ImageRecord], list[tuple[ImageRecord, str]]]:
    """Decode the unique contents of ``records``.

    Returns the cache, the records that decoded, and the failures with their reason.
    """
    first_of_hash: dict[str, ImageRecord] = {}
    for record in records:
        first_of_hash.setdefault(record.sha256, record)
    unique = list(first_of_hash.values())
    pixels, failures = decode_many(
        [r.path for r in unique], image_size, workers or default_workers()
    )
    bad_hashes = {unique[i].sha256: str(error) for i, error in failures.items()}
    for sha, reason in bad_hashes.items():
        log.warning("image_unreadable", path=str(first_of_hash[sha].path), reason=reason)
    keep_rows = [i for i in range(len(unique)) if i not in failures]
    cache = ImageCache(
        # Copy only when something failed: the array can be gigabytes.
        pixels=pixels[keep_rows] if failures else pixels,
        row_of_hash={unique[i].sha256: row for row, i in enumerate(keep_rows)},
    )
    kept = [r for r in records if r.sha256 not in bad_hashes]
    failed = [(r, bad_hashes[r.sha256]) for r in records if r.sha256 in bad_hashes]
    log.info("images_decoded", unique=len(unique), failed=len(bad_hashes), size=image_size)
    return cache, kept, failed
