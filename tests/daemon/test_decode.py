from __future__ import annotations

import io

import numpy as np

from gicls.daemon.decode import decode_batch
from gicls.models.preprocessing import decode_image
from tests.daemon import harness


def test_good_files_decode_like_training_and_bad_ones_are_reported_by_index() -> None:
    blobs = [
        harness.png(1),
        harness.truncated_jpeg(2),
        b"plain text",
        harness.png_claiming(30000, 30000),
        harness.png16(3),
        harness.cmyk_jpeg(4),
    ]
    images, failures = decode_batch(blobs, 32)
    assert images.shape == (6, 32, 32, 3) and images.dtype == np.uint8
    assert {k: e.reason for k, e in failures.items()} == {
        1: "truncated",
        2: "not_image",
        3: "too_large",
    }
    np.testing.assert_array_equal(images[0], decode_image(io.BytesIO(blobs[0]), 32))
    assert images[4].any() and images[5].any()
    assert not images[1].any()
