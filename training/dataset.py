"""tf.data pipelines over the shared image cache.

Each pipeline shuffles row indices (cheap), batches them, gathers the already-decoded pixels
in parallel and prefetches, so the model never waits on decoding and no image is decoded
twice in a run. Random quarter turns are applied here, on uint8 in the input threads, rather
than in the model: they are pure pixel permutations, so they cost a quarter of the memory
traffic of float32 and overlap with the training step instead of adding to it.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from gicls.training.image_cache import ImageCache


def random_quarter_turns(images: tf.Tensor, seed: int) -> tf.Tensor:
    """Turn each square image of a batch by its own random multiple of 90 degrees.

    A quarter turn is a transpose plus a row flip, a half turn flips both axes: two selects
    over the batch instead of one per possible turn.
    """
    turns = tf.random.uniform((tf.shape(images)[0], 1, 1, 1), 0, 4, dtype=tf.int32, seed=seed)
    quarter = tf.reverse(tf.transpose(images, (0, 2, 1, 3)), axis=[1])
    images = tf.where(turns % 2 == 1, quarter, images)
    return tf.where(turns >= 2, tf.reverse(images, axis=[1, 2]), images)


def pixel_dataset(
    cache: ImageCache,
    rows: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None,
    quarter_turns: bool = False,
) -> tf.data.Dataset:
    """Batches of (uint8 images (b, size, size, 3), float32 labels (b, 1)).

    ``shuffle_seed=None`` keeps the order (validation); a seed reshuffles every epoch and,
    with ``quarter_turns``, also seeds the random quarter turns.
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
        if quarter_turns and shuffle_seed is not None:
            images = random_quarter_turns(images, shuffle_seed)
        return images, batch_labels

    return dataset.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
