from gicls.training.image_cache import build_image_cache
from gicls.training.scan import scan_labelled_tree

from .conftest import make_tree, write_image


def test_an_image_pillow_chokes_on_is_reported_and_skipped(tmp_path, pillow_chokes_on_odd_size):
    make_tree(tmp_path, {"A": 3, "B": 3})
    odd = write_image(tmp_path / "B" / "odd.png", "B", 1, seed=5, size=pillow_chokes_on_odd_size)
    records = scan_labelled_tree(tmp_path, ("A", "B")).records
    cache, kept, failed = build_image_cache(records, 16, workers=2)
    assert [(r.path, reason.split(":")[0]) for r, reason in failed] == [(odd, "corrupt")]
    assert len(kept) == 6 and odd not in {r.path for r in kept}
    assert cache.pixels.shape == (6, 16, 16, 3)
