import numpy as np
import pytest

from gicls.training.dataset import gather_turned, pixel_dataset
from gicls.training.image_cache import ImageCache


def asymmetric_images(n: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def turns_of(originals: np.ndarray, turned: np.ndarray) -> list[int]:
    """For each pair, the k with np.rot90(original, k) == turned (fails if there is none)."""
    found = []
    for original, image in zip(originals, turned, strict=True):
        matches = [k for k in range(4) if np.array_equal(np.rot90(original, k), image)]
        assert matches, "output is not a quarter turn of its input"
        found.append(matches[0])
    return found


def test_each_image_gets_its_own_quarter_turn_on_uint8():
    pixels = asymmetric_images(64)
    rows = np.arange(63, -1, -1)
    turned = gather_turned(pixels, rows, np.random.default_rng(3))
    assert turned.dtype == np.uint8 and turned.shape == pixels.shape
    assert set(turns_of(pixels[rows], turned)) == {0, 1, 2, 3}


@pytest.mark.parametrize(
    ("seed", "quarter_turns", "turned"), [(5, True, True), (5, False, False), (None, True, False)]
)
def test_only_the_training_pipeline_turns_images(seed, quarter_turns, turned):
    pixels = asymmetric_images(32)
    cache = ImageCache(pixels=pixels, row_of_hash={str(k): k for k in range(32)})
    rows = np.arange(32)
    dataset = pixel_dataset(cache, rows, np.zeros(32), 8, seed, quarter_turns=quarter_turns)
    seen = {}
    for images, _ in dataset:
        for image in images.numpy():
            # Identify each image by content under any turn, then record its turn.
            for row in rows:
                turns = [k for k in range(4) if np.array_equal(np.rot90(pixels[row], k), image)]
                if turns:
                    seen[row] = turns[0]
    assert sorted(seen) == list(rows)  # every image came out, once, as a turn of itself
    assert (set(seen.values()) != {0}) == turned


def test_pipelines_run_without_the_tf_data_autotuner():
    # With autotuning on, iterator teardown left the CPU idle ~2.3 s at random (see dataset.py).
    cache = ImageCache(pixels=asymmetric_images(4), row_of_hash={})
    for seed in (1, None):
        dataset = pixel_dataset(cache, np.arange(4), np.zeros(4), 2, seed)
        assert dataset.options().autotune.enabled is False
