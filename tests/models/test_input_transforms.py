"""In-graph input transforms: what they do to pixels, that they survive saving, and that a
bundle needing transforms this code lacks is refused."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from gicls.config import PreprocessConfig
from gicls.errors import ModelBundleError
from gicls.models.architectures import CLASSIC_AUGMENT, build_model, known_architectures
from gicls.models.bundle import check_servable, read_manifest
from gicls.models.input_transforms import ColourNormalisation, FieldOfViewMask, disc_mask
from gicls.models.transform_record import preprocessing_info

SIZE = 32
MASKED = PreprocessConfig(field_of_view="circle", field_of_view_radius=0.4, colour="grey_world")


def frames(count: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.05, 0.95, (count, SIZE, SIZE, 3)).astype("float32")


def test_the_mask_blackens_exactly_the_outside_of_the_disc():
    images = frames()
    out = keras.ops.convert_to_numpy(FieldOfViewMask(0.4)(images))
    inside = disc_mask(SIZE, 0.4)[..., 0].astype(bool)
    assert 0.3 < inside.mean() < 0.6  # a disc, not the whole frame or nothing
    np.testing.assert_array_equal(out[:, inside], images[:, inside])
    assert not out[:, ~inside].any()


def test_grey_world_removes_a_colour_cast_and_brightness_keeps_colour_ratios():
    images = frames()
    cast = np.clip(images * np.array([1.0, 0.7, 0.5], "float32"), 0, 1)  # a warmer device
    grey = ColourNormalisation("grey_world", 0.4)

    def tone(batch: np.ndarray) -> np.ndarray:
        """The normalised frames up to their overall brightness (grey world keeps that)."""
        out = keras.ops.convert_to_numpy(grey(batch))
        return out / out.mean(axis=(1, 2, 3), keepdims=True)

    np.testing.assert_allclose(tone(cast), tone(images), atol=0.03)
    assert not np.allclose(cast / cast.mean(axis=(1, 2, 3), keepdims=True), tone(images), atol=0.03)
    brightness = ColourNormalisation("brightness", 0.4)
    darker = keras.ops.convert_to_numpy(brightness(images * 0.5))
    np.testing.assert_allclose(darker, keras.ops.convert_to_numpy(brightness(images)), rtol=0.01)
    red = np.concatenate([np.full((1, SIZE, SIZE, 1), 0.6), np.full((1, SIZE, SIZE, 2), 0.2)], -1)
    kept = keras.ops.convert_to_numpy(brightness(red.astype("float32")))
    assert kept[0, 16, 16, 0] == pytest.approx(3 * kept[0, 16, 16, 1], rel=1e-3)  # still red


@pytest.mark.parametrize("architecture", known_architectures())
def test_pixels_outside_the_field_of_view_cannot_change_a_score(architecture, tmp_path):
    plain = CLASSIC_AUGMENT.model_copy(update={"flip": "none", "rotation": 0.0})
    model = build_model(architecture, SIZE, plain, MASKED)
    images = (frames(seed=1) * 255).astype("float32")
    outside = ~disc_mask(SIZE, 0.4)[..., 0].astype(bool)
    other_border = images.copy()
    other_border[:, outside] = 255.0  # a white border and corner text of another device
    first = model.predict(images, verbose=0)
    np.testing.assert_allclose(model.predict(other_border, verbose=0), first, atol=1e-5)
    # Saved and loaded, the model still applies them.
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    np.testing.assert_allclose(loaded.predict(other_border, verbose=0), first, atol=1e-5)


def test_a_bundle_whose_models_need_transforms_this_code_lacks_is_refused(make_bundle):
    folder = make_bundle(("Bleeding", "Normal"))
    manifest = read_manifest(folder)
    check_servable(manifest, folder)  # format 2, no transforms: served as it is
    record = preprocessing_info(MASKED)
    served = manifest.model_copy(update={"format_version": 3, "preprocessing": record})
    check_servable(served, folder)
    unknown = {**record["in_graph"], "colour": "retinex", "id": "fov-circle-r0.4-colour-retinex-v9"}
    refused = served.model_copy(update={"preprocessing": {**record, "in_graph": unknown}})
    with pytest.raises(
        ModelBundleError, match=r"input transforms 'fov-circle-r0\.4-colour-retinex"
    ):
        check_servable(refused, folder)
    newer = served.model_copy(update={"format_version": 4})
    with pytest.raises(ModelBundleError, match=r"format_version is 4.*serves format_version 2-3"):
        check_servable(newer, folder)
