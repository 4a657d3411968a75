"""`gicls-train evaluate` breaks its figures down by source (centre, data set)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from gicls.training.cli import app

from .conftest import make_tree, sort_into_sources

runner = CliRunner()
CLASSES = ("Bleeding", "Normal", "Polyp")


def tree_with_sources(root: Path) -> Path:
    """<Class>/<SOURCE>/img: Polyp comes from CENTRE_A only, one Normal file has no source."""
    make_tree(root, {c: 6 for c in CLASSES}, size=32)

    def source_of(name: str, n: int) -> str | None:
        if name == "Normal" and n == 5:
            return None
        return "CENTRE_A" if name == "Polyp" or n % 2 else "CENTRE_B"

    return sort_into_sources(root, source_of)


def config_file(folder: Path) -> Path:
    path = folder / "config.toml"
    path.write_text(
        f'classes = {json.dumps(list(CLASSES))}\n[paths]\nmodels_dir = "{folder / "Models"}"\n'
    )
    return path


def evaluate(tmp_path: Path, *extra: str):
    data = tree_with_sources(tmp_path / "data")
    out = tmp_path / "eval"
    args = ["evaluate", "--data", str(data), "--out", str(out), "-c", str(config_file(tmp_path))]
    return runner.invoke(app, [*args, *extra]), out


def test_figures_per_source_match_the_predictions_and_say_what_is_undefined(tmp_path, make_bundle):
    make_bundle(CLASSES, image_size=32)
    done, out = evaluate(tmp_path)
    assert done.exit_code == 0, done.output
    report = json.loads((out / "report.json").read_text())
    per_source = report["per_source"]
    assert set(per_source) == {"CENTRE_A", "CENTRE_B", "(none)"}
    assert sum(f["images"] for f in per_source.values()) == report["images"] == 18
    # Independently: each source's accuracy from the written predictions (names are unique).
    predictions = pd.read_excel(out / "predictions.xlsx")
    where = {}
    for path in (tmp_path / "data").rglob("*.png"):
        below = path.relative_to(tmp_path / "data").parts
        where[path.name] = (below[0], below[1] if len(below) == 3 else "(none)")
    truth = predictions["image_path"].map(lambda name: where[name][0])
    source_of = predictions["image_path"].map(lambda name: where[name][1])
    for source, figures in per_source.items():
        rows = source_of == source
        assert figures["images"] == rows.sum()
        expected = (predictions["predicted_class"][rows] == truth[rows]).mean()
        assert figures["accuracy"] == expected
    centre_b = per_source["CENTRE_B"]
    assert centre_b["classes_absent"] == ["Polyp"]
    assert centre_b["class_wise_metrics"]["Polyp"]["recall"] is None
    assert centre_b["class_wise_metrics"]["Polyp"]["auc"] is None
    assert centre_b["intervals"]["class_wise"]["Polyp"]["sensitivity"] is None
    assert per_source["(none)"]["images"] == 1
    assert per_source["(none)"]["intervals"]["accuracy"] is None  # one image: no interval
    assert "Per source" in done.output and "CENTRE_B" in done.output


def test_source_pattern_names_sources_and_a_bad_one_is_refused(tmp_path, make_bundle):
    make_bundle(CLASSES, image_size=32)
    done, out = evaluate(tmp_path, "--source-pattern", "_(Bleeding|Normal|Polyp)_")
    assert done.exit_code == 0, done.output
    per_source = json.loads((out / "report.json").read_text())["per_source"]
    assert set(per_source) == {*CLASSES, "(none)"}  # the loose file does not match
    assert per_source["Polyp"]["images"] == 6
    assert per_source["Polyp"]["classes_absent"] == ["Bleeding", "Normal"]
    refused, _ = evaluate(tmp_path / "again", "--source-pattern", "(a)(b)")
    assert refused.exit_code == 2
    assert "--source-pattern" in refused.output and "exactly one capture group" in refused.output
