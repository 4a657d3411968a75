"""Swapping bundles between batches: a new bundle is taken, a broken one refused."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from structlog.testing import capture_logs

from gicls.daemon.serving import ServingModel
from gicls.models.bundle import (
    MANIFEST_NAME,
    bundle_files,
    publish_bundle,
    read_manifest,
    replace_in_stage,
    stage_bundle,
)
from gicls.models.ensemble import FusedEnsemble
from tests.daemon.harness import CLASSES, wait_until


def _publish_broken(models_dir: Path) -> None:
    """A bundle whose manifest no longer matches one model file (a botched copy)."""
    staging = stage_bundle(models_dir, keep=[*bundle_files(models_dir), MANIFEST_NAME])
    entry = read_manifest(staging).models[CLASSES[0]]
    replace_in_stage(staging / entry.file).write_bytes(b"not a keras file")
    publish_bundle(staging, models_dir)


def _refreshed(serving: ServingModel, force: bool = False) -> bool:
    """``refresh`` as the loop calls it, until the load it started (if any) is adopted."""
    swapped = serving.refresh(force)
    wait_until(lambda: not serving.loading, 60, "the background load")
    return serving.refresh() or swapped


def test_new_bundles_are_swapped_in_and_broken_ones_refused(make_bundle) -> None:
    models_dir = make_bundle(CLASSES, seed=0)
    serving = ServingModel(models_dir, CLASSES, "float32")
    first = serving.bundle_id
    assert not _refreshed(serving)

    make_bundle(CLASSES, models_dir=models_dir, seed=1)
    assert not serving.refresh()  # the load has only started: the old bundle still serves
    assert serving.loading and serving.bundle_id == first
    wait_until(lambda: not serving.loading, 60, "the background load")
    assert serving.refresh()
    second = serving.bundle_id
    assert second != first

    _publish_broken(models_dir)
    assert not _refreshed(serving)
    assert serving.bundle_id == second
    assert not _refreshed(serving, force=True)  # SIGHUP retries, and refuses again
    images = np.zeros((2, 32, 32, 3), np.uint8)
    assert serving.ensemble(images).shape == (2, len(CLASSES))  # the old one still serves


def _path_between(a: np.ndarray, b: np.ndarray) -> Callable[[int], np.ndarray]:
    """Frame k of the walk from ``a`` to ``b`` one intensity level of one value at a time."""
    start = a.astype(np.int64).ravel()
    steps = np.abs(b.astype(np.int64).ravel() - start)
    direction = np.sign(b.astype(np.int64).ravel() - start)
    ends = np.cumsum(steps)

    def frame(k: int) -> np.ndarray:
        moved = np.clip(k - (ends - steps), 0, steps)
        return (start + direction * moved).astype(np.uint8).reshape(a.shape)

    frame.length = int(ends[-1])  # type: ignore[attr-defined]
    return frame


def _frames_at_a_float32_tie(ensemble: FusedEnsemble, around: int = 8) -> np.ndarray:
    """Frames around the point where the float32 winner changes, one intensity level apart.

    There the top two float32 scores differ by far less than bfloat16's rounding of the
    convolutions (~5e-4 on these models), so bfloat16 cannot pick float32's winner on both
    sides of the point: it must disagree on some of these frames.
    """
    size = ensemble.image_size
    candidates = np.random.default_rng(3).integers(0, 256, (16, size, size, 3), dtype=np.uint8)
    candidates = np.concatenate([np.zeros((1, size, size, 3), np.uint8), candidates])
    winners = ensemble(candidates).argmax(axis=1)
    other = int(np.flatnonzero(winners != winners[0])[0])
    frame = _path_between(candidates[0], candidates[other])

    def winner(k: int) -> int:
        return int(ensemble(frame(k)[None]).argmax())

    low, high = 0, frame.length  # type: ignore[attr-defined]
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if winner(middle) == winners[0] else (low, middle)
    return np.stack([frame(k) for k in range(low - around, high + around)])


def _frames_with_clear_winners(ensemble: FusedEnsemble, count: int = 16) -> np.ndarray:
    """Frames whose float32 top two scores differ by >= 0.01: 15x more than bfloat16 moves
    any score of these models (measured <= 6.5e-4), so bfloat16 must pick the same class."""
    size = ensemble.image_size
    noise = np.random.default_rng(4).integers(0, 256, (256, size, size, 3), dtype=np.uint8)
    top_two = np.sort(ensemble(noise), axis=1)[:, -2:]
    clear = noise[top_two[:, 1] - top_two[:, 0] >= 0.01][:count]
    assert len(clear) == count  # the premise of the test
    return clear


def _bundle_guarded_with(make_bundle, choose: Callable[[FusedEnsemble], np.ndarray]) -> Path:
    """A bundle whose guard frames are ``choose(its float32 ensemble)``."""
    models_dir = make_bundle(CLASSES, seed=0)
    probe = FusedEnsemble.from_bundle(models_dir)
    frames = choose(probe)
    make_bundle(CLASSES, models_dir=models_dir, seed=0, guard_frames=frames)  # same models
    np.testing.assert_array_equal(FusedEnsemble.from_bundle(models_dir)(frames), probe(frames))
    return models_dir


def test_bfloat16_is_served_when_it_swaps_only_near_ties_of_the_guard_frames(make_bundle):
    """Issue 14: one coin-toss frame used to refuse bfloat16 (agreement 0.9922 < 0.995)."""
    models_dir = _bundle_guarded_with(make_bundle, _frames_at_a_float32_tie)
    with capture_logs() as logs:
        serving = ServingModel(models_dir, CLASSES, "bfloat16")
    assert serving.ensemble.precision == "bfloat16"
    verdict = serving.ensemble.verdict
    assert verdict is not None and verdict.agreeing_all < verdict.frames  # some did swap
    assert serving.ensemble.refused is None
    assert [e["event"] for e in logs if e["event"].startswith("bfloat16_")] == ["bfloat16_accepted"]


def test_bfloat16_is_served_when_it_agrees_with_float32_on_the_guard_frames(make_bundle):
    models_dir = _bundle_guarded_with(make_bundle, _frames_with_clear_winners)
    exact = FusedEnsemble.from_bundle(models_dir)
    serving = ServingModel(models_dir, CLASSES, "bfloat16")
    assert serving.ensemble.precision == "bfloat16"
    verdict = serving.ensemble.verdict
    assert verdict is not None and verdict.agreeing_all == verdict.frames
    assert serving.ensemble.refused is None
    images = np.random.default_rng(5).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    assert not np.array_equal(serving.ensemble(images), exact(images))  # really bfloat16


def test_a_bundle_without_guard_frames_is_served_in_float32(tmp_path):
    from gicls.models.upgrade import upgrade_bundle
    from tests.conftest import write_format1_bundle

    models_dir = write_format1_bundle(tmp_path / "Models", CLASSES)
    upgrade_bundle(models_dir)
    with capture_logs() as logs:
        serving = ServingModel(models_dir, CLASSES, "bfloat16")
    assert serving.ensemble.precision == "float32"
    refused = [e for e in logs if e["event"] == "bfloat16_refused"]
    assert [e["reason"] for e in refused] == ["no_guard_frames"]


def test_check_says_which_precision_is_really_served(tmp_path, make_bundle) -> None:
    from typer.testing import CliRunner

    from gicls.daemon.cli import app
    from gicls.models.upgrade import upgrade_bundle
    from tests.conftest import write_format1_bundle
    from tests.daemon.harness import write_config

    guarded = make_bundle(CLASSES)
    unguarded = write_format1_bundle(tmp_path / "Migrated", CLASSES)
    upgrade_bundle(unguarded)
    outputs = {}
    for name, models_dir in (("guarded", guarded), ("unguarded", unguarded)):
        site = write_config(tmp_path / name, models_dir, inference={"precision": "bfloat16"})
        result = CliRunner().invoke(app, ["check", "-c", str(site.config)])
        assert result.exit_code == 0, result.output
        outputs[name] = " ".join(result.output.split())
    guarded = re.search(
        r"inference precision bfloat16 \(inference.precision = 'bfloat16'; bundle loaded, "
        r"scores of its 32 guard frames "
        r"reproduced; guard: bfloat16 agrees with float32 on (\d+)/(\d+) frames with top-two "
        r"margin > ([\d.]+); largest score difference ([\d.e-]+) <= ([\d.]+)\)",
        outputs["guarded"],
    )
    assert guarded, outputs["guarded"]
    agreeing, decided, _margin, largest, bound = guarded.groups()
    assert agreeing == decided and float(largest) <= float(bound)
    assert (
        "inference precision float32: bfloat16 refused by the guard (no_guard_frames; "
        "inference.precision = 'bfloat16'; bundle loaded, no guard frames)"
    ) in outputs["unguarded"]


def _native_bfloat16_here() -> bool:
    return bool({"avx512_bf16", "amx_bf16"} & set(Path("/proc/cpuinfo").read_text().split()))


@pytest.mark.slow
def test_auto_precision_is_what_this_cpu_computes_fast_and_the_rows_say_what_served(
    tmp_path, make_bundle
) -> None:

    from typer.testing import CliRunner

    from gicls.daemon.cli import app
    from tests.daemon import harness

    site = harness.write_config(tmp_path / "site", make_bundle(CLASSES), inference={})
    result = CliRunner().invoke(app, ["check", "-c", str(site.config)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    expected = "bfloat16" if _native_bfloat16_here() else "float32"
    assert f"inference precision {expected} (auto on a CPU with" in said

    (site.inbox / "a.png").write_bytes(harness.png(1, size=40))
    (site.inbox / "b.png").write_bytes(harness.png(2, size=40))
    harness.run_once_here(site.config)
    assert [row["precision"] for row in harness.read_audit(site.audit_log)] == [expected] * 2
