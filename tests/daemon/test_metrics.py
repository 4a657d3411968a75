"""[daemon] metrics_file: Prometheus textfile metrics, from the metrics object to a real daemon."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gicls.config import parse_config
from gicls.daemon.metrics import WRITE_SECONDS, DaemonMetrics
from gicls.errors import ConfigError
from tests.daemon import harness
from tests.daemon.harness import wait_until


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} as a Prometheus scrape would read the file."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(path.read_text())
        for sample in family.samples
    }


def _by_label(samples: dict, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: value for (n, labels), value in samples.items() if n == name}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_counts_rows_batches_and_the_bundle_served(tmp_path: Path) -> None:
    clock = Clock()
    metrics = DaemonMetrics(tmp_path / "gicls.prom", clock)
    rows = [("classified", "Bleeding"), ("review", "Normal"), ("quarantined", "")]
    for status, predicted in rows:
        metrics.row_written({"status": status, "predicted_class": predicted})
    metrics.row_written({"status": "classified", "predicted_class": "Bleeding"})
    clock.now = 1010.0
    metrics.batch_done(files=4, seconds=0.3)
    metrics.serving("bundle-a")
    metrics.serving("bundle-b")  # a reload: only the new bundle is reported
    metrics.tick(waiting=7)

    samples = _samples(tmp_path / "gicls.prom")
    assert _by_label(samples, "gicls_files_total", "status") == {
        "classified": 2,
        "review": 1,
        "quarantined": 1,
    }
    assert _by_label(samples, "gicls_files_predicted_total", "condition") == {
        "Bleeding": 2,
        "Normal": 1,
    }
    assert _by_label(samples, "gicls_bundle_info", "bundle_id") == {"bundle-b": 1}
    assert samples[("gicls_queue_depth", ())] == 7
    assert samples[("gicls_batch_files_count", ())] == 1
    assert samples[("gicls_batch_files_sum", ())] == 4
    assert samples[("gicls_batch_seconds_bucket", (("le", "0.5"),))] == 1
    assert samples[("gicls_batch_seconds_bucket", (("le", "0.25"),))] == 0
    assert samples[("gicls_last_batch_timestamp_seconds", ())] == 1010.0


def test_the_file_is_rewritten_every_few_seconds_not_every_turn(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "gicls.prom"
    metrics = DaemonMetrics(path, clock)
    metrics.tick(waiting=1)
    metrics.tick(waiting=2)  # same instant: the file still says 1
    assert _samples(path)[("gicls_queue_depth", ())] == 1
    clock.now += WRITE_SECONDS
    metrics.tick(waiting=3)
    assert _samples(path)[("gicls_queue_depth", ())] == 3
    assert os.listdir(tmp_path) == ["gicls.prom"]  # the writer's temporary file is gone


def test_a_failed_write_is_logged_and_does_not_stop_anything(tmp_path: Path) -> None:
    clock = Clock()
    folder = tmp_path / "textfile"
    folder.mkdir()
    metrics = DaemonMetrics(folder / "gicls.prom", clock)
    folder.rmdir()
    metrics.tick(waiting=1)  # must not raise
    with pytest.raises(OSError):
        metrics.write(strict=True)
    folder.mkdir()
    clock.now += WRITE_SECONDS
    metrics.tick(waiting=5)
    assert _samples(folder / "gicls.prom")[("gicls_queue_depth", ())] == 5


def test_a_metrics_file_not_named_prom_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"daemon\.metrics_file.*\.prom"):
        parse_config({"daemon": {"metrics_file": "gicls.txt"}}, tmp_path / "config.toml")


@pytest.mark.slow
def test_a_daemon_reports_what_its_audit_log_says(tmp_path: Path, make_bundle) -> None:
    metrics_file = tmp_path / "textfile" / "gicls.prom"
    site = harness.write_config(tmp_path, make_bundle(), metrics_file=metrics_file)
    # The collector's folder is the operator's: without it the daemon refuses to start.
    refused = harness.DaemonProcess(site.config)
    assert refused.wait() != 0
    assert "daemon.metrics_file" in refused.output()

    metrics_file.parent.mkdir()
    daemon = harness.DaemonProcess(site.config)
    try:
        daemon.wait_ready()
        for n in range(6):
            (site.inbox / f"f{n}.png").write_bytes(harness.png(n))
        (site.inbox / "bad.png").write_bytes(b"not an image")

        def counted() -> float:
            return sum(_by_label(_samples(metrics_file), "gicls_files_total", "status").values())

        wait_until(lambda: counted() == 7, 60, "7 files in the metrics")
    finally:
        daemon.stop()
    rows = harness.read_audit(site.audit_log)
    samples = _samples(metrics_file)  # the last write, at stop
    statuses = Counter(row["status"] for row in rows)
    assert _by_label(samples, "gicls_files_total", "status") == statuses
    predicted = Counter(row["predicted_class"] for row in rows if row["predicted_class"])
    assert _by_label(samples, "gicls_files_predicted_total", "condition") == predicted
    # The quarantined row has no bundle, and it may be the first row.
    scored_by = {row["model_bundle"] for row in rows if row["model_bundle"]}
    assert set(_by_label(samples, "gicls_bundle_info", "bundle_id")) == scored_by
    assert samples[("gicls_queue_depth", ())] == 0
    assert samples[("gicls_batch_files_sum", ())] == 7
