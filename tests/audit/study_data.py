"""Tiny synthetic studies on disk for the study report tests: frame files in the output tree,
their rows written through the daemon's real audit writer and read back with the real reader,
and (for videos) Parquet frame tables and key-frame JPEGs named as the daemon names them."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from gicls.audit.reader import AuditTable, read_audit_log
from gicls.audit.schema import encode_name
from gicls.audit.study_model import STUDY_COLUMNS, BundleSummary
from gicls.audit.study_report import KEY_FRAMES_PER_CLASS, build_study_report, render_study_report
from gicls.daemon.audit_writer import AuditWriter
from gicls.models.bundle import DeviceReference, Manifest
from gicls.training.demo_data import seeded_synthetic_image

CLASSES = ("Bleeding", "Normal", "Polyp")
BUNDLE_ID = "0123456789abcdef"
# What the bundle's held-out evaluation measured: the figures the report must show.
BALANCED_ACCURACY = 0.8125
HELD_OUT_IMAGES = 48

# Held-out: mostly Normal, as in the Capsule Vision validation split.
REFERENCE = DeviceReference(
    measured_on="held-out split of demo/training",
    images=HELD_OUT_IMAGES,
    predicted_share={"Bleeding": 0.10, "Normal": 0.80, "Polyp": 0.10},
    share_tolerance=0.25,
    score_quantile=0.95,
    score_upper={"Bleeding": 0.60, "Normal": 0.99, "Polyp": 0.50},
    min_frames=50,
)


@dataclass(frozen=True)
class Frame:
    name: str  # path in the study, also the file's name in the output tree
    scores: tuple[float, ...]  # one per class
    status: str = "classified"
    reason: str = ""

    @property
    def predicted(self) -> str:
        return CLASSES[int(np.argmax(self.scores))]


def jpeg_bytes(class_name: str, seed: int, size: int = 64) -> bytes:
    """A demo-data frame (``gicls-train demo-data``'s generator) showing ``class_name``."""
    pixels = seeded_synthetic_image(class_name, CLASSES.index(class_name), seed, size, seed=7)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


def _folder(study: str, frame: Frame) -> str:
    if frame.status == "review":
        return f"{study}/_review"
    if frame.status == "quarantined":
        return f"{study}/_quarantine/{frame.reason}"
    return f"{study}/{frame.predicted}"


def write_study(output: Path, study: str, frames: Sequence[Frame]) -> AuditTable:
    """Put each frame's file where the daemon would and log its row; return the log read back."""
    log_path = output / "audit_log.csv"
    writer = AuditWriter(log_path, CLASSES)
    try:
        with writer.batch():
            for seed, frame in enumerate(frames):
                data = jpeg_bytes(frame.predicted, seed)
                destination = f"{_folder(study, frame)}/{Path(frame.name).name}"
                target = output / destination
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                scored = frame.status != "quarantined"
                name_text, name_hex = encode_name(Path(frame.name).name.encode())
                destination_text, destination_hex = encode_name(destination.encode())
                ranked = sorted(frame.scores, reverse=True)
                writer.append(
                    {
                        "processed_at": f"2026-12-01T10:00:{seed % 60:02d}.000+00:00",
                        "status": frame.status,
                        "file_name": name_text,
                        "file_name_hex": name_hex,
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "bytes": str(len(data)),
                        "predicted_class": frame.predicted if scored else "",
                        "confidence": f"{ranked[0]:.6f}" if scored else "",
                        "margin": f"{ranked[0] - ranked[1]:.6f}" if scored else "",
                        **{
                            name: f"{score:.6f}" if scored else ""
                            for name, score in zip(CLASSES, frame.scores, strict=True)
                        },
                        "destination": destination_text,
                        "destination_hex": destination_hex,
                        "reason": frame.reason,
                        "model_bundle": BUNDLE_ID,
                        "study": study,
                        "source_path": f"{study}/{frame.name}",
                    }
                )
    finally:
        writer.close()
    return read_audit_log(log_path, CLASSES)


def without_study_columns(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` as the reader yields a log written before studies (schema version 3)."""
    return rows.drop(columns=[name for name in STUDY_COLUMNS if name in rows.columns])


def write_video(
    output: Path, study: str, stem: str, scores: np.ndarray, fps: float, key_frames: Sequence[int]
) -> Path:
    """A video's Parquet frame table (``scores``: (N, C)) and the JPEGs of ``key_frames``."""
    frames = output / study / "_frames"
    frames.mkdir(parents=True, exist_ok=True)
    index = np.arange(len(scores), dtype=np.int64)
    predicted = np.asarray(CLASSES)[scores.argmax(axis=1)]
    table = pd.DataFrame(
        {
            "frame_index": index,
            "frame_time_s": index / fps,
            **{name: scores[:, i].astype(np.float32) for i, name in enumerate(CLASSES)},
            "predicted_class": predicted,
            "flags": "",
        }
    )
    path = frames / f"{stem}.parquet"
    table.to_parquet(path)
    for frame in key_frames:
        folder = output / study / str(predicted[frame])
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{stem}_f{frame:07d}_t{frame / fps:09.2f}s.jpg"
        (folder / name).write_bytes(jpeg_bytes(str(predicted[frame]), 1000 + frame))
    return path


def manifest(device_reference: DeviceReference | None = None) -> Manifest:
    """A manifest as training writes it, with a held-out evaluation in ``metrics``."""
    class_wise = {
        name: {"recall": 0.75, "specificity": 0.9, "auc": 0.88, "precision": 0.7}
        for name in CLASSES
    }
    return Manifest.model_validate(
        {
            "format_version": 2,
            "bundle_id": BUNDLE_ID,
            "classes": list(CLASSES),
            "image_size": 32,
            "preprocessing": {},
            "architecture": "seed_cnn",
            "augment": {},
            "precision": "float32",
            "models": {},
            "data": {
                "training_dir": "demo/training",
                "validation": "held-out split of training_dir",
                "split_seed": 42,
                "validation_images": {name: 16 for name in CLASSES},
            },
            "metrics": {
                "validation": {
                    "bundle_id": BUNDLE_ID,
                    "images": HELD_OUT_IMAGES,
                    "uncalibrated": {
                        "balanced_accuracy": BALANCED_ACCURACY,
                        "mean_auc": 0.9,
                        "accuracy": 0.8,
                        "class_wise_metrics": class_wise,
                        "intervals": {"balanced_accuracy": [0.7, 0.9]},
                    },
                }
            },
            "device_reference": device_reference.model_dump() if device_reference else None,
            "created_at": "2026-11-30T09:00:00+00:00",
            "code_version": "0.1.0",
        }
    )


def bundle_summary(device_reference: DeviceReference | None = None) -> BundleSummary:
    return BundleSummary.from_manifest(manifest(device_reference))


def demo_study(output: Path, study: str, frames: int = 40) -> AuditTable:
    """A study that looks like a small real one: mostly Normal, a bleed over frames 10-14, a
    polyp at 25-27, one frame sent to review and one quarantined; with pyarrow installed, also
    a 2-minute video with a bleed at 1:00 and its key frames."""
    rng = np.random.default_rng(3)
    specs = []
    for n in range(frames):
        scores = rng.uniform(0.0, 0.15, len(CLASSES))
        scores[1] = rng.uniform(0.7, 0.95)
        if 10 <= n <= 14:
            scores[0] = rng.uniform(0.85, 0.99)
        if 25 <= n <= 27:
            scores[2] = rng.uniform(0.8, 0.97)
        specs.append(Frame(f"frame_{n + 1}.jpg", tuple(float(s) for s in scores)))
    specs[30] = Frame("frame_31.jpg", (0.45, 0.4, 0.15), status="review", reason="low_confidence")
    specs[35] = Frame("frame_36.jpg", (0.0, 0.0, 0.0), status="quarantined", reason="truncated")
    audit = write_study(output, study, specs)
    try:
        import pyarrow  # noqa: F401  (the Parquet engine; VIDEO adds it to the dependencies)
    except ImportError:
        return audit
    fps, length = 5.0, 600
    video = rng.uniform(0.0, 0.15, (length, len(CLASSES)))
    video[:, 1] = rng.uniform(0.6, 0.95, length)
    video[295:320, 0] = rng.uniform(0.8, 0.99, 25)
    write_video(output, study, "capsule", video, fps, key_frames=[300, 305, 310])
    return audit


def write_report(
    output: Path,
    study: str,
    table: pd.DataFrame,
    bundle: BundleSummary,
    classes: Sequence[str],
    key_frames_per_class: int = KEY_FRAMES_PER_CLASS,
) -> list[Path]:
    """Build and write a study's report, as publishing does; the files written."""
    report = build_study_report(output, study, table, bundle, classes, key_frames_per_class)
    return render_study_report(output, report)
