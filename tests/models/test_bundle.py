import json

import numpy as np
import pytest

from gicls.config import PreprocessConfig
from gicls.errors import ModelBundleError
from gicls.hashing import file_sha256
from gicls.models.bundle import (
    MANIFEST_NAME,
    bundle_files,
    publish_bundle,
    read_manifest,
    stage_bundle,
    verify_bundle,
)
from gicls.models.ensemble import FusedEnsemble
from gicls.models.transform_record import NO_TRANSFORMS

CLASSES = ("Bleeding", "Normal", "Polyp")


def test_manifest_round_trip_and_hashes_match_files(make_bundle):
    folder = make_bundle(CLASSES)
    manifest = verify_bundle(folder, CLASSES)
    assert manifest.classes == list(CLASSES)
    assert manifest.image_size == 32
    assert manifest == read_manifest(folder)
    for name in CLASSES:
        entry = manifest.models[name]
        assert entry.file == f"{name}_model.keras"
        assert file_sha256(folder / entry.file) == entry.sha256
    on_disk = json.loads((folder / MANIFEST_NAME).read_text())
    for key in (
        "classes",
        "image_size",
        "preprocessing",
        "architecture",
        "precision",
        "models",
        "bundle_id",
        "created_at",
        "code_version",
    ):
        assert key in on_disk


def test_modified_model_file_is_detected(make_bundle):
    folder = make_bundle(CLASSES)
    with (folder / "Normal_model.keras").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelBundleError, match=r"Normal_model\.keras has sha256"):
        verify_bundle(folder)


def test_missing_model_and_class_mismatch_are_refused(make_bundle):
    folder = make_bundle(CLASSES)
    with pytest.raises(ModelBundleError, match="trained for classes"):
        verify_bundle(folder, ("Bleeding", "Normal"))
    (folder / "Polyp_model.keras").unlink()
    with pytest.raises(ModelBundleError, match=r"Polyp_model\.keras is missing"):
        verify_bundle(folder)


def test_no_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(ModelBundleError, match="no model bundle"):
        verify_bundle(tmp_path / "Models")


def test_publish_replaces_the_live_bundle_whole_and_leaves_no_staging(make_bundle):
    folder = make_bundle(CLASSES, seed=0)
    first = read_manifest(folder).bundle_id
    make_bundle(CLASSES, models_dir=folder, seed=1)
    second = verify_bundle(folder).bundle_id
    assert first != second
    assert sorted(p.name for p in folder.parent.iterdir()) == ["Models"]


def test_staging_never_writes_through_to_the_live_bundle(make_bundle):
    folder = make_bundle(CLASSES)
    before = file_sha256(folder / "Normal_model.keras")
    staging = stage_bundle(folder, keep=bundle_files(folder))
    from gicls.models.bundle import replace_in_stage

    replace_in_stage(staging / "Normal_model.keras").write_bytes(b"new model")
    assert file_sha256(folder / "Normal_model.keras") == before
    publish_bundle(staging, folder)
    assert (folder / "Normal_model.keras").read_bytes() == b"new model"


# Bundles of the classic network and of one with the in-graph input transforms.
WITH_AND_WITHOUT_TRANSFORMS = pytest.mark.parametrize(
    "preprocess",
    [NO_TRANSFORMS, PreprocessConfig(field_of_view="circle", colour="grey_world")],
    ids=["classic", "with-transforms"],
)


@WITH_AND_WITHOUT_TRANSFORMS
def test_fused_ensemble_equals_the_models_called_one_by_one(make_bundle, preprocess):
    import keras

    folder = make_bundle(CLASSES, preprocess=preprocess)
    ensemble = FusedEnsemble.from_bundle(folder, CLASSES)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    fused = ensemble(images)
    assert fused.shape == (4, 3) and fused.dtype == np.float32
    for column, name in enumerate(CLASSES):
        single = keras.models.load_model(folder / f"{name}_model.keras")
        expected = single.predict(images.astype("float32"), verbose=0)[:, 0]
        np.testing.assert_allclose(fused[:, column], expected, rtol=1e-5, atol=1e-6)


@WITH_AND_WITHOUT_TRANSFORMS
def test_bfloat16_ensemble_agrees_with_float32(make_bundle, preprocess):
    folder = make_bundle(CLASSES, preprocess=preprocess)
    images = np.random.default_rng(1).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    exact = FusedEnsemble.from_bundle(folder)(images)
    fast = FusedEnsemble.from_bundle(folder, precision="bfloat16")(images)
    np.testing.assert_allclose(fast, exact, atol=0.03)
    assert not np.array_equal(fast, exact)  # it really computed in bfloat16


def test_bfloat16_twin_keeps_rescaling_and_head_in_float32(make_bundle):
    import keras

    from gicls.models.ensemble import reduced_precision_twin

    folder = make_bundle(CLASSES)
    model = keras.models.load_model(folder / f"{CLASSES[0]}_model.keras", compile=False)
    twin = reduced_precision_twin(model, "mixed_bfloat16")
    policies = {layer.__class__.__name__: layer.dtype_policy.name for layer in twin.layers}
    assert policies["Conv2D"] == "mixed_bfloat16"
    assert policies["Rescaling"] == policies["Dense"] == "float32"
    for original, copy in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(original, copy)


def _noise(size: int, count: int = 8) -> np.ndarray:
    return np.random.default_rng(2).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_argmax_agreement_counts_rows_with_the_same_winner():
    from gicls.models.ensemble import argmax_agreement

    a = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]], np.float32)
    b = np.array([[0.8, 0.2], [0.7, 0.3], [0.9, 0.1], [0.1, 0.9]], np.float32)
    assert argmax_agreement(a, b) == 0.75
    assert argmax_agreement(a[:0], b[:0]) == 1.0


def _decision_fields() -> dict:
    from gicls.models.preprocessing import PREPROCESSING_INFO

    return {
        "classes": ["Bleeding", "Normal"],
        "image_size": 32,
        "preprocessing": dict(PREPROCESSING_INFO),
        "architecture": "seed_cnn",
        "augment": {},
        "precision": "float32",
        "models": {
            "Bleeding": {"file": "Bleeding_model.keras", "sha256": "a" * 64},
            "Normal": {"file": "Normal_model.keras", "sha256": "b" * 64},
        },
        "calibration": None,
        "guard": {
            "frames": {"file": "guard/frames.npy", "sha256": "c" * 64},
            "scores": {"file": "guard/scores.npy", "sha256": "d" * 64},
            "images": 2,
        },
    }


def _model_changed(fields):
    fields["models"]["Normal"]["sha256"] = "e" * 64


def _class_order_changed(fields):
    fields["classes"].reverse()


def _calibrated(fields):
    fields["calibration"] = {"method": "temperature", "classes": {"Normal": {"scale": 1.5}}}


def _image_size_changed(fields):
    fields["image_size"] = 48


def _preprocessing_changed(fields):
    fields["preprocessing"]["rescale"] = "in-graph Rescaling(1/127.5, offset=-1)"


def _guard_frames_changed(fields):
    fields["guard"]["frames"]["sha256"] = "f" * 64


def _guard_scores_changed(fields):
    fields["guard"]["scores"]["sha256"] = "0" * 64


def _thresholds_set(fields):
    fields["thresholds"] = {"Bleeding": {"threshold": 0.3, "target_sensitivity": 0.95}}


def test_a_bundle_without_thresholds_keeps_the_id_it_had_before_thresholds_existed():
    from gicls.models.bundle import new_manifest

    # The id gicls gave these fields before the thresholds field (commit 3aa94ea): bundles
    # published then must keep verifying.
    assert new_manifest(**_decision_fields()).bundle_id == "ca05b0d1178e62b3"


def test_bundles_with_other_thresholds_have_other_ids():
    from gicls.models.bundle import new_manifest

    ids = set()
    for threshold in (0.3, 0.31):
        fields = _decision_fields()
        fields["thresholds"] = {"Normal": {"threshold": threshold, "target_sensitivity": 0.9}}
        ids.add(new_manifest(**fields).bundle_id)
    assert len(ids) == 2


@pytest.mark.parametrize(
    "change",
    [
        _model_changed,
        _class_order_changed,
        _calibrated,
        _image_size_changed,
        _preprocessing_changed,
        _guard_frames_changed,
        _guard_scores_changed,
        _thresholds_set,
    ],
)
def test_bundles_that_differ_in_anything_that_decides_have_different_ids(change):
    from gicls.models.bundle import new_manifest

    fields = _decision_fields()
    changed = _decision_fields()
    change(changed)
    assert new_manifest(**fields).bundle_id == new_manifest(**_decision_fields()).bundle_id
    assert new_manifest(**changed).bundle_id != new_manifest(**fields).bundle_id


def test_a_manifest_edited_after_training_no_longer_verifies(make_bundle):
    folder = make_bundle(CLASSES)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["image_size"] = 48  # the models were built for 32 px
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(ModelBundleError, match="bundle_id does not match"):
        verify_bundle(folder)


def test_a_bundle_published_between_verification_and_load_is_never_served(make_bundle, monkeypatch):
    from gicls.models import ensemble as ensemble_module
    from gicls.models.bundle import verify_bundle as real_verify

    folder = make_bundle(CLASSES, seed=0)
    other = make_bundle(CLASSES, models_dir=folder.parent / "Other", seed=1)
    images = _noise(32)
    verified = FusedEnsemble.from_bundle(folder)
    expected, expected_id = verified(images), verified.bundle_id
    assert not np.allclose(FusedEnsemble.from_bundle(other)(images), expected)

    def verify_then_publish_another(*args, **kwargs):
        manifest = real_verify(*args, **kwargs)
        staging = stage_bundle(other, keep=[*bundle_files(other), MANIFEST_NAME])
        publish_bundle(staging, folder)
        return manifest

    monkeypatch.setattr(ensemble_module, "verify_bundle", verify_then_publish_another)
    served = FusedEnsemble.from_bundle(folder, CLASSES)
    assert read_manifest(folder).bundle_id != expected_id  # the swap did happen
    assert served.bundle_id == expected_id
    np.testing.assert_array_equal(served(images), expected)


def test_a_manifest_naming_a_file_outside_the_bundle_is_refused(make_bundle):
    from gicls.models.bundle import new_manifest, write_manifest

    folder = make_bundle(CLASSES)
    outside = folder.parent / "Normal_model.keras"
    outside.write_bytes((folder / "Normal_model.keras").read_bytes())
    fields = read_manifest(folder).model_dump(mode="json", exclude={"bundle_id"})
    fields["models"]["Normal"]["file"] = "../Normal_model.keras"
    write_manifest(new_manifest(**fields), folder)
    with pytest.raises(ModelBundleError, match=r"\.\./Normal_model\.keras is outside the bundle"):
        verify_bundle(folder)
