"""gicls-train as a user runs it: a real process, its stdout, its stderr."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import make_tree

GICLS_TRAIN = Path(sys.executable).with_name("gicls-train")
CLASSES = ("Bleeding", "Normal", "Polyp")
TENSORFLOW_NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cudart_stub", "cuInit")


def imported_modules(*args: str) -> set[str]:
    """Top-level modules the console script imports, from ``python -X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(GICLS_TRAIN), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(re.findall(r"^import time:.*\|\s*(\w+)$", done.stderr, flags=re.MULTILINE))


def test_help_imports_neither_tensorflow_nor_keras():
    modules = imported_modules("--help")
    assert "typer" in modules  # the parse did see the imports
    assert not {"tensorflow", "keras", "sklearn", "pandas"} & modules


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16", "auto"])
def test_evaluate_logs_to_stderr_without_tensorflow_noise_and_reports_its_precision(
    tmp_path, make_bundle, precision
):
    make_bundle(CLASSES, image_size=32)
    make_tree(tmp_path / "data", {c: 3 for c in CLASSES}, size=32)
    config = tmp_path / "config.toml"
    config.write_text(
        f"classes = {json.dumps(list(CLASSES))}\n"
        f'[paths]\nmodels_dir = "{tmp_path / "Models"}"\n'
        f'[inference]\nprecision = "{precision}"\n'
    )
    out = tmp_path / "eval"
    done = subprocess.run(
        [GICLS_TRAIN, "evaluate", "--data", tmp_path / "data", "--out", out, "-c", config],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for noise in TENSORFLOW_NOISE:
        assert noise not in done.stderr, noise
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()]
    assert "scan_done" in events and "images_decoded" in events
    assert not any(line.startswith("{") for line in done.stdout.splitlines())
    report = json.loads((out / "report.json").read_text())
    served, choice = report["precision"], report["precision_choice"]
    assert f"Scored in {served}." in done.stdout
    assert (choice["asked"], choice["device"]) == (precision, "cpu")
    if precision == "auto":  # what this machine's CPU computes natively
        native = {"avx512_bf16", "amx_bf16"} & set(Path("/proc/cpuinfo").read_text().split())
        assert choice["tried"] == ("bfloat16" if native else "float32")
    if choice["tried"] == "float32":
        assert served == "float32"
    else:  # the guard decides, and the report says what it decided
        assert ("bfloat16_accepted" in events) == (served == "bfloat16")
        assert ("bfloat16_refused" in events) == (served == "float32")
        assert choice["guard"].startswith("bfloat16 agrees with float32 on ")


def test_logs_go_to_stderr_and_stdout_keeps_the_table(tmp_path):
    make_tree(tmp_path / "data", {c: 2 for c in CLASSES}, size=32)
    config = tmp_path / "config.toml"
    config.write_text(f'classes = {json.dumps(list(CLASSES))}\n[paths]\ntraining_dir = "data"\n')
    done = subprocess.run(
        [GICLS_TRAIN, "scan", "-c", config],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=tmp_path,
    )
    assert "skipped files: 0" in done.stdout
    assert "scan_done" not in done.stdout
    scan_done = [json.loads(line) for line in done.stderr.splitlines() if "scan_done" in line]
    assert [event["images"] for event in scan_done] == [6]


@pytest.mark.slow
def test_tensorflow_imports_in_a_process_started_without_stderr():
    """The start-up filter holds fd 2; with no fd 2 at all it must stand aside."""
    code = "import gicls, tensorflow; print('imported')"
    done = subprocess.run(
        f"'{sys.executable}' -c \"{code}\" 2>&-",
        shell=True,
        capture_output=False,
        stdout=subprocess.PIPE,
        text=True,
        timeout=300,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "imported\n")
