"""Guard frames: models that no longer reproduce their training-time scores are refused."""

from __future__ import annotations

import numpy as np
import pytest

from gicls.errors import ModelBundleError
from gicls.hashing import file_sha256
from gicls.models.bundle import (
    bundle_files,
    new_manifest,
    publish_bundle,
    read_manifest,
    replace_in_stage,
    stage_bundle,
    write_manifest,
)
from gicls.models.ensemble import FusedEnsemble

CLASSES = ("Bleeding", "Normal", "Polyp")


def test_a_bundle_whose_models_do_not_reproduce_their_guard_scores_is_refused(make_bundle):
    """Another model file under a consistent manifest (hashes and id match): what another
    Keras or decode looks like to the daemon. Only the stored scores can tell."""
    folder = make_bundle(CLASSES, seed=0)
    other = make_bundle(CLASSES, models_dir=folder.parent / "Other", seed=1)
    manifest = read_manifest(folder)
    staging = stage_bundle(folder, keep=bundle_files(folder))
    target = replace_in_stage(staging / "Normal_model.keras")
    target.write_bytes((other / "Normal_model.keras").read_bytes())
    fields = manifest.model_dump(mode="json", exclude={"bundle_id"})
    fields["models"]["Normal"]["sha256"] = file_sha256(target)
    write_manifest(new_manifest(**fields), staging)
    publish_bundle(staging, folder)

    with pytest.raises(ModelBundleError, match="score the stored guard frames") as caught:
        FusedEnsemble.from_bundle(folder, CLASSES)
    assert str(folder) in str(caught.value)
    assert "gicls-train all" in str(caught.value)


def test_a_bundle_reproducing_its_guard_scores_loads(make_bundle):
    folder = make_bundle(CLASSES)
    frames = np.load(folder / "guard" / "frames.npy")
    stored = np.load(folder / "guard" / "scores.npy")
    ensemble = FusedEnsemble.from_bundle(folder, CLASSES)
    np.testing.assert_allclose(ensemble(frames), stored, atol=1e-5)


def test_guard_frames_are_spread_over_the_classes():
    from gicls.models.guard import spread_over_classes

    labels = [0] * 200 + [1] * 3 + [2] * 200
    picked = spread_over_classes(labels, 128)
    chosen = [labels[i] for i in picked]
    assert len(picked) == len(set(picked)) == 128
    assert chosen.count(1) == 3  # a rare class is never left out
    assert abs(chosen.count(0) - chosen.count(2)) <= 1
    assert spread_over_classes([1, 0], 128) == [0, 1]
