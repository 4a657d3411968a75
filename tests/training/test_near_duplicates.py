import io
from pathlib import Path

import numpy as np
from PIL import Image

from gicls.training.demo_data import synthetic_image
from gicls.training.near_duplicates import difference_hashes, near_duplicate_groups
from gicls.training.scan import ImageRecord
from gicls.training.split import holdout_split


def reencoded(pixels: np.ndarray, quality: int, scale: float) -> np.ndarray:
    """The same frame saved as a JPEG at another quality and size, then decoded again."""
    size = pixels.shape[0]
    buffer = io.BytesIO()
    smaller = Image.fromarray(pixels).resize((int(size * scale),) * 2, Image.Resampling.BILINEAR)
    smaller.save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB").resize((size, size)))


def frames(count: int, seed: int = 0) -> list[np.ndarray]:
    return [synthetic_image("Polyp", 7, 96, np.random.default_rng([seed, n])) for n in range(count)]


def test_reencoded_copies_join_one_group_and_distinct_frames_do_not():
    originals = frames(6)
    copies = [reencoded(originals[0], 60, 0.7), reencoded(originals[3], 80, 0.75)]
    hashes = difference_hashes(np.stack([*originals, *copies]))
    assert hashes.shape == (8, 32) and hashes.dtype == np.uint8
    groups = near_duplicate_groups(hashes, max_distance=10)
    assert groups[6] == groups[0] and groups[7] == groups[3]
    assert len(set(groups[:6])) == 6  # different frames stay apart


def test_zero_distance_only_joins_identical_hashes():
    image = frames(1)[0]
    hashes = difference_hashes(np.stack([image, image, reencoded(image, 40, 0.4)]))
    distances = np.bitwise_count(hashes[0] ^ hashes[2]).sum()
    groups = near_duplicate_groups(hashes, max_distance=0)
    assert groups[0] == groups[1]
    assert (groups[2] == groups[0]) == (distances == 0)


def test_split_keeps_a_near_duplicate_group_on_one_side():
    records = [ImageRecord(Path(f"/d/{n}.jpg"), n % 2, f"h{n}") for n in range(40)]
    # h0, h2, h4 ... h18 are one burst of near-identical frames of class 0.
    group_of = {f"h{n}": "burst" for n in range(0, 20, 2)}
    for seed in range(10):
        split = holdout_split(records, ("A", "B"), 0.3, seed, group_of)
        sides = {
            ("validation" if r in split.validation else "train")
            for r in records
            if r.sha256 in group_of
        }
        assert len(sides) == 1
