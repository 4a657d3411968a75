"""The daemon's threads carry their names into /proc, where top -H, ps -L and the benches look."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon import harness
from tests.daemon.harness import DaemonProcess, wait_until


def _thread_names(pid: int) -> set[str]:
    names = set()
    for comm in Path(f"/proc/{pid}/task").glob("*/comm"):
        try:
            names.add(comm.read_text().strip())
        except OSError:  # a thread that ended while we looked
            continue
    return names


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_a_running_daemon_s_threads_show_their_python_names(tmp_path: Path, make_bundle) -> None:
    site = harness.write_config(tmp_path, make_bundle(image_size=32))
    daemon = DaemonProcess(site.config, log_name="daemon.log")
    try:
        daemon.wait_ready()
        process_name = Path(f"/proc/{daemon.pid}/comm").read_text().strip()
        for n in range(4):  # more than one: a batch is decoded by the pool's threads
            (site.inbox / f"{n}.png").write_bytes(harness.png(n))
        wait_until(lambda: harness.row_count(site.audit_log) >= 4, 60, "the images' rows")
        wait_until(lambda: "scoring_0" in _thread_names(daemon.pid), 10, "scoring_0 named")
        names = _thread_names(daemon.pid)
        main_thread_name = Path(f"/proc/{daemon.pid}/comm").read_text().strip()
    finally:
        daemon.stop()
    assert any(name.startswith("gicls-decode") for name in names), names
    # watchdog's threads, numbered by Python, are named by their class.
    assert not [name for name in names if name.startswith("Thread-")], names
    # The main thread keeps the process's name: ps, pgrep and systemd go by it.
    assert main_thread_name == process_name and not process_name.startswith("scoring")
