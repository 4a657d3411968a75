"""Every console script answers --version with the versions it would run on."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

SCRIPTS = ("gicls-train", "gicls-daemon", "gicls-audit")


@pytest.mark.parametrize("script", SCRIPTS)
def test_version_names_gicls_tensorflow_and_keras(script: str) -> None:
    executable = Path(sys.executable).with_name(script)
    result = subprocess.run(
        [str(executable), "--version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert line.startswith(f"gicls {version('gicls')} ")
    assert f"TensorFlow {version('tensorflow')}" in line
    assert f"Keras {version('keras')}" in line
