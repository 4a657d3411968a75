import numpy as np
from PIL import Image

from gicls.config import DEFAULT_CLASSES
from gicls.training.demo_data import NOTICE_FILE, generate_demo_data, synthetic_image


def test_writes_labelled_synthetic_folders(tmp_path):
    count = generate_demo_data(tmp_path, ("Bleeding", "Cats"), per_class=3, size=48, seed=1)
    assert count == 6
    assert "SYNTHETIC" in (tmp_path / NOTICE_FILE).read_text()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg"))
    assert files == [f"{c}/synthetic_0000{n}.jpg" for c in ("Bleeding", "Cats") for n in range(3)]
    assert Image.open(tmp_path / "Cats" / "synthetic_00000.jpg").size == (48, 48)


def test_same_seed_same_pixels():
    a = synthetic_image("Polyp", 7, 64, np.random.default_rng(3))
    b = synthetic_image("Polyp", 7, 64, np.random.default_rng(3))
    c = synthetic_image("Polyp", 7, 64, np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_round_field_of_view_is_black_outside():
    image = synthetic_image("Normal", 6, 64, np.random.default_rng(0))
    assert image[0, 0].max() == 0 and image[-1, -1].max() == 0
    assert image[32, 32].mean() > 60


def test_every_class_cue_changes_the_picture_visibly():
    """Same seed, same tissue: each class's cue must alter a visible patch in every sample."""
    for index, name in enumerate((*DEFAULT_CLASSES, "SomethingElse")):
        if name == "Normal":
            continue
        for n in range(6):
            cue = synthetic_image(name, index, 64, np.random.default_rng([9, n])).astype(int)
            plain = synthetic_image("Normal", 6, 64, np.random.default_rng([9, n])).astype(int)
            changed = (np.abs(cue - plain).max(axis=-1) > 25).mean()
            assert changed > 0.003, (name, n, changed)
