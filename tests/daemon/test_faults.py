from __future__ import annotations

import subprocess
import sys

import pytest

from gicls.daemon.faults import FAULT_ENV, KILLED_EXIT_STATUS, Faults
from gicls.errors import DaemonError
from tests.daemon import harness

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
        [sys.executable, "-c", _PROGRAM],
        env=harness.fault_env(spec) if spec else {},
        capture_output=True,
        text=True,
    )
    assert len(result.stdout.split()) == printed
    assert result.returncode == (KILLED_EXIT_STATUS if spec else 0)


def test_unknown_steps_and_counts_are_refused() -> None:
    with pytest.raises(DaemonError, match="unknown step"):
        Faults.from_env(harness.fault_env("clamied"))
    with pytest.raises(DaemonError, match="integer"):
        Faults.from_env(harness.fault_env("claimed:x"))


def test_a_fault_without_the_test_only_variable_stops_start_up(tmp_path, make_bundle) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    (site.inbox / "scan.png").write_bytes(harness.png(1))
    daemon = harness.DaemonProcess(site.config, "--once", env={FAULT_ENV: "claimed"})
    assert daemon.wait() == 1, daemon.output()  # not 137: it never started
    assert "GICLS_FAULT='claimed' is set" in daemon.output()
    assert "GICLS_TEST_FAULTS=1" in daemon.output()
    assert (site.inbox / "scan.png").exists() and not site.audit_log.exists()
