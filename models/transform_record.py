"""What a bundle records of its models' in-graph input transforms, without loading Keras.

The transforms themselves are layers (gicls.models.input_transforms); the bundle, the audit
package and ``gicls-daemon check`` only need their description, and must not pay for
importing TensorFlow to read it.
"""

from __future__ import annotations

from typing import Any

from gicls.config import PreprocessConfig
from gicls.models.preprocessing import PREPROCESSING_INFO

# No in-graph transform: the classic networks, layer for layer.
NO_TRANSFORMS = PreprocessConfig(field_of_view="none", colour="none")
# Version of the arithmetic of gicls.models.input_transforms; part of the id a bundle records.
TRANSFORMS_VERSION = 1


def preprocessing_info(preprocess: PreprocessConfig) -> dict[str, Any]:
    """The manifest's ``preprocessing``: decoding, plus the in-graph transforms when any."""
    record = transforms_record(preprocess)
    return PREPROCESSING_INFO if record is None else {**PREPROCESSING_INFO, "in_graph": record}


def transforms_record(preprocess: PreprocessConfig) -> dict[str, Any] | None:
    """What a bundle's manifest records of the in-graph transforms (None: there are none)."""
    if preprocess.field_of_view == "none" and preprocess.colour == "none":
        return None
    settings = preprocess.model_dump()
    parts = [
        f"fov-{settings['field_of_view']}",
        f"r{settings['field_of_view_radius']:g}",
        f"colour-{settings['colour']}",
    ]
    return {"id": f"{'-'.join(parts)}-v{TRANSFORMS_VERSION}", **settings}


def known_transforms(record: dict[str, Any]) -> bool:
    """Whether a bundle's ``preprocessing.in_graph`` is exactly what this code applies."""
    settings = {key: value for key, value in record.items() if key != "id"}
    try:
        expected = transforms_record(PreprocessConfig(**settings))
    except ValueError:  # pydantic's ValidationError: settings this code does not have
        return False
    return expected == record
