"""The one decode function shared by training and inference.

Training and the daemon must see identical pixels for the same file, so both call
``decode_image``: Pillow restricted to the formats we accept, fully loaded (a truncated file is
an error, never silently padded), EXIF orientation applied, every colour mode converted
explicitly to 8-bit RGB, resized to ``image_size`` x ``image_size`` with bilinear filtering.
Rescaling to [0, 1] happens inside the Keras graph, so the decoded array stays uint8.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gicls.errors import UnreadableImageError
from gicls.progress import track

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
ACCEPTED_FORMATS = ("JPEG", "PNG", "BMP", "TIFF")
# 50 megapixels: far above any capsule frame, far below what exhausts memory when decoded.
DEFAULT_MAX_PIXELS = 50_000_000
# Transparent pixels are composited onto black, the colour outside the capsule's field of view.
ALPHA_BACKGROUND = (0, 0, 0)
PREPROCESSING_ID = "pillow-rgb8-exif-bilinear-v1"
# What a bundle's manifest records of the preprocessing its models expect.
PREPROCESSING_INFO = {
    "decode": PREPROCESSING_ID,
    "rescale": "in-graph Rescaling(1/255)",
    "input": "uint8 RGB, resized to image_size x image_size",
}


def has_image_extension(path: Path | str) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def decode_image(
    source: Path | str | BinaryIO, image_size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Decode one image file into a uint8 array of shape (image_size, image_size, 3).

    Raises UnreadableImageError with reason ``not_image``, ``too_large``, ``truncated``,
    ``corrupt`` or ``unsupported_mode``, and nothing else: callers skip or quarantine the
    file on that one exception.
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we want a hard stop.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=ACCEPTED_FORMATS) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise UnreadableImageError(
                        "too_large", f"{width}x{height} pixels exceeds the limit of {max_pixels}"
                    )
                if image.format == "JPEG":
                    # Let libjpeg decode at a reduced scale when the target is much smaller;
                    # training and inference both do this, so they stay identical.
                    image.draft("RGB", (image_size, image_size))
                image.load()
                return preprocess_image(ImageOps.exif_transpose(image), image_size)
    except UnreadableImageError:
        raise
    except UnidentifiedImageError as exc:
        raise UnreadableImageError("not_image", _first_line(exc)) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UnreadableImageError("too_large", _first_line(exc)) from None
    except OSError as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise UnreadableImageError(reason, _first_line(exc)) from None
    except (ValueError, SyntaxError, EOFError) as exc:
        raise UnreadableImageError("corrupt", _first_line(exc)) from None
    except Exception as exc:
        # Any other exception out of a decoder is a hostile or odd file, not a reason to stop
        # a training run hours in or the daemon: it is reported like every unreadable image.
        raise UnreadableImageError("corrupt", f"{type(exc).__name__}: {_first_line(exc)}") from None


def preprocess_image(image: Image.Image, image_size: int) -> np.ndarray:
    """A loaded, upright Pillow image -> uint8 (image_size, image_size, 3), as for training.

    The one place the colour conversion and resize happen: files (``decode_image``) and video
    frames (``gicls.daemon.video_decode``) both end here, so PREPROCESSING_ID holds for both.
    Raises UnreadableImageError(``unsupported_mode``) for modes that have no honest 8-bit RGB.
    """
    resized = _to_rgb8(image).resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _to_rgb8(image: Image.Image) -> Image.Image:
    """Convert any accepted mode to 8-bit RGB explicitly (no silent clipping)."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in {"I;16", "I;16B", "I;16L", "I;16N", "I"}:
        values = np.asarray(image, dtype=np.int64)
        if values.min() < 0 or values.max() > 65535:
            raise UnreadableImageError(
                "unsupported_mode", f"mode {mode} values outside the 16-bit range"
            )
        # 16-bit samples are scaled to 8 bits (65535 -> 255), not clipped.
        scaled = np.rint(values / 257.0).astype(np.uint8)
        return Image.fromarray(scaled).convert("RGB")
    if mode == "F":
        raise UnreadableImageError("unsupported_mode", "floating-point images are not accepted")
    if mode in {"RGBA", "LA", "PA", "RGBa", "La"} or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*ALPHA_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # CMYK, YCbCr, L, 1, P (opaque), LAB, HSV: Pillow's own conversions are exact enough.
    return image.convert("RGB")


def decode_many(
    paths: Sequence[Path], image_size: int, workers: int
) -> tuple[np.ndarray, dict[int, UnreadableImageError]]:
    """Decode ``paths`` in parallel threads (Pillow releases the GIL while decoding).

    Returns a (len(paths), image_size, image_size, 3) uint8 array and the failures by index;
    failed rows are left black.
    """
    images = np.zeros((len(paths), image_size, image_size, 3), dtype=np.uint8)
    failures: dict[int, UnreadableImageError] = {}

    def work(index: int) -> None:
        try:
            images[index] = decode_image(paths[index], image_size)
        except UnreadableImageError as exc:
            failures[index] = exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in track(pool.map(work, range(len(paths))), len(paths), "decoding"):
            pass
    return images, failures
