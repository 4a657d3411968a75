"""Model bundle: the folder of per-condition models plus ``manifest.json``.

Layout of ``models_dir``::

    <Class>_model.keras      one binary model per condition (the classic names)
    history/<Class>.csv      training history
    plots/<Class>_training.png
    evaluation/              the held-out evaluation (training/evaluate.py)
    guard/frames.npy, scores.npy   guard frames and their float32 scores (gicls.models.guard)
    manifest.json            everything needed to rebuild the fused ensemble and audit it

A bundle is published atomically: it is assembled in a sibling staging folder and swapped into
place (Linux renameat2 RENAME_EXCHANGE), so a reader never sees a half-written bundle.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gicls import __version__
from gicls.errors import ModelBundleError
from gicls.fsutil import RENAME_EXCHANGE, fsync_dir, renameat2
from gicls.models.preprocessing import PREPROCESSING_ID
from gicls.models.transform_record import known_transforms

MANIFEST_NAME = "manifest.json"
# 2: bundle id over the whole decision description, guard frames. Format 1 bundles (written
# before) are migrated by UPGRADE_COMMAND, never served as they are.
# Format 3 adds ``preprocessing.in_graph`` (gicls.models.input_transforms): layers inside the
# models that an older gicls cannot load, so it must refuse the bundle by its version. A
# format-2 bundle is a format-3 bundle without them and is served as it is.
FORMAT_VERSION = 3
OLDEST_SERVED_FORMAT = 2
SERVED_FORMATS = f"{OLDEST_SERVED_FORMAT}-{FORMAT_VERSION}"
UPGRADE_COMMAND = "gicls-train upgrade-bundle -c CONFIG"
REBUILD_COMMAND = "gicls-train all -c CONFIG"
# ``data.validation`` of a bundle whose held-out images are a split of its training folder.
HELD_OUT_OF_TRAINING = "held-out split of training_dir"


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


class ClassThreshold(BaseModel):
    """A class's operating point: an image is flagged for the class when its calibrated score
    is >= ``threshold``, fitted on the held-out split for ``target_sensitivity``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(ge=0.0, le=1.0)
    target_sensitivity: float = Field(gt=0.0, le=1.0)


class BundleFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str  # relative to the bundle folder
    sha256: str


class GuardFrames(BaseModel):
    """Held-out frames and the scores the float32 fused ensemble gave them at training time.

    The daemon checks that the models still reproduce these scores, and serves bfloat16 or
    float16 only where the guard accepts it on these frames (see gicls.models.guard).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    frames: BundleFile  # uint8 (n, image_size, image_size, 3) .npy
    scores: BundleFile  # float32 (n, n_classes) .npy, in class order
    images: int


class DeviceReference(BaseModel):
    """What the held-out evaluation saw, as the bound a study is checked against
    (gicls.audit.device_check): a study far outside it may come from another device or setting.

    Measured on the served (calibrated) scores of ``images`` held-out images. A study is flagged
    when a class takes more than ``predicted_share[c] + share_tolerance`` of its frames, or when
    the study's median score of a class lies above that class's held-out ``score_upper``
    quantile (``score_quantile``) of all images' scores.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    measured_on: str
    images: int = Field(ge=1)
    predicted_share: dict[str, float]
    share_tolerance: float = Field(gt=0.0, le=1.0)
    score_quantile: float = Field(gt=0.5, lt=1.0)
    score_upper: dict[str, float]
    # Fewer frames than this: shares are too noisy to judge a device by.
    min_frames: int = Field(ge=1)


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    format_version: int
    bundle_id: str
    classes: list[str]
    image_size: int
    preprocessing: dict[str, Any]
    architecture: str
    augment: dict[str, Any]
    precision: str
    models: dict[str, ModelEntry]
    calibration: Calibration | None = None
    guard: GuardFrames | None = None
    # Per-class operating points (``[decision] target_sensitivity``), on calibrated scores.
    thresholds: dict[str, ClassThreshold] | None = None
    data: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    # Optional (bundles trained before it have none): the bound of the study reports' device
    # check. Not a decision field: it changes no image's route, so not the bundle id either.
    device_reference: DeviceReference | None = None
    created_at: str
    code_version: str
    # Set by ``gicls-train upgrade-bundle``: the format and bundle id this one was migrated from.
    migrated_from: dict[str, Any] | None = None

    def is_complete(self) -> bool:
        return all(name in self.models for name in self.classes)

    @property
    def class_thresholds(self) -> dict[str, float]:
        """Class name -> threshold, for the classes that have one (none without thresholds)."""
        return {name: point.threshold for name, point in (self.thresholds or {}).items()}


def model_file_name(class_name: str) -> str:
    return f"{class_name}_model.keras"


def history_file_name(class_name: str) -> str:
    return f"history/{class_name}.csv"


def plot_file_name(class_name: str) -> str:
    return f"plots/{class_name}_training.png"


def condition_files(class_name: str) -> tuple[str, ...]:
    """The files of one condition's model: what a partial fit keeps of the others."""
    return model_file_name(class_name), history_file_name(class_name), plot_file_name(class_name)


# Manifest fields besides the model files that change what the daemon decides for an image.
# A field that starts to matter joins by name, and with it every bundle that differs in it gets
# another id.
DECISION_FIELDS = ("classes", "image_size", "preprocessing", "calibration", "guard", "thresholds")
# Fields that joined after format 2: hashed only when set, so a bundle without them keeps the
# id it was published with (and keeps verifying).
_HASHED_WHEN_SET = ("thresholds",)


def decision_of(manifest: Manifest) -> dict[str, Any]:
    """Canonical description of everything that changes a decision: the model files by
    sha256 and the ``DECISION_FIELDS`` (JSON types only)."""
    decision = manifest.model_dump(mode="json", include=set(DECISION_FIELDS))
    for name in _HASHED_WHEN_SET:
        if decision[name] is None:
            del decision[name]
    decision["models"] = {name: entry.sha256 for name, entry in manifest.models.items()}
    return decision


def bundle_id_for(decision: dict[str, Any]) -> str:
    """A short id of a decision description: two bundles that may route one image
    differently never share it."""
    canonical = json.dumps(decision, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def new_manifest(**fields: Any) -> Manifest:
    """Build a manifest, filling in bundle id, created_at and code version."""
    models = {name: ModelEntry.model_validate(entry) for name, entry in fields["models"].items()}
    calibration = fields.get("calibration")
    if calibration is not None:
        calibration = Calibration.model_validate(calibration)
    fields = {**fields, "models": models, "calibration": calibration}
    fields.setdefault("format_version", FORMAT_VERSION)
    fields.setdefault("created_at", now_iso())
    fields.setdefault("code_version", __version__)
    manifest = Manifest.model_validate({**fields, "bundle_id": ""})
    return manifest.model_copy(update={"bundle_id": bundle_id_for(decision_of(manifest))})


def write_manifest(manifest: Manifest, folder: Path) -> Path:
    path = folder / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def read_manifest(models_dir: Path) -> Manifest:
    """The manifest of any format this code can read (``verify_bundle`` says if it serves it)."""
    with _bundle_dir(models_dir) as dir_fd:
        return _read_manifest_at(dir_fd, models_dir)


def verify_bundle(
    models_dir: Path,
    classes: list[str] | tuple[str, ...] | None = None,
    copy_to: Path | None = None,
) -> Manifest:
    """Read the manifest and check it is servable, complete and every file matches its sha256.

    ``classes``, when given, must equal the manifest's class order (the config and the bundle
    must agree on what each score column means). ``copy_to``: also write every verified file
    there, from the very bytes that were hashed, so that a loader can open files nobody can
    swap after the check (a publish exchanges the live folder at any time).
    """
    with _bundle_dir(models_dir) as dir_fd:
        manifest = _read_manifest_at(dir_fd, models_dir)
        check_servable(manifest, models_dir)
        if classes is not None and list(classes) != manifest.classes:
            raise ModelBundleError(
                f"bundle {models_dir} was trained for classes {manifest.classes}, "
                f"the configuration has {list(classes)}"
            )
        _check_files_at(dir_fd, manifest, models_dir, copy_to)
    if bundle_id_for(decision_of(manifest)) != manifest.bundle_id:
        raise ModelBundleError(
            f"bundle {models_dir}: bundle_id does not match what it decides with (model "
            f"hashes, {', '.join(DECISION_FIELDS)}): the manifest was edited"
        )
    return manifest


def check_model_files(manifest: Manifest, models_dir: Path) -> None:
    """Every file the manifest lists is in ``models_dir`` with its sha256."""
    with _bundle_dir(models_dir) as dir_fd:
        _check_files_at(dir_fd, manifest, models_dir, None)


def _listed_files(manifest: Manifest, models_dir: Path) -> list[BundleFile]:
    missing = [name for name in manifest.classes if name not in manifest.models]
    if missing:
        raise ModelBundleError(f"bundle {models_dir} has no model for: {', '.join(missing)}")
    files = [
        BundleFile(file=manifest.models[n].file, sha256=manifest.models[n].sha256)
        for n in manifest.classes
    ]
    if manifest.guard is not None:
        files += [manifest.guard.frames, manifest.guard.scores]
    return files


@contextlib.contextmanager
def _bundle_dir(models_dir: Path) -> Iterator[int]:
    """The bundle folder opened once: every read through this descriptor sees one bundle,
    even if a publish swaps another into ``models_dir`` meanwhile (then the files of the old
    one vanish and the read fails: a refusal, never a mix)."""
    try:
        fd = os.open(models_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _no_bundle(models_dir) from None
    except OSError as exc:
        raise ModelBundleError(f"cannot open the bundle {models_dir}: {exc}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _no_bundle(models_dir: Path) -> ModelBundleError:
    return ModelBundleError(
        f"no model bundle at {models_dir} ({MANIFEST_NAME} missing; run gicls-train all)"
    )


def _read_manifest_at(dir_fd: int, models_dir: Path) -> Manifest:
    path = models_dir / MANIFEST_NAME
    try:
        with open(_open_at(dir_fd, MANIFEST_NAME), "rb") as handle:
            data = json.loads(handle.read())
    except FileNotFoundError:
        raise _no_bundle(models_dir) from None
    except (OSError, ValueError) as exc:
        raise ModelBundleError(f"cannot read {path}: {exc}") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ModelBundleError(f"{path}: invalid manifest key '{key}': {first['msg']}") from None


def _open_at(dir_fd: int, name: str) -> int:
    # No link is followed out of the bundle, and a FIFO planted there cannot block the load.
    return os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)


_COPY_CHUNK = 1 << 20


def _check_files_at(
    dir_fd: int, manifest: Manifest, models_dir: Path, copy_to: Path | None
) -> None:
    for listed in _listed_files(manifest, models_dir):
        if Path(listed.file).is_absolute() or ".." in Path(listed.file).parts:
            raise ModelBundleError(f"bundle {models_dir}: {listed.file} is outside the bundle")
        try:
            with open(_open_at(dir_fd, listed.file), "rb") as source:
                actual = _hash_and_copy(source, copy_to / listed.file if copy_to else None)
        except FileNotFoundError:
            raise ModelBundleError(f"bundle {models_dir}: file {listed.file} is missing") from None
        except OSError as exc:  # a folder or device in its place, EIO, ...
            raise ModelBundleError(
                f"bundle {models_dir}: cannot verify {listed.file}: {exc.strerror}"
            ) from None
        if actual != listed.sha256:
            raise ModelBundleError(
                f"bundle {models_dir}: {listed.file} has sha256 {actual[:12]}..., "
                f"the manifest says {listed.sha256[:12]}... (modified or partly copied)"
            )


def _hash_and_copy(source: BinaryIO, target: Path | None) -> str:
    """sha256 of ``source``; with ``target``, the same bytes are written there as they pass."""
    digest = hashlib.sha256()
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") if target is not None else contextlib.nullcontext() as sink:
        while chunk := source.read(_COPY_CHUNK):
            digest.update(chunk)
            if sink is not None:
                sink.write(chunk)
    return digest.hexdigest()


def check_servable(manifest: Manifest, models_dir: Path) -> None:
    """Refuse a bundle this code cannot serve exactly as it was trained, saying how to fix it."""
    version = manifest.format_version
    if version < OLDEST_SERVED_FORMAT:
        raise ModelBundleError(
            f"bundle {models_dir}: format_version is {version}, this gicls serves "
            f"format_version {SERVED_FORMATS}; migrate it with {UPGRADE_COMMAND}"
        )
    if version > FORMAT_VERSION:
        raise ModelBundleError(
            f"bundle {models_dir}: format_version is {version}, this gicls serves "
            f"format_version {SERVED_FORMATS} (the bundle is newer); install the gicls that "
            f"wrote it, or rebuild it with {REBUILD_COMMAND}"
        )
    check_preprocessing(manifest, models_dir)


def check_preprocessing(manifest: Manifest, models_dir: Path) -> None:
    decode = manifest.preprocessing.get("decode")
    if decode != PREPROCESSING_ID:
        # The models learnt other pixels: only retraining makes the scores mean anything.
        raise ModelBundleError(
            f"bundle {models_dir}: preprocessing.decode is {decode!r}, this gicls decodes "
            f"with {PREPROCESSING_ID!r}; rebuild it with {REBUILD_COMMAND}"
        )
    in_graph = manifest.preprocessing.get("in_graph")
    if in_graph is not None and not known_transforms(in_graph):
        raise ModelBundleError(
            f"bundle {models_dir}: its models apply input transforms {in_graph.get('id')!r} "
            f"that this gicls does not implement; install the gicls that wrote it, or rebuild "
            f"it with {REBUILD_COMMAND}"
        )


def stage_bundle(models_dir: Path, keep: Iterable[str] = ()) -> Path:
    """Create an empty staging folder beside ``models_dir``, holding hard links to the files
    of the live bundle named in ``keep`` (paths relative to it; absent ones are skipped).

    A new bundle starts clean: nothing of the previous one (a removed class's files, an old
    evaluation) survives unless it is kept on purpose. Kept files must be unlinked before
    they are rewritten (``replace_in_stage``), so the live bundle's inodes are never written
    through a link.
    """
    models_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = models_dir.parent / f".{models_dir.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    for name in keep:
        source = models_dir / name
        if source.is_file():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            os.link(source, staging / name)
    return staging


def bundle_files(models_dir: Path) -> list[str]:
    """Every file of the bundle but its manifest, relative to it (what a migration keeps)."""
    return sorted(
        str(path.relative_to(models_dir))
        for path in models_dir.rglob("*")
        if path.is_file() and path != models_dir / MANIFEST_NAME
    )


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
