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

# Fixed parallelism instead of tf.data's autotuner. With autotuning on, TensorFlow 2.21 on
# this 2-core CPU left the process idle for ~2.3 s, at random, whenever an iterator was torn
# down: about every other epoch of a 480-image fit took ~10 s instead of ~5 s, and a bare
# one-epoch fit returned 2.3 s after its last batch in 4 of 6 runs (none in 14 without it).
# The work here is a memory copy per batch, so a fixed two-wide gather keeps the step fed.
PARALLEL_GATHERS = 2
PREFETCH_BATCHES = 2


def gather_turned(pixels: np.ndarray, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The images at ``rows``, each turned by its own random multiple of 90 degrees.

    One strided copy per image straight into the batch (np.rot90 is a view): measured 5 ms
    for 32 images of 224 px, against 18 ms for the same turns as TensorFlow ops.
    """
    batch = np.empty((len(rows), *pixels.shape[1:]), pixels.dtype)
    for target, row, turns in zip(batch, rows, rng.integers(0, 4, len(rows)), strict=True):
        target[...] = np.rot90(pixels[row], turns)
    return batch


def pixel_dataset(
    cache: ImageCache,
    rows: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    shuffle_seed: int | None,
    quarter_turns: bool = False,
    weights: np.ndarray | None = None,
) -> tf.data.Dataset:
    """Batches of (uint8 images (b, size, size, 3), float32 labels (b, 1)), with float32
    per-image loss weights (b,) as a third element when ``weights`` are given.

    ``shuffle_seed=None`` keeps the order (validation); a seed reshuffles every epoch and,
    with ``quarter_turns``, also seeds the random quarter turns.
    """
    size = cache.image_size
    columns: tuple[np.ndarray, ...] = (
        rows.astype(np.int64),
        labels.astype(np.float32).reshape(-1, 1),
    )
    if weights is not None:
        columns = (*columns, weights.astype(np.float32))
    dataset = tf.data.Dataset.from_tensor_slices(columns)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(rows), seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)

    # numpy Generators lock around each draw, so the parallel map calls can share one.
    rng = (
        np.random.default_rng(shuffle_seed) if quarter_turns and shuffle_seed is not None else None
    )

    def take(batch_rows: np.ndarray) -> np.ndarray:
        return (
            cache.pixels[batch_rows]
            if rng is None
            else gather_turned(cache.pixels, batch_rows, rng)
        )

    def gather(batch_rows: tf.Tensor, *targets: tf.Tensor) -> tuple[tf.Tensor, ...]:
        images = tf.numpy_function(take, [batch_rows], tf.uint8)
        images.set_shape((None, size, size, 3))
        return (images, *targets)

    options = tf.data.Options()
    options.autotune.enabled = False
    return (
        dataset.map(gather, num_parallel_calls=PARALLEL_GATHERS)
        .prefetch(PREFETCH_BATCHES)
        .with_options(options)
    )
