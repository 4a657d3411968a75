"""The conditions' fits as Ray tasks on the session's real two-node cluster (``ray_cluster``).

One small run per backend on the same data (2 conditions, 32 px, 1 epoch) is shared by the
tests of this module: the cluster's two one-CPU nodes take one fit each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from gicls.config import load_config
from gicls.errors import GiclsError
from gicls.models.bundle import check_servable, verify_bundle
from gicls.training.cli import app
from gicls.training.fit import log_epoch
from gicls.training.pipeline import fit_into, train_bundle

from .conftest import make_tree

CLASSES = ("Bleeding", "Normal")
# Per model file; what differs between two runs of the same fit is when it ran.
TIMING_FIELDS = ("sha256", "seconds", "trained_at")

pytestmark = pytest.mark.slow


def write_config(folder: Path, data: Path, backend: str, address: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.toml"
    path.write_text(
        f"classes = {json.dumps(list(CLASSES))}\n"
        f"[paths]\ntraining_dir = {json.dumps(str(data))}\n"
        "[balance]\ntarget_count = 16\n"
        "[train]\nimage_size = 32\nepochs = 1\n"
        f"[cluster]\nbackend = {json.dumps(backend)}\naddress = {json.dumps(address)}\n"
    )
    return path


@dataclass(frozen=True)
class Runs:
    ray: Path
    local: Path
    ray_log: list[dict[str, Any]]


@pytest.fixture(scope="module")
def runs(ray_cluster, tmp_path_factory) -> Iterator[Runs]:
    """`gicls-train all` once with each backend on the same data."""
    import ray

    root = tmp_path_factory.mktemp("ray_fits")
    data = make_tree(root / "data", {name: 8 for name in CLASSES}, size=32)
    runner = CliRunner()
    try:
        folders = {}
        for backend in ("ray", "local"):
            config = write_config(root / backend, data, backend, ray_cluster.address)
            result = runner.invoke(app, ["all", "-c", str(config)])
            assert result.exit_code == 0, result.output
            folders[backend] = (root / backend / "Models", result.stderr)
        ray_log = [
            json.loads(line) for line in folders["ray"][1].splitlines() if line.startswith("{")
        ]
        yield Runs(folders["ray"][0], folders["local"][0], ray_log)
    finally:
        ray.shutdown()


def test_gicls_train_all_on_the_cluster_publishes_a_servable_bundle(runs: Runs) -> None:
    manifest = verify_bundle(runs.ray, CLASSES)
    check_servable(manifest, runs.ray)
    assert manifest.is_complete() and manifest.metrics["validation"]
    # One task per condition, one on each of the two one-CPU nodes, and every epoch line of
    # each reached the driver's log.
    started = [e for e in runs.ray_log if e["event"] == "fit_started"]
    assert sorted(e["condition"] for e in started) == ["Bleeding [1/2]", "Normal [2/2]"]
    assert len({e["node"] for e in started}) == 2
    epochs = [e for e in runs.ray_log if e["event"] == "epoch_done"]
    assert sorted((e["condition"], e["epoch"]) for e in epochs) == [
        ("Bleeding [1/2]", "1/1"),
        ("Normal [2/2]", "1/1"),
    ]


def _without_timing(manifest: dict[str, Any]) -> dict[str, Any]:
    models = {
        name: {k: v for k, v in entry.items() if k not in TIMING_FIELDS}
        for name, entry in manifest["models"].items()
    }
    # bundle_id hashes the model files (which carry their save time), and the metrics name it;
    # created_at is a time.
    metrics = {k: v for k, v in manifest["metrics"]["validation"].items() if k != "bundle_id"}
    skipped = ("bundle_id", "created_at", "models", "metrics")
    kept = {k: v for k, v in manifest.items() if k not in skipped}
    return {**kept, "models": models, "metrics": metrics}


def test_the_cluster_bundle_is_the_local_bundle_but_for_timing(runs: Runs) -> None:
    ray_manifest = json.loads((runs.ray / "manifest.json").read_text())
    local_manifest = json.loads((runs.local / "manifest.json").read_text())
    # Exact: split, data summary, per-model fields (best epoch, losses, counts), calibration,
    # guard, thresholds, metrics, weights and histories: the same seed per condition makes the
    # same initial weights and batch order, and TensorFlow's CPU kernels, on this one machine,
    # give the same floats in a Ray worker as here (measured: bit-identical, so no tolerance;
    # another CPU type could differ in the last bits). Not equal, so not compared: the model
    # files' hashes and the bundle id over them (a .keras archive carries its save time), and
    # the times.
    assert _without_timing(ray_manifest) == _without_timing(local_manifest)
    assert (runs.ray / "split.csv").read_bytes() == (runs.local / "split.csv").read_bytes()
    for name in CLASSES:
        ray_model = keras.saving.load_model(runs.ray / f"{name}_model.keras")
        local_model = keras.saving.load_model(runs.local / f"{name}_model.keras")
        for ours, theirs in zip(ray_model.weights, local_model.weights, strict=True):
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=ours.path)
        history = f"history/{name}.csv"
        assert (runs.ray / history).read_text() == (runs.local / history).read_text()


def test_a_failing_fit_is_retried_once_then_named_and_nothing_is_published(
    ray_cluster, tmp_path
) -> None:
    import ray

    def fit_that_fails_for_normal(config, data, balanced, folder, label, report=log_epoch):
        # Runs on a Ray worker (pickled by value): what a fit that raises looks like there.
        if balanced.class_name == "Normal":
            # The cache arrives as a view of the object store: read-only, not a copy.
            raise RuntimeError(f"injected failure, writeable={data.cache.pixels.flags.writeable}")
        return fit_into(config, data, balanced, folder, label, report)

    data = make_tree(tmp_path / "data", {name: 8 for name in CLASSES}, size=32)
    config = load_config(write_config(tmp_path, data, "ray", ray_cluster.address))
    try:
        with capture_logs() as logs, pytest.raises(GiclsError) as raised:
            train_bundle(config, fit=fit_that_fails_for_normal)
    finally:
        ray.shutdown()
    message = str(raised.value)
    assert "Normal" in message and "RuntimeError: injected failure, writeable=False" in message
    attempts = [
        e["attempt"]
        for e in logs
        if e["event"] == "fit_started" and e["condition"].startswith("Normal")
    ]
    assert attempts == [1, 2]
    assert [e["condition"] for e in logs if e["event"] == "fit_retried"] == ["Normal [2/2]"]
    # Nothing published, and no stage left behind.
    assert not (tmp_path / "Models").exists()
    assert not list(tmp_path.glob(".Models.staging-*"))
