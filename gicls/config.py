"""Configuration schema and loading.

The configuration is read once, validated completely and turned into frozen, typed objects
before any command does work, so a typo can never leave half-written output behind. A bad
value raises ConfigError whose message names the key, what is allowed and what was received.
Relative paths are resolved against the folder of the configuration file.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gicls.audit.schema import audit_columns
from gicls.errors import ConfigError

DEFAULT_CONFIG_NAME = "config.toml"
CONFIG_ENV_VAR = "GICLS_CONFIG"

DEFAULT_CLASSES = (
    "Angioectasia",
    "Bleeding",
    "Erosion",
    "Erythema",
    "Foreign Body",
    "Lymphangiectasia",
    "Normal",
    "Polyp",
    "Ulcer",
    "Worms",
)

# Names the daemon uses for its own folders next to the class folders.
RESERVED_FOLDER_PREFIX = "_"
# The audit log's columns other than the score columns (one per class).
AUDIT_FIXED_COLUMNS = tuple(audit_columns(()))


class _Section(BaseModel):
    # extra="forbid" turns a misspelt key into an error instead of a silently ignored line.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


PositiveInt = Annotated[int, Field(ge=1)]
Fraction = Annotated[float, Field(ge=0.0, lt=1.0)]
# TOML has no path type: paths arrive as strings and are the one place a conversion is wanted.
ConfigPath = Annotated[Path, Field(strict=False)]
# Where the models compute (gicls.models.devices): "auto" = a GPU when TensorFlow sees one,
# else the CPU; "gpu" refuses to start without one.
Device = Literal["auto", "cpu", "gpu"]


class PathsConfig(_Section):
    training_dir: ConfigPath = Path("training")
    validation_dir: ConfigPath | None = None
    balanced_dir: ConfigPath = Path("Balanced_Data")
    models_dir: ConfigPath = Path("Models")

    @field_validator("validation_dir", mode="before")
    @classmethod
    def _empty_means_none(cls, value: Any) -> Any:
        return None if value == "" else value


class BalanceConfig(_Section):
    # Images per side per condition, or "all": every training image once on its side, the
    # loss weighted so both sides count equally (gicls.training.balance).
    target_count: PositiveInt | Literal["all"] = 820
    # How the negative side is drawn from the other classes: "even" = the same number from
    # each, "prevalence" = in proportion to their training counts (Normal, the bulk of real
    # studies, then dominates as it does in a study), "sources" = the same number from each
    # (class, source) pair (source = first sub-folder of the class folder), so no device or
    # centre stands for "negative", "all" = every other training image once (loss-weighted).
    negatives: Literal["even", "prevalence", "sources", "all"] = "even"
    validation_fraction: Fraction = 0.2
    seed: int = 42
    materialize: Literal["hardlink", "symlink", "copy", "none"] = "hardlink"
    # Images whose 256-bit difference hashes differ in at most this many bits are treated as
    # one image by the split (near-identical video frames, re-encoded copies); 0 groups only
    # byte-identical files.
    near_duplicate_bits: Annotated[int, Field(ge=0, le=64)] = 10
    # What must stay on one side of the split besides near-duplicates (see
    # gicls.training.grouping): "folder" = the first sub-folder of a class folder (a patient,
    # a study, a source), "pattern" = the capture group of `group_pattern` in the file's path
    # relative to its class folder.
    group_by: Literal["none", "folder", "pattern"] = "none"
    group_pattern: str = ""

    @field_validator("group_pattern")
    @classmethod
    def _one_capture_group(cls, value: str) -> str:
        if value:
            compile_group_pattern(value)
        return value

    @model_validator(mode="after")
    def _negatives_used(self) -> BalanceConfig:
        # Only a negatives value the user set is refused: the default has no effect here.
        explicit = "negatives" in self.model_fields_set
        if self.target_count == "all" and explicit and self.negatives != "all":
            raise ValueError(
                f"'balance.negatives' = {self.negatives!r} has no effect with target_count = "
                "'all' (every training image is used once on its side); set a number of "
                "images per side or leave negatives at its default"
            )
        return self

    @model_validator(mode="after")
    def _pattern_when_grouping_by_pattern(self) -> BalanceConfig:
        if self.group_by == "pattern" and not self.group_pattern:
            raise ValueError(
                "group_by = 'pattern' needs 'balance.group_pattern' (a regular expression "
                "with one capture group)"
            )
        return self


def compile_group_pattern(text: str) -> re.Pattern[str]:
    """A regular expression with exactly one capture group (the group label), or ValueError."""
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise ValueError(f"not a regular expression ({exc})") from None
    if pattern.groups != 1:
        raise ValueError(f"needs exactly one capture group, has {pattern.groups}")
    return pattern


class TrainConfig(_Section):
    architecture: str = "seed_cnn"
    image_size: Annotated[int, Field(ge=32, le=1024)] = 128
    batch_size: PositiveInt = 32
    epochs: PositiveInt = 30
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 0.001
    early_stopping_patience: Annotated[int, Field(ge=0)] = 5
    reduce_lr_patience: Annotated[int, Field(ge=0)] = 2
    precision: Literal["float32", "mixed_bfloat16"] = "float32"
    # "plateau": halve the rate when val_loss stalls and stop early, restoring the best epoch
    # (the classic behaviour). "cosine": a fixed run of `epochs` with cosine decay to 1 % of
    # learning_rate and the last weights kept, so the validation split only measures.
    lr_schedule: Literal["plateau", "cosine"] = "plateau"
    # Decoupled weight decay (AdamW) when above 0; 0 keeps plain Adam.
    weight_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    device: Device = "auto"


class PreprocessConfig(_Section):
    # In-graph input transforms (gicls.models.input_transforms), identical in training and
    # inference because they are layers of the saved models, and recorded in the bundle.
    # "circle": everything outside a centred disc (radius a fraction of the side) is set to
    # black after augmentation, so every source's border and field-of-view shape look alike.
    field_of_view: Literal["none", "circle"] = "none"
    field_of_view_radius: Annotated[float, Field(gt=0.25, le=0.5)] = 0.45
    # "grey_world": each channel scaled so its mean inside the field of view equals the
    # frame's mean brightness there, removing a device's colour cast; "brightness": the
    # frame scaled to a common mean brightness, colour ratios kept (redness is a lesion cue).
    colour: Literal["none", "brightness", "grey_world"] = "none"


class AugmentConfig(_Section):
    flip: Literal["horizontal_and_vertical", "horizontal", "vertical", "none"] = (
        "horizontal_and_vertical"
    )
    # Fraction of a full turn, as keras.layers.RandomRotation takes it; 0 disables rotation.
    rotation: Annotated[float, Field(ge=0.0, le=0.5)] = 0.2
    # Random quarter turns per image (capsule frames have no "up"), for every architecture:
    # done on uint8 in the input pipeline, far cheaper than rotation inside the model.
    rot90: bool = False
    # Random square crop of side (1 - zoom)..1 of the frame, resized back (0 = off).
    zoom: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    # Mild colour jitter on [0, 1] pixels (0 = off): brightness shift +-b, contrast and
    # saturation scaled by 1 +- c / 1 +- s. Hue is never shifted: colour is the bleeding cue.
    brightness: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    contrast: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    saturation: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0


DEFAULT_IGNORE_PATTERNS = (".*", "*.tmp", "*.part", "*.crdownload", "~*", "*.swp")


DEFAULT_KEY_FRAMES_SKIP = ("Normal",)


class DaemonConfig(_Section):
    inbox: ConfigPath = Path("inbox")
    output_dir: ConfigPath = Path("output")
    state_dir: ConfigPath = Path("state")
    audit_log: ConfigPath = Path("audit_log.csv")
    max_batch: Annotated[int, Field(ge=1, le=4096)] = 32
    max_wait_ms: Annotated[int, Field(ge=0)] = 500
    stability_seconds: Annotated[float, Field(ge=0.0)] = 2.0
    rescan_seconds: Annotated[float, Field(gt=0.0)] = 60.0
    review_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    # Review when the top two calibrated scores are closer than this (0 = off).
    review_margin: Fraction = 0.0
    # Review when a class is above its bundle threshold (a flag) but another won the argmax.
    review_on_flag: bool = False
    observer: Literal["inotify", "polling"] = "inotify"
    ignore: tuple[str, ...] = DEFAULT_IGNORE_PATTERNS
    on_duplicate: Literal["process", "skip"] = "process"
    # Capsule videos: score every n-th frame (1 = every frame).
    video_frame_step: PositiveInt = 1
    # Key frames of a video: the best-scoring frames of each condition, at least
    # key_frame_min_gap_s apart so one long bleed does not fill the list (0 frames = none).
    key_frames_per_class: Annotated[int, Field(ge=0, le=10_000)] = 50
    key_frame_min_gap_s: Annotated[float, Field(ge=0.0)] = 5.0
    # Conditions that get no key frames (names from `classes`; absent names are ignored only
    # in this default, so a class list without Normal needs no change here).
    key_frames_skip_classes: tuple[str, ...] = DEFAULT_KEY_FRAMES_SKIP
    # A study (inbox/<study>/...) is complete once its folder has been quiet this long and all
    # its files are audited: its report is written and its emptied folders are removed.
    study_quiet_seconds: Annotated[float, Field(gt=0.0)] = 300.0
    # Replace study names (often patient identifiers) by a keyed hash everywhere gicls writes.
    pseudonymise_studies: bool = False
    # Prometheus metrics for dashboards and alerts, in node-exporter textfile format (a file,
    # not a port: the hardened unit keeps PrivateNetwork=yes). None = no metrics.
    metrics_file: ConfigPath | None = None

    @field_validator("metrics_file")
    @classmethod
    def _textfile_name(cls, path: Path | None) -> Path | None:
        # node_exporter's textfile collector reads *.prom only: another name is never seen.
        if path is not None and path.suffix != ".prom":
            raise ValueError(f"must end in .prom (node_exporter's textfile collector), not {path}")
        return path

    @model_validator(mode="after")
    def _quiet_longer_than_settling(self) -> DaemonConfig:
        if self.study_quiet_seconds <= self.stability_seconds:
            raise ValueError(
                f"'daemon.study_quiet_seconds' ({self.study_quiet_seconds}) must be longer than "
                f"'daemon.stability_seconds' ({self.stability_seconds}): a study cannot be "
                "quiet before its files have settled"
            )
        return self


class InferenceConfig(_Section):
    # "auto": bfloat16 on a CPU with native bfloat16, float16 on a GPU, float32 otherwise; a
    # reduced precision is served only where the guard frames accept it (gicls.models.guard).
    precision: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Device = "auto"
    # Who turns pixels into scores: "local" = the daemon process itself; "ray" = a pool of
    # `actors` fused ensembles on the Ray cluster at [cluster] address (daemon/ray_pool.py).
    # Claim, route, audit and the journal stay in the daemon either way.
    backend: Literal["local", "ray"] = "local"
    actors: int = Field(2, ge=1)
    cpus_per_actor: float = Field(1.0, gt=0)
    gpus_per_actor: float = Field(0.0, ge=0)


class ClusterConfig(_Section):
    # Where the Ray backends (training fan-out, inference pool) find their cluster: "auto" =
    # the cluster `ray start` made on this machine, "host:port" or "ray://host:port" = a remote
    # one, "local" = a private single-machine Ray started for this process (gicls.cluster).
    address: str = Field("auto", min_length=1)
    # Where `gicls-train fit`/`all` run the conditions' fits: "local" = one after the other in
    # this process, "ray" = one Ray task per condition on the cluster at `address`.
    backend: Literal["local", "ray"] = "local"
    # What Ray reserves for each fit task; fractions let several small fits share a core.
    cpus_per_fit: Annotated[float, Field(gt=0.0)] = 1.0
    gpus_per_fit: Annotated[float, Field(ge=0.0)] = 0.0


class CalibrationConfig(_Section):
    method: Literal["none", "temperature", "platt"] = "none"


Sensitivity = Annotated[float, Field(gt=0.0, le=1.0)]


class DecisionConfig(_Section):
    # Per class (optional): evaluation fits the largest threshold on the calibrated held-out
    # scores that keeps at least this share of that class's images above it; the bundle
    # stores it and the daemon flags every image above it (gicls.training.operating_points).
    target_sensitivity: dict[str, Sensitivity] = {}


class GiclsConfig(_Section):
    classes: tuple[str, ...] = DEFAULT_CLASSES
    paths: PathsConfig = PathsConfig()
    balance: BalanceConfig = BalanceConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    train: TrainConfig = TrainConfig()
    augment: AugmentConfig = AugmentConfig()
    daemon: DaemonConfig = DaemonConfig()
    inference: InferenceConfig = InferenceConfig()
    cluster: ClusterConfig = ClusterConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    decision: DecisionConfig = DecisionConfig()

    @field_validator("classes")
    @classmethod
    def _valid_class_names(cls, classes: tuple[str, ...]) -> tuple[str, ...]:
        if len(classes) < 2:
            raise ValueError(f"at least 2 classes are needed, got {len(classes)}")
        if len(set(classes)) != len(classes):
            dupes = sorted({c for c in classes if classes.count(c) > 1})
            raise ValueError(f"class names must be unique, repeated: {dupes}")
        for name in classes:
            # Class names become folder names: nothing may escape or hide in the output tree.
            if (
                not name.strip()
                or name != name.strip()
                or "/" in name
                or "\\" in name
                or "\0" in name
                or name in {".", ".."}
                or name.startswith((".", RESERVED_FOLDER_PREFIX))
            ):
                raise ValueError(
                    f"class name {name!r} cannot be a folder name (no slashes, no leading "
                    f"'.' or '{RESERVED_FOLDER_PREFIX}', no surrounding spaces)"
                )
        # Each class is also a score column of the audit log: a class named like one of the
        # log's own columns would give its header two columns of one name.
        clashing = [name for name in classes if name in AUDIT_FIXED_COLUMNS]
        if clashing:
            raise ValueError(
                f"class names {clashing} are also audit-log columns; rename them "
                f"(the log's own columns: {', '.join(AUDIT_FIXED_COLUMNS)})"
            )
        return classes


def _key_of(location: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in location)


def _describe(error: dict[str, Any], model: type[BaseModel]) -> str:
    key = _key_of(error["loc"])
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(model, error["loc"][:-1])
        return f"unknown key '{key}' (allowed here: {', '.join(allowed)})"
    message = error["msg"].removeprefix("Value error, ")
    return f"key '{key}': {message}; got {error['input']!r}"


def _allowed_keys(model: type[BaseModel], section: tuple[int | str, ...]) -> list[str]:
    current: type[BaseModel] = model
    for part in section:
        annotation = current.model_fields[str(part)].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return list(current.model_fields)


def _resolve(path: Path | None, base: Path) -> Path | None:
    if path is None:
        return None
    path = path.expanduser()
    return path if path.is_absolute() else (base / path)


def parse_config(data: dict[str, Any], source: Path | None = None) -> GiclsConfig:
    """Validate a TOML document already parsed into ``data``; resolve relative paths."""
    base = source.parent if source is not None else Path.cwd()
    label = str(source) if source is not None else "configuration"
    try:
        # Lists in TOML arrive as lists; the frozen schema keeps them as tuples.
        config = GiclsConfig.model_validate(_lists_to_tuples(data))
    except ValidationError as exc:
        problems = [_describe(error, GiclsConfig) for error in exc.errors()]
        raise ConfigError(f"{label}: " + "; ".join(problems)) from None
    _check_decision_classes(config, label)
    _check_key_frame_classes(config, label)
    paths = config.paths
    daemon = config.daemon
    return config.model_copy(
        update={
            "paths": paths.model_copy(
                update={
                    name: _resolve(getattr(paths, name), base)
                    for name in ("training_dir", "validation_dir", "balanced_dir", "models_dir")
                }
            ),
            "daemon": daemon.model_copy(
                update={
                    name: _resolve(getattr(daemon, name), base)
                    for name in ("inbox", "output_dir", "state_dir", "audit_log", "metrics_file")
                }
            ),
        }
    )


def _check_key_frame_classes(config: GiclsConfig, label: str) -> None:
    skipped = config.daemon.key_frames_skip_classes
    if skipped == DEFAULT_KEY_FRAMES_SKIP:
        return
    unknown = [name for name in skipped if name not in config.classes]
    if unknown:
        raise ConfigError(
            f"{label}: key 'daemon.key_frames_skip_classes': not configured classes {unknown} "
            f"(classes: {', '.join(config.classes)}); got {list(skipped)!r}"
        )


def _check_decision_classes(config: GiclsConfig, label: str) -> None:
    # Checked after validation: the keys are only known to be wrong against ``classes``.
    for name, value in config.decision.target_sensitivity.items():
        if name not in config.classes:
            raise ConfigError(
                f"{label}: key 'decision.target_sensitivity.{name}': not a configured class "
                f"(classes: {', '.join(config.classes)}); got {value!r}"
            )


def _lists_to_tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _lists_to_tuples(item) for key, item in value.items()}
    if isinstance(value, list):
        return tuple(_lists_to_tuples(item) for item in value)
    return value


def default_config_path() -> Path:
    """The config used when none is named: $GICLS_CONFIG, else ./config.toml."""
    return Path(os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_NAME)


def load_config(path: Path | None = None) -> GiclsConfig:
    """Read and validate a configuration file (see config.toml for every key)."""
    path = (path or default_config_path()).expanduser()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file {path} does not exist (pass --config/-c PATH or set "
            f"{CONFIG_ENV_VAR})"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, source=path.resolve())
