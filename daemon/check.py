"""``gicls-daemon check``: validate what ``run`` would, change nothing, say what it would do."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from gicls.audit.schema import SCHEMA_VERSION
from gicls.config import GiclsConfig
from gicls.daemon.audit_writer import append_target, log_segments
from gicls.daemon.journal import replay
from gicls.daemon.lock import StateLock
from gicls.daemon.route import DUPLICATES_FOLDER, QUARANTINE_FOLDER, REVIEW_FOLDER
from gicls.daemon.serving import open_ensemble, served_precision
from gicls.daemon.settle import empty_timeout
from gicls.daemon.startup import Layout, check_layout, existing_ancestor
from gicls.errors import DaemonError
from gicls.models.devices import use_device


def _state(path_exists: bool) -> str:
    return "" if path_exists else " (will be created)"


def _user() -> str:
    uid = os.geteuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _not_writable(path: Path, what: int) -> str | None:
    """Why the running user cannot write ``path`` (None if it can).

    access(2) with the effective ids answers for this process as the kernel would: it also
    refuses writes on read-only mounts (as systemd's ProtectSystem makes) and to immutable
    files, which permission bits do not show and which stop even root.
    """
    if os.access(path, what, effective_ids=True):
        return None
    return "read-only file system" if os.statvfs(path).f_flag & os.ST_RDONLY else "no permission"


def check_writable(layout: Layout, audit_target: Path) -> None:
    """Raise DaemonError naming each folder (or the audit log file) ``run`` could not write."""
    folders = {
        "daemon.inbox": layout.inbox,
        "daemon.output_dir": layout.output_dir,
        "daemon.state_dir": layout.state_dir,
        "daemon.audit_log": audit_target.parent,
    }
    problems = []
    for key, folder in folders.items():
        # A folder that does not exist yet is created in its nearest existing parent.
        where = existing_ancestor(folder)
        reason = _not_writable(where, os.W_OK | os.X_OK)
        if reason is not None:
            place = "" if where == folder.absolute() else f" (to be created in {where})"
            problems.append(f"{key} {folder}{place}: {reason}")
    if audit_target.exists():
        reason = _not_writable(audit_target, os.W_OK)
        if reason is not None:
            problems.append(f"daemon.audit_log {audit_target}: {reason}")
    if problems:
        raise DaemonError(f"not writable by {_user()}: " + "; ".join(problems))


def _audit_line(target: Path, older: list[str]) -> str:
    line = f"audit log: {target}{_state(target.exists())}, schema version {SCHEMA_VERSION}"
    if older:
        line += f"; earlier rows kept as they are in {', '.join(older)}"
    return line


def _flags_line(thresholds: dict[str, float], on_flag: bool) -> str:
    if not thresholds:
        return "flags: none (the bundle has no thresholds)"
    points = ", ".join(f"{name} >= {value:.3f}" for name, value in thresholds.items())
    lost = f"goes to {REVIEW_FOLDER}/" if on_flag else "is only logged (review_on_flag = false)"
    return f"flags: {points}; a flag that lost the argmax {lost}"


def _scoring_line(config: GiclsConfig) -> str:
    inference = config.inference
    if inference.backend == "local":
        return "scoring: local (in the daemon process)"
    gpus = f", {inference.gpus_per_actor:g} GPU" if inference.gpus_per_actor else ""
    return (
        f"scoring: ray, a pool of {inference.actors} actors "
        f"({inference.cpus_per_actor:g} CPU{gpus} each) "
        f"on the Ray cluster at {config.cluster.address}"
    )


def describe(config: GiclsConfig) -> list[str]:
    """Lines describing what ``run`` would do; raises the error ``run`` would stop with."""
    settings = config.daemon
    layout = Layout.of(settings)
    check_layout(layout)
    segments = log_segments(layout.audit_log, config.classes)
    audit_target = append_target(layout.audit_log, segments)
    check_writable(layout, audit_target)
    older = [f"{s.path} (schema version {s.version})" for s in segments if s.path != audit_target]
    # On the device run would use, loaded as run loads it (verified, guard frames checked, a
    # reduced precision guarded): one load says what the bundle is and what it really serves.
    device = use_device(config.inference.device, "inference.device")
    ensemble, precision = open_ensemble(
        config.paths.models_dir, config.classes, config.inference.precision
    )
    manifest = ensemble.manifest
    lock = StateLock(layout.state_dir)
    open_entries = len(replay(layout.journal))
    threshold = (
        f"top score below {settings.review_threshold} goes to {REVIEW_FOLDER}/"
        if settings.review_threshold > 0
        else "off (every image goes to its predicted folder)"
    )
    duplicates = (
        f"moved to {DUPLICATES_FOLDER}/ unclassified, with an audit row"
        if settings.on_duplicate == "skip"
        else "classified again, the audit row names the earlier copy"
    )
    return [
        "configuration: valid",
        f"device: {device.describe()}",
        f"model bundle: {config.paths.models_dir} id {manifest.bundle_id}, "
        f"{len(manifest.classes)} models, image size {manifest.image_size}, hashes verified, "
        + served_precision(ensemble, precision),
        _scoring_line(config),
        "input transforms in the models: "
        + ((manifest.preprocessing.get("in_graph") or {}).get("id") or "none"),
        f"inbox: {layout.inbox}{_state(layout.inbox.exists())}, watched with "
        f"{settings.observer}, rescanned every {settings.rescan_seconds:g} s",
        f"ready when unchanged for {settings.stability_seconds:g} s (empty files: "
        f"{empty_timeout(settings.stability_seconds):g} s); ignored: {', '.join(settings.ignore)}",
        f"batches: up to {settings.max_batch} images, or after {settings.max_wait_ms} ms",
        f"output: {layout.output_dir}{_state(layout.output_dir.exists())} with "
        f"{', '.join(config.classes)}, {REVIEW_FOLDER}, {QUARANTINE_FOLDER}/<reason>",
        f"review threshold: {threshold}",
        "review margin: "
        + (
            f"top two scores closer than {settings.review_margin} go to {REVIEW_FOLDER}/"
            if settings.review_margin > 0
            else "off"
        ),
        _flags_line(manifest.class_thresholds, settings.review_on_flag),
        f"duplicates: {duplicates}",
        _audit_line(audit_target, older),
        f"state: {layout.state_dir}{_state(layout.state_dir.exists())}, "
        f"{open_entries} unfinished journal entries to recover",
        "inbox, state and output are on one file system",
        "a daemon is running on this state folder now"
        if lock.held_elsewhere()
        else "no daemon is running on this state folder",
    ]
