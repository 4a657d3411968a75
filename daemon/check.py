"""``gicls-daemon check``: validate what ``run`` would, change nothing, say what it would do."""

from __future__ import annotations

from gicls.config import GiclsConfig
from gicls.daemon.journal import replay
from gicls.daemon.lock import StateLock
from gicls.daemon.route import DUPLICATES_FOLDER, QUARANTINE_FOLDER, REVIEW_FOLDER
from gicls.daemon.serving import served_precision
from gicls.daemon.settle import empty_timeout
from gicls.daemon.startup import Layout, check_layout
from gicls.models.bundle import verify_bundle


def _state(path_exists: bool) -> str:
    return "" if path_exists else " (will be created)"


def describe(config: GiclsConfig) -> list[str]:
    """Lines describing what ``run`` would do; raises the error ``run`` would stop with."""
    settings = config.daemon
    layout = Layout.of(settings)
    check_layout(layout)
    manifest = verify_bundle(config.paths.models_dir, config.classes)
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
        f"model bundle: {config.paths.models_dir} id {manifest.bundle_id}, "
        f"{len(manifest.classes)} models, image size {manifest.image_size}, hashes verified, "
        + served_precision(config.paths.models_dir, config.classes, config.inference.precision),
        f"inbox: {layout.inbox}{_state(layout.inbox.exists())}, watched with "
        f"{settings.observer}, rescanned every {settings.rescan_seconds:g} s",
        f"ready when unchanged for {settings.stability_seconds:g} s (empty files: "
        f"{empty_timeout(settings.stability_seconds):g} s); ignored: {', '.join(settings.ignore)}",
        f"batches: up to {settings.max_batch} images, or after {settings.max_wait_ms} ms",
        f"output: {layout.output_dir}{_state(layout.output_dir.exists())} with "
        f"{', '.join(config.classes)}, {REVIEW_FOLDER}, {QUARANTINE_FOLDER}/<reason>",
        f"review threshold: {threshold}",
        f"duplicates: {duplicates}",
        f"audit log: {layout.audit_log}{_state(layout.audit_log.exists())}",
        f"state: {layout.state_dir}{_state(layout.state_dir.exists())}, "
        f"{open_entries} unfinished journal entries to recover",
        "inbox, state and output are on one file system",
        "a daemon is running on this state folder now"
        if lock.held_elsewhere()
        else "no daemon is running on this state folder",
    ]
