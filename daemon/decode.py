"""Parallel decode and resize of one batch through tf.data.

Each file is decoded by ``decode_image``, the same function training uses, inside
``tf.numpy_function`` mapped with ``num_parallel_calls``: Pillow releases the GIL while it
decodes, so the files of a batch decode on several cores. A bad file never fails the batch: its
error is collected by index and its row is left black (the caller does not score it).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from gicls.errors import UnreadableImageError
from gicls.models.preprocessing import decode_image


def decode_batch(
    blobs: Sequence[bytes], image_size: int
) -> tuple[np.ndarray, dict[int, UnreadableImageError]]:
    """Decode encoded image files.

    Returns uint8 (len(blobs), image_size, image_size, 3) and the failures by index.
    """
    failures: dict[int, UnreadableImageError] = {}
    if not blobs:
        return np.zeros((0, image_size, image_size, 3), np.uint8), failures
    blank = np.zeros((image_size, image_size, 3), np.uint8)

    def decode_one(index: np.int64) -> np.ndarray:
        position = int(index)
        try:
            return decode_image(io.BytesIO(blobs[position]), image_size)
        except UnreadableImageError as exc:
            failures[position] = exc
        except Exception as exc:
            # A decoder bug on one hostile file must not take the daemon down with it.
            failures[position] = UnreadableImageError("corrupt", f"{type(exc).__name__}: {exc}")
        return blank

    def decode(index: tf.Tensor) -> tf.Tensor:
        image = tf.numpy_function(decode_one, [index], tf.uint8)
        return tf.ensure_shape(image, (image_size, image_size, 3))

    dataset = (
        tf.data.Dataset.range(len(blobs))
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(len(blobs))
    )
    images = next(iter(dataset)).numpy()
    return images, failures
