"""Score a Capsule Vision 2024 style submission against its ground truth.

Ground truth: ``image_path`` (any path, Windows or POSIX) and ``class_label``. Predictions:
``image_path``, one probability column per class and optionally ``predicted_class``. Both may be
``.xlsx`` or ``.csv``. Rows are matched by the file name at the end of ``image_path`` (after the
last ``/`` or ``\\``). Every problem with the files raises ``ScoringError`` with a one-line
message naming the file, row or column at fault; nothing is scored from a partly valid file.

Row numbers in messages are spreadsheet rows: the header is row 1, the first data row is row 2.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gicls.errors import ScoringError, listing
from gicls.training.metrics import challenge_metrics

PathLike = str | os.PathLike[str]

IMAGE_PATH = "image_path"
CLASS_LABEL = "class_label"
PREDICTED_CLASS = "predicted_class"
FILE_NAME = "file_name"
_HEADER_ROWS = 2  # data row i (0-based) is spreadsheet row i + 2


def file_name(image_path: str) -> str:
    """The part of ``image_path`` after its last ``/`` or ``\\``."""
    return re.split(r"[\\/]", image_path)[-1]


def _read_table(path: PathLike, what: str) -> pd.DataFrame:
    """Read an ``.xlsx``/``.xlsm`` or ``.csv`` file, text columns kept as text."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".xlsx", ".xlsm", ".csv"}:
        raise ScoringError(f"{what} file {path} must be .xlsx or .csv, not {suffix or 'no suffix'}")
    if not path.is_file():
        raise ScoringError(f"{what} file not found: {path}")
    text_columns = {IMAGE_PATH: str, CLASS_LABEL: str, PREDICTED_CLASS: str}
    try:
        if suffix == ".csv":
            table = pd.read_csv(path, dtype=text_columns)
        else:
            table = pd.read_excel(path, dtype=text_columns, engine="openpyxl")
    # The readers raise a zoo of types (BadZipFile, ParserError, UnicodeDecodeError, openpyxl's
    # InvalidFileException, ...); to the user they all mean "this file cannot be parsed".
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ScoringError(f"cannot read {what} file {path}: {detail}") from exc
    if table.empty:
        raise ScoringError(f"{what} file {path} has no data rows")
    return table


def _require_columns(
    table: pd.DataFrame, columns: Sequence[str], path: PathLike, what: str
) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        found = ", ".join(repr(str(column)) for column in table.columns)
        raise ScoringError(
            f"{what} file {Path(path).name} lacks column(s) "
            f"{', '.join(repr(c) for c in missing)} (found: {found})"
        )


def _index_by_file_name(table: pd.DataFrame, path: PathLike, what: str) -> pd.DataFrame:
    """Index by the file name at the end of ``image_path``; refuse blank or repeated names."""
    name = Path(path).name
    blank = table[IMAGE_PATH].isna() | (table[IMAGE_PATH].astype(str).str.strip() == "")
    if blank.any():
        rows = [i + _HEADER_ROWS for i in np.flatnonzero(blank.to_numpy())]
        raise ScoringError(f"{what} file {name} has an empty image_path at row(s) {listing(rows)}")
    table = table.copy()
    table[FILE_NAME] = table[IMAGE_PATH].astype(str).str.strip().map(file_name)
    blank = table[FILE_NAME] == ""
    if blank.any():
        rows = [i + _HEADER_ROWS for i in np.flatnonzero(blank.to_numpy())]
        raise ScoringError(
            f"{what} file {name} has an image_path ending in / or \\ at row(s) {listing(rows)}"
        )
    repeated = table[FILE_NAME][table[FILE_NAME].duplicated(keep=False)]
    if not repeated.empty:
        groups = [
            f"{fname} (rows {', '.join(str(i + _HEADER_ROWS) for i in positions)})"
            for fname, positions in _positions(repeated).items()
        ]
        raise ScoringError(
            f"{what} file {name} lists {len(groups)} image file name(s) more than once: "
            f"{listing(groups)}"
        )
    return table.set_index(FILE_NAME, drop=False)


def _positions(series: pd.Series) -> dict[str, list[int]]:
    """0-based row positions of each value of ``series`` (a slice of a RangeIndex table)."""
    groups: dict[str, list[int]] = {}
    for position, value in zip(series.index, series, strict=True):
        groups.setdefault(value, []).append(int(position))
    return groups


def load_truth(path: PathLike, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a ground-truth file (``image_path``, ``class_label``).

    Returns the table indexed by file name (also in column ``file_name``), in file order.
    When ``class_names`` is given, every ``class_label`` must be one of them.
    """
    table = _read_table(path, "ground-truth")
    _require_columns(table, [IMAGE_PATH, CLASS_LABEL], path, "ground-truth")
    table = _index_by_file_name(table.reset_index(drop=True), path, "ground-truth")
    if class_names is not None:
        labels = table[CLASS_LABEL]
        unknown = ~labels.isin(list(class_names))
        if unknown.any():
            first_rows: dict[str, int] = {}
            for position in np.flatnonzero(unknown.to_numpy()):
                value = labels.iloc[position]
                shown = "<empty>" if _is_blank(value) else repr(value)
                first_rows.setdefault(shown, int(position) + _HEADER_ROWS)
            described = [f"{value} (first at row {row})" for value, row in first_rows.items()]
            raise ScoringError(
                f"ground-truth file {Path(path).name} has unknown class_label value(s) "
                f"{listing(described)}; expected one of: {', '.join(class_names)}"
            )
    return table


def load_predictions(path: PathLike, class_names: Sequence[str]) -> pd.DataFrame:
    """Read a predictions file (``image_path``, one column per class, optional ``predicted_class``).

    Returns the table indexed by file name (also in column ``file_name``), in file order, with the
    class columns as float64. Every probability cell must be a finite number; a
    ``predicted_class``, when the column exists, must name one of ``class_names``.
    """
    name = Path(path).name
    table = _read_table(path, "predictions")
    _require_columns(table, [IMAGE_PATH, *class_names], path, "predictions")
    table = _index_by_file_name(table.reset_index(drop=True), path, "predictions")
    for column in class_names:
        raw = table[column]
        numbers = pd.to_numeric(raw, errors="coerce")
        bad = numbers.isna() | ~np.isfinite(numbers.to_numpy(dtype=np.float64, na_value=np.nan))
        if bad.any():
            position = int(np.flatnonzero(bad.to_numpy())[0])
            value = raw.iloc[position]
            problem = "is empty" if _is_blank(value) else f"is not a finite number: {value!r}"
            raise ScoringError(
                f"predictions file {name} row {position + _HEADER_ROWS}, column {column!r} "
                f"{problem} ({int(bad.sum())} bad cell(s) in that column)"
            )
        table[column] = numbers.astype(np.float64)
    if PREDICTED_CLASS in table.columns:
        predicted = table[PREDICTED_CLASS]
        unknown = ~predicted.isin(list(class_names))
        if unknown.any():
            position = int(np.flatnonzero(unknown.to_numpy())[0])
            value = predicted.iloc[position]
            shown = "<empty>" if _is_blank(value) else repr(value)
            raise ScoringError(
                f"predictions file {name} row {position + _HEADER_ROWS}: unknown predicted_class "
                f"{shown} ({int(unknown.sum())} such row(s)); expected one of: "
                f"{', '.join(class_names)}"
            )
    return table


def _is_blank(value: object) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return True
    return isinstance(value, str) and value.strip() == ""


def score_submission(
    truth_path: PathLike, predictions_path: PathLike, class_names: Sequence[str]
) -> dict[str, Any]:
    """Score a predictions file against a ground-truth file.

    Args:
        truth_path: ``.xlsx``/``.csv`` with ``image_path`` and ``class_label``.
        predictions_path: ``.xlsx``/``.csv`` with ``image_path``, one probability column per
            class (named exactly as in ``class_names``) and optionally ``predicted_class``.
        class_names: the classes, in the order of ``challenge_metrics``' output.

    Returns:
        The organisers' metrics dictionary (see ``gicls.training.metrics.challenge_metrics``).

    Raises:
        ScoringError: either file is unreadable or malformed, or the two sets of images differ.
    """
    class_names = list(class_names)
    truth = load_truth(truth_path, class_names)
    predictions = load_predictions(predictions_path, class_names)

    missing = truth.index.difference(predictions.index, sort=False)
    extra = predictions.index.difference(truth.index, sort=False)
    if len(missing) or len(extra):
        problems = []
        if len(missing):
            problems.append(f"{len(missing)} test image(s) missing ({listing(missing)})")
        if len(extra):
            problems.append(f"{len(extra)} image(s) not in the ground truth ({listing(extra)})")
        raise ScoringError(
            f"predictions file {Path(predictions_path).name} does not cover the "
            f"{len(truth)} ground-truth images: {'; '.join(problems)}"
        )

    aligned = predictions.loc[truth.index]
    index_of = {label: i for i, label in enumerate(class_names)}
    y_true = truth[CLASS_LABEL].map(index_of).to_numpy(dtype=np.int64)
    probabilities = aligned[class_names].to_numpy(dtype=np.float64)
    return challenge_metrics(y_true, probabilities, class_names)


def write_metrics_json(metrics: dict[str, Any], path: PathLike) -> None:
    """Write ``metrics`` as indented JSON (undefined values are already None, i.e. null)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(metrics, indent=4, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)
