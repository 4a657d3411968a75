"""tf.data pipelines over the shared image cache.

Each pipeline shuffles row indices (cheap), batches them, gathers the already-decoded pixels
in parallel and prefetches, so the model never waits on decoding and no image is decoded
twice in a run.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from gicls.training.image_cache import ImageCache


def pixel_dataset(
    cache: ImageCache,
    rows: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None,
) -> tf.data.Dataset:
    """Batches of (uint8 images (b, size, size, 3), float32 labels (b, 1)).

    ``shuffle_seed=None`` keeps the order (validation); a seed reshuffles every epoch.
    """
    size = cache.image_size
    dataset = tf.data.Dataset.from_tensor_slices(
        (rows.astype(np.int64), labels.astype(np.float32).reshape(-1, 1))
    )
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    def gather(batch_rows: tf.Tensor, batch_labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.numpy_function(lambda r: cache.pixels[r], [batch_rows], tf.uint8)
        images.set_shape((None, size, size, 3))
        return images, batch_labels

    return dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
