"""score_submission: the official Capsule Vision 2024 scores, and every malformed-file case."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from gicls.config import DEFAULT_CLASSES
from gicls.errors import ScoringError
from gicls.training.score import (
    file_name,
    load_predictions,
    load_truth,
    score_submission,
    write_metrics_json,
)

CHALLENGE_DIR = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "capsule-vision-2024"
)
CHALLENGE_CLASSES = DEFAULT_CLASSES  # the challenge's ten classes, in its order
SUBMISSIONS = ("Capsule_Commandos", "PuppyOps", "Seq2Cure", "WueVision")

CLASSES = ("Bleeding", "Normal", "Polyp")
LABELS = ["Bleeding", "Bleeding", "Normal", "Normal", "Polyp", "Polyp", "Normal", "Normal"]
NAMES = [f"img{i}.jpg" for i in range(len(LABELS))]


def max_abs_difference(ours: Any, official: Any, where: str = "") -> float:
    """Largest |ours - official| over every number, asserting identical keys and nulls."""
    if isinstance(official, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(official), where
        return max(
            (max_abs_difference(ours[key], official[key], f"{where}/{key}") for key in official),
            default=0.0,
        )
    if official is None:
        assert ours is None, where
        return 0.0
    assert isinstance(ours, float), where
    assert math.isfinite(ours), where
    return abs(ours - official)


@pytest.mark.parametrize("team", SUBMISSIONS)
def test_reproduces_the_official_scores(team: str) -> None:
    if not CHALLENGE_DIR.is_dir():
        pytest.skip(f"{CHALLENGE_DIR} is absent (the challenge data lives beside the clone)")
    official_path = (
        CHALLENGE_DIR / "official_metrics" / f"{team}_predicted_test_dataset_metrics.json"
    )
    official = json.loads(official_path.read_text())

    ours = score_submission(
        CHALLENGE_DIR / "test_data.xlsx",
        CHALLENGE_DIR / "submissions" / f"{team}_predicted_test_dataset.xlsx",
        CHALLENGE_CLASSES,
    )

    assert max_abs_difference(ours, official) <= 1e-9


# --- small hand-made files -------------------------------------------------------------------


def truth_frame(labels: list[str] = LABELS, names: list[str] = NAMES) -> pd.DataFrame:
    # Windows-style folders, as in the challenge's own ground truth.
    paths = [f"Test set\\{label}\\{name}" for label, name in zip(labels, names, strict=True)]
    return pd.DataFrame({"image_path": paths, "class_label": labels})


def predictions_frame(labels: list[str] = LABELS, names: list[str] = NAMES) -> pd.DataFrame:
    """Perfect predictions (0.8 on the true class, 0.1 elsewhere), rows in reverse order."""
    rows = []
    for label, name in zip(labels, names, strict=True):
        row: dict[str, Any] = {"image_path": name}
        row.update({c: (0.8 if c == label else 0.1) for c in CLASSES})
        row["predicted_class"] = label
        rows.append(row)
    return pd.DataFrame(rows[::-1])


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_excel(path, index=False)
    return path


def score(tmp_path: Path, truth: pd.DataFrame, predictions: pd.DataFrame, suffix: str = ".xlsx"):
    truth_path = write(truth, tmp_path / f"truth{suffix}")
    predictions_path = write(predictions, tmp_path / f"predictions{suffix}")
    return score_submission(truth_path, predictions_path, CLASSES)


def scoring_error(tmp_path: Path, truth: pd.DataFrame, predictions: pd.DataFrame, **kw) -> str:
    with pytest.raises(ScoringError) as caught:
        score(tmp_path, truth, predictions, **kw)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_perfect_submission_in_any_row_order(tmp_path: Path, suffix: str) -> None:
    result = score(tmp_path, truth_frame(), predictions_frame(), suffix=suffix)

    assert result["balanced_accuracy"] == 1.0
    assert result["mean_auc"] == 1.0
    assert result["class_wise_metrics"]["Polyp"]["specificity"] == 1.0


def test_scores_use_the_probability_columns_not_predicted_class(tmp_path: Path) -> None:
    predictions = predictions_frame()
    predictions["predicted_class"] = "Normal"

    assert score(tmp_path, truth_frame(), predictions)["balanced_accuracy"] == 1.0


def test_one_wrong_row_changes_the_score(tmp_path: Path) -> None:
    predictions = predictions_frame()
    wrong = predictions["image_path"] == "img0.jpg"  # a Bleeding image, now called Normal
    predictions.loc[wrong, ["Bleeding", "Normal"]] = [0.1, 0.8]

    result = score(tmp_path, truth_frame(), predictions)

    assert result["class_wise_metrics"]["Bleeding"]["recall"] == 0.5
    assert result["balanced_accuracy"] == pytest.approx((0.5 + 1.0 + 1.0) / 3)


def test_file_name_accepts_both_separators() -> None:
    assert file_name("Test set\\Normal\\a b.jpg") == "a b.jpg"
    assert file_name("test/Normal/x.jpg") == "x.jpg"
    assert file_name("mixed/dir\\y.jpg") == "y.jpg"
    assert file_name("plain.jpg") == "plain.jpg"


def test_loaders_index_by_file_name(tmp_path: Path) -> None:
    truth = load_truth(write(truth_frame(), tmp_path / "t.csv"), CLASSES)
    predictions = load_predictions(write(predictions_frame(), tmp_path / "p.xlsx"), CLASSES)

    assert list(truth.index) == NAMES
    assert sorted(predictions.index) == sorted(NAMES)
    assert predictions["Normal"].dtype == "float64"


def test_write_metrics_json_round_trips_nulls(tmp_path: Path) -> None:
    metrics = {"mean_auc": 0.5, "class_wise_metrics": {"Polyp": {"auc": None}}}
    out = tmp_path / "deep" / "metrics.json"

    write_metrics_json(metrics, out)

    assert json.loads(out.read_text()) == metrics
    assert "null" in out.read_text()


# --- malformed files ----------------------------------------------------------------------------


def test_missing_images_are_counted_and_named(tmp_path: Path) -> None:
    many = [f"n{i}.jpg" for i in range(12)]
    truth = truth_frame(["Normal"] * 12, many)
    predictions = predictions_frame(["Normal"] * 5, many[:5])

    message = scoring_error(tmp_path, truth, predictions)

    assert "7 test image(s) missing" in message
    assert "n5.jpg, n6.jpg, n7.jpg, n8.jpg, n9.jpg, ... and 2 more" in message
    assert "n10.jpg" not in message


def test_extra_images_are_named(tmp_path: Path) -> None:
    predictions = pd.concat([predictions_frame(), predictions_frame(["Polyp"], ["stray.jpg"])])

    message = scoring_error(tmp_path, truth_frame(), predictions)

    assert "1 image(s) not in the ground truth (stray.jpg)" in message


def test_missing_class_columns_are_named(tmp_path: Path) -> None:
    predictions = predictions_frame().drop(columns=["Polyp", "Bleeding"])

    message = scoring_error(tmp_path, truth_frame(), predictions)

    assert "'Bleeding', 'Polyp'" in message
    assert "lacks column" in message


def test_missing_image_path_column_is_named(tmp_path: Path) -> None:
    predictions = predictions_frame().rename(columns={"image_path": "file"})

    assert "'image_path'" in scoring_error(tmp_path, truth_frame(), predictions)


def test_empty_probability_cell_names_row_and_column(tmp_path: Path) -> None:
    predictions = predictions_frame()
    predictions.loc[predictions.index[2], "Normal"] = None  # third data row: spreadsheet row 4

    message = scoring_error(tmp_path, truth_frame(), predictions)

    assert "row 4, column 'Normal' is empty" in message


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_non_numeric_probability_cell_names_row_and_column(tmp_path: Path, suffix: str) -> None:
    predictions = predictions_frame().astype({"Polyp": object})
    predictions.loc[predictions.index[0], "Polyp"] = "high"

    message = scoring_error(tmp_path, truth_frame(), predictions, suffix=suffix)

    assert "row 2, column 'Polyp' is not a finite number: 'high'" in message


def test_infinite_probability_is_refused(tmp_path: Path) -> None:
    predictions = predictions_frame()
    predictions.loc[predictions.index[1], "Bleeding"] = math.inf

    message = scoring_error(tmp_path, truth_frame(), predictions, suffix=".csv")

    assert "row 3, column 'Bleeding'" in message


def test_unknown_predicted_class_is_named(tmp_path: Path) -> None:
    predictions = predictions_frame()
    predictions.loc[predictions.index[5], "predicted_class"] = "Tumour"

    message = scoring_error(tmp_path, truth_frame(), predictions)

    assert "row 7: unknown predicted_class 'Tumour'" in message


def test_duplicate_prediction_rows_are_refused(tmp_path: Path) -> None:
    predictions = predictions_frame()
    predictions = pd.concat([predictions, predictions.iloc[[0]]])  # img7.jpg at rows 2 and 10

    message = scoring_error(tmp_path, truth_frame(), predictions)

    assert "more than once" in message
    assert "img7.jpg (rows 2, 10)" in message


def test_duplicate_file_names_in_the_truth_are_refused(tmp_path: Path) -> None:
    truth = truth_frame(["Normal", "Polyp"], ["same.jpg", "same.jpg"])

    message = scoring_error(tmp_path, truth, predictions_frame())

    assert "ground-truth" in message
    assert "same.jpg (rows 2, 3)" in message


def test_unknown_class_label_in_the_truth_is_named(tmp_path: Path) -> None:
    labels = [*LABELS[:-1], "Worms"]

    message = scoring_error(tmp_path, truth_frame(labels), predictions_frame())

    assert "unknown class_label value(s) 'Worms' (first at row 9)" in message


def test_unparseable_xlsx_is_refused(tmp_path: Path) -> None:
    truth_path = write(truth_frame(), tmp_path / "truth.xlsx")
    garbage = tmp_path / "predictions.xlsx"
    garbage.write_bytes(b"this is not a spreadsheet")

    with pytest.raises(ScoringError, match=r"cannot read predictions file .*predictions\.xlsx"):
        score_submission(truth_path, garbage, CLASSES)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    predictions_path = write(predictions_frame(), tmp_path / "predictions.xlsx")

    with pytest.raises(ScoringError, match="ground-truth file not found"):
        score_submission(tmp_path / "nowhere.xlsx", predictions_path, CLASSES)


def test_empty_csv_is_refused(tmp_path: Path) -> None:
    truth_path = write(truth_frame(), tmp_path / "truth.csv")
    empty = tmp_path / "predictions.csv"
    empty.write_text("")

    with pytest.raises(ScoringError, match="cannot read predictions file"):
        score_submission(truth_path, empty, CLASSES)


def test_header_only_file_is_refused(tmp_path: Path) -> None:
    truth_path = write(truth_frame().iloc[:0], tmp_path / "truth.csv")
    predictions_path = write(predictions_frame(), tmp_path / "predictions.csv")

    with pytest.raises(ScoringError, match="has no data rows"):
        score_submission(truth_path, predictions_path, CLASSES)


def test_unsupported_extension_is_refused(tmp_path: Path) -> None:
    truth_path = write(truth_frame(), tmp_path / "truth.csv")
    other = tmp_path / "predictions.json"
    other.write_text("{}")

    with pytest.raises(ScoringError, match=r"must be \.xlsx or \.csv, not \.json"):
        score_submission(truth_path, other, CLASSES)
