from __future__ import annotations

import subprocess
import sys

import pytest

from gicls.daemon.faults import FAULT_ENV, KILLED_EXIT_STATUS, Faults
from gicls.errors import DaemonError

_PROGRAM = """
import sys
from gicls.daemon.faults import Faults
faults = Faults.from_env()
for step in ("claimed", "linked", "linked", "linked"):
    print(step, flush=True)
    faults.reached(step)
"""


@pytest.mark.parametrize(("spec", "printed"), [("linked:2", 3), ("claimed", 1), ("", 4)])
def test_the_process_dies_at_the_nth_arrival(spec: str, printed: int) -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROGRAM], env={FAULT_ENV: spec}, capture_output=True, text=True
    )
    assert len(result.stdout.split()) == printed
    assert result.returncode == (KILLED_EXIT_STATUS if spec else 0)


def test_unknown_steps_and_counts_are_refused() -> None:
    with pytest.raises(DaemonError, match="unknown step"):
        Faults.from_env({FAULT_ENV: "clamied"})
    with pytest.raises(DaemonError, match="integer"):
        Faults.from_env({FAULT_ENV: "claimed:x"})
