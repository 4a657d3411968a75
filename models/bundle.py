"""Model bundle: the folder of per-condition models plus ``manifest.json``.

Layout of ``models_dir``::

    <Class>_model.keras      one binary model per condition (the classic names)
    history/<Class>.csv      training history
    plots/<Class>_training.png
    manifest.json            everything needed to rebuild the fused ensemble and audit it

A bundle is published atomically: it is assembled in a sibling staging folder and swapped into
place (Linux renameat2 RENAME_EXCHANGE), so a reader never sees a half-written bundle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from gicls import __version__
from gicls.errors import ModelBundleError
from gicls.fsutil import RENAME_EXCHANGE, fsync_dir, renameat2
from gicls.hashing import file_sha256

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


class ModelEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    file: str
    sha256: str
    best_val_accuracy: float | None = None
    best_val_loss: float | None = None
    epochs_trained: int | None = None
    trained_at: str | None = None


class ClassCalibration(BaseModel):
    """Per-class affine map on the logit: calibrated = sigmoid(scale * logit(p) + shift)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: float = 1.0
    shift: float = 0.0


class Calibration(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    method: str
    classes: dict[str, ClassCalibration]


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    format_version: int = FORMAT_VERSION
    bundle_id: str
    classes: list[str]
    image_size: int
    preprocessing: dict[str, Any]
    architecture: str
    augment: dict[str, Any]
    precision: str
    models: dict[str, ModelEntry]
    calibration: Calibration | None = None
    data: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    created_at: str
    code_version: str

    def is_complete(self) -> bool:
        return all(name in self.models for name in self.classes)


def model_file_name(class_name: str) -> str:
    return f"{class_name}_model.keras"


def bundle_id_for(
    classes: list[str], models: dict[str, ModelEntry], calibration: Calibration | None = None
) -> str:
    """A short id that changes whenever anything that changes a score changes.

    That is any model file, the class order, or the calibration applied in the fused graph.
    """
    digest = hashlib.sha256()
    for name in classes:
        entry = models.get(name)
        digest.update(f"{name}\0{entry.sha256 if entry else '-'}\n".encode())
    if calibration is not None:
        digest.update(json.dumps(calibration.model_dump(mode="json"), sort_keys=True).encode())
    return digest.hexdigest()[:16]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_manifest(**fields: Any) -> Manifest:
    """Build a manifest, filling in bundle id, created_at and code version."""
    models = {name: ModelEntry.model_validate(entry) for name, entry in fields["models"].items()}
    calibration = fields.get("calibration")
    if calibration is not None:
        calibration = Calibration.model_validate(calibration)
    fields = {**fields, "models": models, "calibration": calibration}
    fields.setdefault("created_at", now_iso())
    fields.setdefault("code_version", __version__)
    fields["bundle_id"] = bundle_id_for(list(fields["classes"]), models, calibration)
    return Manifest.model_validate(fields)


def write_manifest(manifest: Manifest, folder: Path) -> Path:
    path = folder / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(models_dir: Path) -> Manifest:
    path = models_dir / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelBundleError(
            f"no model bundle at {models_dir} ({MANIFEST_NAME} missing; run gicls-train all)"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelBundleError(f"cannot read {path}: {exc}") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ModelBundleError(f"{path}: invalid manifest key '{key}': {first['msg']}") from None


def verify_bundle(models_dir: Path, classes: list[str] | tuple[str, ...] | None = None) -> Manifest:
    """Read the manifest and check it is complete and every model file matches its sha256.

    ``classes``, when given, must equal the manifest's class order (the config and the bundle
    must agree on what each score column means).
    """
    manifest = read_manifest(models_dir)
    if classes is not None and list(classes) != manifest.classes:
        raise ModelBundleError(
            f"bundle {models_dir} was trained for classes {manifest.classes}, "
            f"the configuration has {list(classes)}"
        )
    missing = [name for name in manifest.classes if name not in manifest.models]
    if missing:
        raise ModelBundleError(f"bundle {models_dir} has no model for: {', '.join(missing)}")
    for name in manifest.classes:
        entry = manifest.models[name]
        path = models_dir / entry.file
        if not path.is_file():
            raise ModelBundleError(f"bundle {models_dir}: model file {entry.file} is missing")
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise ModelBundleError(
                f"bundle {models_dir}: {entry.file} has sha256 {actual[:12]}..., "
                f"the manifest says {entry.sha256[:12]}... (modified or partly copied)"
            )
    if bundle_id_for(manifest.classes, manifest.models, manifest.calibration) != manifest.bundle_id:
        raise ModelBundleError(f"bundle {models_dir}: bundle_id does not match its model hashes")
    return manifest


def stage_bundle(models_dir: Path) -> Path:
    """Create a staging folder beside ``models_dir`` holding hard links to the live bundle.

    Files to be replaced must be unlinked before writing (``replace_in_stage``), so the live
    bundle's inodes are never written through a link.
    """
    models_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = models_dir.parent / f".{models_dir.name}.staging-{uuid.uuid4().hex[:8]}"
    if models_dir.is_dir():
        shutil.copytree(models_dir, staging, copy_function=os.link)
    else:
        staging.mkdir()
    return staging


def replace_in_stage(path: Path) -> Path:
    """Make ``path`` inside a staging folder safe to write (drop a link into the live bundle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    return path


def publish_bundle(staging: Path, models_dir: Path) -> None:
    """Atomically make ``staging`` the live ``models_dir`` and remove the previous bundle."""
    _fsync_tree(staging)
    if models_dir.exists():
        _exchange(staging, models_dir)
        shutil.rmtree(staging)  # now holds the previous bundle
    else:
        os.rename(staging, models_dir)
    fsync_dir(models_dir.parent)


def discard_stage(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def _exchange(a: Path, b: Path) -> None:
    """Swap two directory entries atomically."""
    try:
        renameat2(a, b, RENAME_EXCHANGE)
    except OSError as exc:
        raise ModelBundleError(f"cannot swap {a} into {b}: {exc.strerror}") from None


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(Path(folder) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))
