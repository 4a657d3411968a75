"""Swapping bundles between batches: a new bundle is taken, a broken one refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gicls.daemon.serving import ServingModel
from gicls.models.bundle import publish_bundle, read_manifest, replace_in_stage, stage_bundle
from tests.daemon.harness import CLASSES, wait_until


def _publish_broken(models_dir: Path) -> None:
    """A bundle whose manifest no longer matches one model file (a botched copy)."""
    staging = stage_bundle(models_dir)
    entry = read_manifest(staging).models[CLASSES[0]]
    replace_in_stage(staging / entry.file).write_bytes(b"not a keras file")
    publish_bundle(staging, models_dir)


def _refreshed(serving: ServingModel, force: bool = False) -> bool:
    """``refresh`` as the loop calls it, until the load it started (if any) is adopted."""
    swapped = serving.refresh(force)
    wait_until(lambda: not serving.loading, 60, "the background load")
    return serving.refresh() or swapped


def test_new_bundles_are_swapped_in_and_broken_ones_refused(make_bundle) -> None:
    models_dir = make_bundle(CLASSES, seed=0)
    serving = ServingModel(models_dir, CLASSES, "float32")
    first = serving.bundle_id
    assert not _refreshed(serving)

    make_bundle(CLASSES, models_dir=models_dir, seed=1)
    assert not serving.refresh()  # the load has only started: the old bundle still serves
    assert serving.loading and serving.bundle_id == first
    wait_until(lambda: not serving.loading, 60, "the background load")
    assert serving.refresh()
    second = serving.bundle_id
    assert second != first

    _publish_broken(models_dir)
    assert not _refreshed(serving)
    assert serving.bundle_id == second
    assert not _refreshed(serving, force=True)  # SIGHUP retries, and refuses again
    images = np.zeros((2, 32, 32, 3), np.uint8)
    assert serving.ensemble(images).shape == (2, len(CLASSES))  # the old one still serves


def test_the_bfloat16_guard_sample_is_the_same_frames_on_every_start() -> None:
    from gicls.daemon.serving import guard_sample

    first, again = guard_sample(32, 6), guard_sample(32, 6)
    assert first.shape == (6, 32, 32, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert len({frame.tobytes() for frame in first}) == 6


def test_a_bfloat16_bundle_is_guarded_at_load(make_bundle) -> None:
    models_dir = make_bundle(CLASSES)
    serving = ServingModel(models_dir, CLASSES, "bfloat16")
    ensemble = serving.ensemble
    assert ensemble.bfloat16_agreement is not None
    expected = "bfloat16" if ensemble.bfloat16_agreement >= 0.995 else "float32"
    assert ensemble.precision == expected
