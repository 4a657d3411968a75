"""Parallel decode and resize of one batch.

Each file is decoded by ``decode_image``, the same function training uses, on a small pool of
threads kept for the life of the process: Pillow releases the GIL while it decodes and
resizes, so the files of a batch decode on several cores. (A tf.data pipeline built per batch
did the same work but cost more to set up than decoding a 32-image batch of 224 px frames
takes, see BENCHMARKS.md.) A bad file never fails the batch: its error is collected by index
and its row is left black (the caller does not score it).
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from gicls.errors import UnreadableImageError
from gicls.models.preprocessing import decode_image

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _decoder_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(1, os.cpu_count() or 1), thread_name_prefix="gicls-decode"
            )
        return _pool


def decode_batch(
    blobs: Sequence[bytes], image_size: int
) -> tuple[np.ndarray, dict[int, UnreadableImageError]]:
    """Decode encoded image files.

    Returns uint8 (len(blobs), image_size, image_size, 3) and the failures by index.
    """
    images = np.zeros((len(blobs), image_size, image_size, 3), np.uint8)
    failures: dict[int, UnreadableImageError] = {}

    def decode_one(position: int) -> None:
        try:
            images[position] = decode_image(io.BytesIO(blobs[position]), image_size)
        except UnreadableImageError as exc:  # the only exception decode_image raises for a file
            failures[position] = exc

    if len(blobs) == 1:
        decode_one(0)  # nothing to share out: no hand-off to a worker
    else:
        for _ in _decoder_pool().map(decode_one, range(len(blobs))):
            pass
    return images, failures
