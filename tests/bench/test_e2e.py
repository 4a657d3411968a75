"""bench/e2e.py: the configs it writes are valid, and the table states every figure."""

from __future__ import annotations

import pytest

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


def measured(**changes) -> dict:
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
            "classic": {"rate": 10.0, "best_rate": 20.0},
            "gicls": {"rate": 11.0, "best_rate": 24.0},
        },
    }
    return {**results, **changes}


def test_the_ratios_are_the_goals_figures():
    q = e2e.ratios(measured())
    assert q["c/a"] == 18.0
    assert q["c/b"] == 0.9
    assert q["d/c"] == pytest.approx(40 / 18)
    assert q["d/b_bf16"] == 0.8
    assert q["e:gicls/classic"] == pytest.approx((1.1, 1.2))
    assert q["scale:rss_ratio"] == 1.05
    assert q["f:p95_limit_ms"] == 3000.0 and q["f:p95_met"] is False  # 3400 ms > 2 s + 1 s


def test_figures_a_run_did_not_measure_have_no_ratio():
    results = measured(f={**measured()["f"], "drop_p95": 2900.0})
    for key in ("a", "e", "scale_50000"):
        del results[key]
    q = e2e.ratios(results)
    assert q["f:p95_met"] is True
    assert not {"c/a", "scale:rss_ratio"} & set(q)
    assert not any(key.startswith("e:") for key in q)
    e2e.render(results, None)  # and the table renders without them


def test_training_rate_skips_the_tracing_epoch_and_the_validation_pass():
    figures = training_speed.rate(64, [9.0, 2.5, 3.0], [0.5, 0.5, 1.0])
    assert figures["train_seconds"] == [2.0, 2.0]
    assert figures["rate"] == 64 * 2 / 4.0
    assert figures["best_rate"] == 64 / 2.0
