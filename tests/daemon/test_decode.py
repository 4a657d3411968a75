from __future__ import annotations

import io

import numpy as np
from PIL import Image

from gicls.daemon.decode import decode_batch
from tests.daemon import harness


def encoded(pixels: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def test_good_files_decode_to_their_known_pixels_and_bad_ones_are_reported_by_index() -> None:
    solid = np.full((40, 40, 3), (200, 30, 90), np.uint8)
    checker = np.array([[0, 255], [255, 0]], np.uint8)
    blobs = [
        encoded(solid),
        harness.truncated_jpeg(2),
        b"plain text",
        harness.png_claiming(30000, 30000),
        encoded(np.full((40, 40), 257 * 100, np.uint16)),
        encoded(np.stack([checker] * 3, axis=-1)),
    ]
    images, failures = decode_batch(blobs, 4)
    assert images.shape == (6, 4, 4, 3) and images.dtype == np.uint8
    assert {k: e.reason for k, e in failures.items()} == {
        1: "truncated",
        2: "not_image",
        3: "too_large",
    }
    assert (images[0] == (200, 30, 90)).all()
    assert (images[4] == 100).all()  # 16-bit 25700 scales to 8-bit 100
    # Bilinear 2 -> 4 px: output pixel centres fall at -1/4, 1/4, 3/4, 5/4 input pixels, so
    # each axis weighs the two input pixels (1, 0), (3/4, 1/4), (1/4, 3/4), (0, 1).
    weights = np.array([[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])
    expected = np.rint(weights @ checker @ weights.T)  # [[0, 64, 191, 255], [64, 96, ...]]
    for channel in range(3):
        np.testing.assert_array_equal(images[5][..., channel], expected)
    assert not images[1].any()


def test_an_odd_decoder_exception_quarantines_that_file_only(pillow_chokes_on_odd_size) -> None:
    blobs = [
        harness.png(1),
        encoded(np.zeros((pillow_chokes_on_odd_size,) * 2 + (3,), np.uint8)),
        harness.png(2),
    ]
    images, failures = decode_batch(blobs, 16)
    assert {k: e.reason for k, e in failures.items()} == {1: "corrupt"}
    assert "KeyError" in str(failures[1])
    assert images[0].any() and images[2].any()
