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


def _verdict(exact: list[list[float]], reduced: list[list[float]]):
    from gicls.models.guard import judge_agreement

    return judge_agreement(np.array(exact, np.float32), np.array(reduced, np.float32), "bfloat16")


def test_a_swap_on_a_near_tie_does_not_refuse_a_reduced_precision():
    # Frame 0 is a tie to 0.001 and swaps; frame 1 has a clear winner that stays.
    verdict = _verdict([[0.501, 0.500], [0.9, 0.2]], [[0.500, 0.501], [0.9, 0.2]])
    assert (verdict.frames, verdict.decided, verdict.agreeing, verdict.agreeing_all) == (2, 1, 1, 1)
    assert verdict.refused is None
    assert verdict.largest_difference == pytest.approx(0.001, abs=1e-6)


def test_a_swap_of_a_clear_winner_refuses_a_reduced_precision():
    # Frame 0: float32 prefers class 0 by 0.3, the reduced precision prefers class 1.
    verdict = _verdict([[0.6, 0.3], [0.9, 0.2]], [[0.44, 0.46], [0.9, 0.2]])
    assert (verdict.decided, verdict.agreeing) == (2, 1)
    assert verdict.refused == "disagrees_with_float32"


def test_a_score_that_moves_far_refuses_a_reduced_precision_even_with_the_same_winners():
    verdict = _verdict([[0.9, 0.1], [0.8, 0.3]], [[0.9, 0.1], [0.8, 0.5]])
    assert verdict.agreeing == verdict.decided == 2
    assert verdict.refused == "scores_differ"


def test_a_non_finite_reduced_score_refuses_a_reduced_precision():
    verdict = _verdict([[0.9, 0.1], [0.8, 0.3]], [[0.9, 0.1], [0.8, float("nan")]])
    assert verdict.refused is not None


def test_the_verdict_says_what_was_compared():
    verdict = _verdict(
        [[0.501, 0.500], [0.9, 0.2], [0.1, 0.7]], [[0.5, 0.501], [0.9, 0.2], [0.1, 0.7]]
    )
    text = verdict.describe()
    assert text.startswith("bfloat16 agrees with float32 on 2/2 frames with top-two margin > ")
    assert "; largest score difference 0.001 <= " in text


def _precision_sensitive_model(bias: float):
    """A model whose score needs float32 arithmetic: its 1x1 convolution weighs red by 1.0003
    and green by -1, so on frames with red == green it outputs 0.0003 * red in float32 but
    exactly 0 in bfloat16 or float16 (neither can hold 1.0003: it rounds to 1). The head
    (kept in float32) turns that into sigmoid(3 * red + bias) against sigmoid(bias)."""
    import keras

    inputs = keras.Input((32, 32, 3))
    pixels = keras.layers.Rescaling(1 / 255)(inputs)
    conv = keras.layers.Conv2D(1, 1, use_bias=False)
    features = keras.layers.GlobalAveragePooling2D()(conv(pixels))
    head = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inputs, head(features))
    conv.set_weights([np.array([1.0003, -1.0, 0.0], np.float32).reshape(1, 1, 3, 1)])
    head.set_weights([np.array([[10_000.0]], np.float32), np.array([bias], np.float32)])
    return model


def _bundle_with_a_precision_sensitive_member(make_bundle, bias: float):
    """CLASSES' untrained bundle with Bleeding's model replaced by ``_precision_sensitive_model``
    and white and grey guard frames (red == green) scored by it: a consistent bundle."""
    from gicls.models.ensemble import guard_fields

    folder = make_bundle(CLASSES)
    staging = stage_bundle(folder, keep=bundle_files(folder))
    target = replace_in_stage(staging / "Bleeding_model.keras")
    _precision_sensitive_model(bias).save(target)
    fields = read_manifest(folder).model_dump(mode="json", exclude={"bundle_id", "guard"})
    fields["models"]["Bleeding"]["sha256"] = file_sha256(target)
    frames = np.stack([np.full((32, 32, 3), level, np.uint8) for level in (255, 230, 204)])
    fields.update(guard_fields(staging, new_manifest(**fields), frames))
    write_manifest(new_manifest(**fields), staging)
    publish_bundle(staging, folder)
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_a_member_whose_reduced_precision_changes_the_winner_is_served_in_float32(
    make_bundle, precision
):
    # float32: Bleeding scores sigmoid(>= 1.4) >= 0.8, far above the untrained members' ~0.5;
    # reduced: sigmoid(-1) = 0.27, below them.
    folder = _bundle_with_a_precision_sensitive_member(make_bundle, bias=-1.0)
    ensemble = FusedEnsemble.from_bundle(folder, CLASSES, precision)
    assert ensemble.precision == "float32"
    assert ensemble.refused == "disagrees_with_float32"
    assert ensemble.verdict is not None and ensemble.verdict.agreeing == 0


@pytest.mark.slow
def test_a_member_whose_reduced_precision_moves_its_scores_far_is_served_in_float32(make_bundle):
    # Bleeding wins in both (float32 >= sigmoid(3.4) = 0.97, bfloat16 sigmoid(1) = 0.73), but
    # its score moves by 0.24.
    folder = _bundle_with_a_precision_sensitive_member(make_bundle, bias=1.0)
    ensemble = FusedEnsemble.from_bundle(folder, CLASSES, "bfloat16")
    assert ensemble.verdict is not None
    assert ensemble.verdict.agreeing == ensemble.verdict.decided == 3
    assert (ensemble.precision, ensemble.refused) == ("float32", "scores_differ")
