"""bench/e2e.py: the configs it writes are valid, and the table states every figure."""

from __future__ import annotations

from bench import e2e, fixtures, training_speed
from bench.daemon_runs import count_rows, write_site
from gicls.config import load_config


def test_the_daemon_sites_are_valid_configs_under_their_root(tmp_path):
    config = write_site(
        tmp_path / "site",
        tmp_path / "Models",
        {"max_batch": 8, "stability_seconds": 0.0},
        {"precision": "bfloat16"},
    )
    loaded = load_config(config)
    assert loaded.daemon.inbox == tmp_path / "site" / "inbox"
    assert loaded.daemon.max_batch == 8 and loaded.daemon.stability_seconds == 0.0
    assert loaded.inference.precision == "bfloat16"
    assert loaded.paths.models_dir == tmp_path / "Models"


def test_rows_are_counted_by_line_end_without_the_header(tmp_path):
    log = tmp_path / "audit.csv"
    assert count_rows(log) == 0
    log.write_bytes(b"a,b\r\n1,2\r\n3,4\r\n")
    assert count_rows(log) == 2


def test_images_are_224_px_jpegs_and_reproducible(tmp_path):
    from PIL import Image

    first = fixtures.write_images(tmp_path / "one", 3)
    again = fixtures.write_images(tmp_path / "two", 3)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in again]
    with Image.open(first[0]) as image:
        assert image.format == "JPEG" and image.size == (224, 224)


def test_the_table_reports_every_figure_and_ratio():
    results = {
        "n": 10,
        "machine": "test cpu",
        "load_before": "0.1",
        "load_after": "0.2",
        "a": 1.0,
        "b": 20.0,
        "b_bf16": 50.0,
        "c": 18.0,
        "d": 40.0,
        "d_served": "bfloat16",
        "agreement": 1.0,
        "d_guard": 1.0,
        "rss_c": 900.0,
        "rss_d": 950.0,
        "f": {
            "stability_seconds": 2.0,
            "max_wait_ms": 500,
            "drop_p50": 2300.0,
            "drop_p95": 3400.0,
            "settled_p50": 90.0,
            "settled_p95": 120.0,
            "peak_rss_mib": 800.0,
        },
        "scale_5000": {"peak_rss_mib": 1000.0},
        "scale_50000": {"peak_rss_mib": 1050.0},
        "e": {
            name: {"rate": 10.0 + k, "best_rate": 20.0 + 4 * k}
            for k, name in enumerate(training_speed.ROW_LABELS)  # classic is 10 / 20 img/s
        },
    }
    table = e2e.render(results, None)
    assert "c / a   (>= 15)" in table and "18.0" in table
    assert "c / b   (>= 0.85)" in table and "0.90" in table
    assert "d / c   (>= 1.6, agreement >= 99.5 %)" in table and "2.22" in table
    assert "MISSED" in table  # 3400 ms > 2000 + 1000 ms
    assert "1.050" in table  # RSS ratio
    assert "e  gicls / classic, mean / fastest   (>= 1.5)" in table and "1.10 / 1.20" in table
    assert "gicls_dihedral_bf16 / classic, mean / fastest   (>= 1.5)" in table
    assert "1.40 / 1.80" in table
    # The ceiling is a bound, not a goal.
    ceiling_row = table.split("e  ceiling_float32 / classic")[1].splitlines()[0]
    assert "(>= 1.5)" not in ceiling_row and "1.50 / 2.00" in ceiling_row
    for label in training_speed.ROW_LABELS.values():
        assert label in table


def test_training_rate_skips_the_tracing_epoch_and_the_validation_pass():
    figures = training_speed.rate(64, [9.0, 2.5, 3.0], [0.5, 0.5, 1.0])
    assert figures["train_seconds"] == [2.0, 2.0]
    assert figures["rate"] == 64 * 2 / 4.0
    assert figures["best_rate"] == 64 / 2.0
