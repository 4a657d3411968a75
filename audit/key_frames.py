"""The report's key frames: per condition, the frames that score highest for it, as small
embedded JPEG thumbnails with their score and place in the study.

Image files: the top ``per_class`` of the study's classified frames predicted or flagged for
the condition, read from their destination files. Videos: the key-frame JPEGs the daemon
wrote into ``output/<study>/<Class>/`` (named ``<video stem>_f<frame index>_t<seconds>s.jpg``),
scored from the video's frame table.
"""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image

from gicls.audit.schema import FLAG_SEPARATOR
from gicls.audit.study_model import destination_path
from gicls.audit.timeline import clock

THUMBNAIL_PX = 128
_JPEG_QUALITY = 70
# The contract's key-frame name: <video stem>_f<frame_index:07d>_t<seconds:09.2f>s.jpg
_KEY_FRAME_NAME = re.compile(r"^(?P<stem>.+)_f(?P<index>\d{7,})_t(?P<seconds>\d+\.\d{2})s\.jpg$")


@dataclass(frozen=True)
class KeyFrame:
    label: str  # the file's name or path in the study
    when: str  # frame number, or time in the video
    score: float | None
    jpeg_base64: str  # "" when the file could not be shown (``problem`` says why)
    problem: str = ""


@dataclass(frozen=True)
class KeyFrameGroup:
    name: str
    frames: tuple[KeyFrame, ...]


def key_frames(
    output_dir: Path, study: str, frames: pd.DataFrame, classes: Sequence[str], per_class: int
) -> tuple[KeyFrameGroup, ...]:
    """The key frames of each condition that has any, highest score first."""
    images = frames[(frames["series"] == "") & (frames["status"] == "classified")]
    image_count = len(frames[frames["series"] == ""])
    videos = frames[frames["series"] != ""]
    groups = []
    for name in classes:
        picked = _image_key_frames(output_dir, images, name, per_class, image_count)
        picked += _video_key_frames(output_dir / study / name, videos, name)
        # Highest score first; a key frame whose video has no score for it last.
        picked.sort(key=lambda pair: (pair[0] is None, -(pair[0] or 0.0)))
        if picked:
            groups.append(KeyFrameGroup(name, tuple(frame for _, frame in picked[:per_class])))
    return tuple(groups)


def _for_class(frames: pd.DataFrame, name: str) -> pd.Series:
    flagged = frames["flags"].map(lambda flags: name in flags.split(FLAG_SEPARATOR)).astype(bool)
    return (frames["predicted_class"] == name) | flagged


def _image_key_frames(
    output_dir: Path, images: pd.DataFrame, name: str, per_class: int, count: int
) -> list[tuple[float | None, KeyFrame]]:
    candidates = images[_for_class(images, name)].nlargest(per_class, name, keep="first")
    picked = []
    for row in candidates.to_dict("records"):
        path = destination_path(output_dir, row)
        jpeg, problem = thumbnail(path) if path is not None else ("", "no destination")
        score = float(row[name])
        when = f"frame {int(row['position']) + 1} of {count}"
        picked.append((score, KeyFrame(row["name"], when, score, jpeg, problem)))
    return picked


def _video_key_frames(
    folder: Path, videos: pd.DataFrame, name: str
) -> list[tuple[float | None, KeyFrame]]:
    if videos.empty or not folder.is_dir():
        return []
    stems = set(videos["series"])
    scores = videos.set_index(["series", "frame_index"])[name]
    picked = []
    for path in folder.iterdir():
        match = _KEY_FRAME_NAME.match(path.name)
        if match is None or match["stem"] not in stems:
            continue
        key = (match["stem"], int(match["index"]))
        score = float(scores[key]) if key in scores.index else None
        jpeg, problem = thumbnail(path)
        when = f"{clock(float(match['seconds']))} in {match['stem']} (frame {int(match['index'])})"
        picked.append((score, KeyFrame(path.name, when, score, jpeg, problem)))
    return picked


def thumbnail(path: Path) -> tuple[str, str]:
    """A small JPEG of the image at ``path`` as base64, or ("", why it cannot be shown)."""
    if path.is_symlink() or not path.is_file():
        return "", "file not found"
    try:
        with Image.open(path) as image:
            image.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))  # JPEG: decode at reduced size
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            image.convert("RGB").save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return "", f"unreadable: {type(exc).__name__}"
    return base64.b64encode(buffer.getvalue()).decode("ascii"), ""
