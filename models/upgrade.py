"""Migrating a bundle written by an earlier release to the format this code serves.

Migration rewrites the manifest only and publishes it like a trained bundle (staged beside the
live one, swapped in whole), so a daemon never sees half a migration.
"""

from __future__ import annotations

from pathlib import Path

from gicls import __version__
from gicls.models.bundle import (
    OLDEST_SERVED_FORMAT,
    Manifest,
    bundle_files,
    check_model_files,
    check_preprocessing,
    check_servable,
    discard_stage,
    new_manifest,
    now_iso,
    publish_bundle,
    read_manifest,
    stage_bundle,
    write_manifest,
)


def upgrade_bundle(models_dir: Path) -> tuple[Manifest, bool]:
    """Rewrite a format 1 bundle as the current format, published like a trained one.

    Format 1 differs only in its manifest (no guard frames, a bundle id over the model files,
    class order and calibration only): the models, history, plots and evaluation are kept as
    they are. Returns the live manifest and whether it was migrated (a bundle already in the
    current format is left alone).
    """
    previous = read_manifest(models_dir)
    if previous.format_version >= OLDEST_SERVED_FORMAT:
        check_servable(previous, models_dir)  # a newer one is refused
        return previous, False
    # Migration keeps the models: they must be the ones the manifest describes, trained on
    # pixels decoded the way this code decodes.
    check_preprocessing(previous, models_dir)
    check_model_files(previous, models_dir)
    fields = previous.model_dump(mode="json", exclude={"bundle_id", "format_version"})
    fields["migrated_from"] = {
        "format_version": previous.format_version,
        "bundle_id": previous.bundle_id,
        "at": now_iso(),
        "code_version": __version__,
    }
    manifest = new_manifest(**fields)
    staging = stage_bundle(models_dir, keep=bundle_files(models_dir))
    try:
        write_manifest(manifest, staging)  # a rename: never writes through the link
        publish_bundle(staging, models_dir)
    except BaseException:
        discard_stage(staging)
        raise
    return manifest, True
