from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gicls.errors import UnreadableImageError
from gicls.models.preprocessing import decode_image, decode_many, has_image_extension
from tests.daemon.harness import png_claiming


def gradient(height: int = 40, width: int = 60) -> np.ndarray:
    y = np.linspace(0, 255, height)[:, None]
    x = np.linspace(0, 255, width)[None, :]
    return np.stack(
        [
            np.broadcast_to(y, (height, width)),
            np.broadcast_to(x, (height, width)),
            np.full((height, width), 128.0),
        ],
        axis=-1,
    ).astype(np.uint8)


def test_rgb_png_decodes_to_uint8_square(tmp_path):
    Image.fromarray(gradient()).save(tmp_path / "a.png")
    pixels = decode_image(tmp_path / "a.png", 32)
    assert pixels.shape == (32, 32, 3) and pixels.dtype == np.uint8
    assert pixels[0, 0, 0] < 30 and pixels[-1, 0, 0] > 220  # top-to-bottom ramp kept


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("empty.jpg", b"", "not_image"),
        ("text.jpg", b"hello, I am text", "not_image"),
        ("bomb.png", png_claiming(30000, 30000), "too_large"),
    ],
)
def test_bad_files_raise_with_a_reason(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(UnreadableImageError) as raised:
        decode_image(tmp_path / name, 32)
    assert raised.value.reason == reason


def test_truncated_jpeg_is_never_padded(tmp_path):
    Image.fromarray(gradient(200, 200)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError) as raised:
        decode_image(tmp_path / "cut.jpg", 32)
    assert raised.value.reason == "truncated"


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.full((10, 10), 65535 // 2, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    pixels = decode_image(tmp_path / "g16.png", 32)
    assert np.all(np.abs(pixels.astype(int) - 127) <= 1)


def test_cmyk_and_alpha_are_converted_explicitly(tmp_path):
    rgb = gradient()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert decode_image(tmp_path / "cmyk.jpg", 32).shape == (32, 32, 3)
    transparent = np.zeros((20, 20, 4), np.uint8)
    transparent[..., 0] = 255  # red, fully transparent: lands on the black background
    Image.fromarray(transparent, "RGBA").save(tmp_path / "clear.png")
    assert decode_image(tmp_path / "clear.png", 32).max() == 0


def test_exif_orientation_is_applied(tmp_path):
    upright = gradient(40, 80)
    image = Image.fromarray(upright)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    plain = decode_image(tmp_path / "rotated.jpg", 32)
    Image.fromarray(upright).transpose(Image.Transpose.ROTATE_270).save(
        tmp_path / "ref.jpg", quality=95
    )
    reference = decode_image(tmp_path / "ref.jpg", 32)
    assert np.abs(plain.astype(int) - reference.astype(int)).mean() < 6


def test_decode_many_keeps_order_and_reports_failures(tmp_path):
    paths = []
    for n in range(5):
        Image.fromarray(np.full((8, 8, 3), n * 40, np.uint8)).save(tmp_path / f"{n}.png")
        paths.append(tmp_path / f"{n}.png")
    (tmp_path / "bad.png").write_text("no")
    paths.insert(2, tmp_path / "bad.png")
    pixels, failures = decode_many(paths, 32, workers=3)
    assert list(failures) == [2] and failures[2].reason == "not_image"
    assert [int(pixels[i, 0, 0, 0]) for i in (0, 1, 3, 4, 5)] == [0, 40, 80, 120, 160]


def test_extension_check_is_case_insensitive():
    assert has_image_extension(Path("X.JPG")) and has_image_extension("y.TiFf")
    assert not has_image_extension("notes.txt")
