"""Running ``gicls-daemon`` as a real subprocess and reading what it did from its logs.

Peak RSS is the kernel's own high-water mark of the daemon process (``VmHWM`` in
/proc/<pid>/status), read every 50 ms while it runs; the last reading is kept. (``ru_maxrss``
from wait4 cannot be used: Linux carries the parent's high-water mark into a forked child.)
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.fixtures import config_text

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = REPO_ROOT / ".venv" / "bin"


def parse_ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class DaemonRun:
    root: Path
    returncode: int = 0
    peak_rss_mib: float = 0.0
    wall_seconds: float = 0.0
    events: list[dict] = field(default_factory=list)

    def first(self, event: str) -> dict | None:
        return next((e for e in self.events if e.get("event") == event), None)

    def all(self, event: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == event]

    @property
    def audit_log(self) -> Path:
        return self.root / "audit_log.csv"

    def rows(self) -> list[dict[str, str]]:
        with self.audit_log.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def processing_seconds(self) -> float:
        """From the daemon_ready log line to the last batch_done line (model load excluded)."""
        ready = self.first("daemon_ready")
        batches = self.all("batch_done")
        if ready is None or not batches:
            raise RuntimeError(f"daemon in {self.root} logged no batches; see {self.log_path}")
        return parse_ts(batches[-1]["timestamp"]) - parse_ts(ready["timestamp"])

    @property
    def log_path(self) -> Path:
        return self.root / "daemon.log"


def write_site(root: Path, models_dir: Path, daemon: dict, inference: dict | None = None) -> Path:
    """A config (inbox/output/state under ``root``) and an empty inbox; returns the config."""
    root.mkdir(parents=True, exist_ok=True)
    settings = {
        "inbox": str(root / "inbox"),
        "output_dir": str(root / "output"),
        "state_dir": str(root / "state"),
        "audit_log": str(root / "audit_log.csv"),
        **daemon,
    }
    sections = {"paths": {"models_dir": str(models_dir)}, "daemon": settings}
    if inference:
        sections["inference"] = inference
    (root / "config.toml").write_text(config_text(sections))
    (root / "inbox").mkdir(exist_ok=True)
    return root / "config.toml"


class Daemon:
    """``gicls-daemon run [--once]`` in the background, JSON logs to ``root/daemon.log``."""

    def __init__(self, root: Path, once: bool) -> None:
        self.run = DaemonRun(root)
        args = [str(BIN / "gicls-daemon"), "run", "-c", str(root / "config.toml")]
        if once:
            args.append("--once")
        self._log = self.run.log_path.open("wb")
        self._started = time.perf_counter()
        self.process = subprocess.Popen(
            args,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=root,
        )

    def events(self) -> list[dict]:
        events = []
        for line in self.run.log_path.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # TensorFlow's own stderr lines
            if isinstance(record, dict) and "event" in record:
                events.append(record)
        return events

    def wait_for(self, event: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._sample_hwm()
            if any(e.get("event") == event for e in self.events()):
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"daemon exited before {event}; see {self.run.log_path}")
            time.sleep(0.1)
        raise TimeoutError(f"no {event} within {timeout} s; see {self.run.log_path}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def _sample_hwm(self) -> None:
        self.peak_kib = max(self.peak_kib, peak_rss_kib(self.process.pid))

    peak_kib = 0

    def wait(self, timeout: float = 3600) -> DaemonRun:
        deadline = time.monotonic() + timeout
        while True:
            self._sample_hwm()
            pid, status, _usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.process.kill()
                raise TimeoutError(f"daemon did not exit; see {self.run.log_path}")
            time.sleep(0.05)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self._log.close()
        run = self.run
        run.returncode = self.process.returncode
        run.wall_seconds = time.perf_counter() - self._started
        run.peak_rss_mib = self.peak_kib / 1024
        run.events = self.events()
        if run.returncode != 0:
            raise RuntimeError(f"daemon exited {run.returncode}; see {run.log_path}")
        return run


def peak_rss_kib(pid: int) -> int:
    """Process ``pid``'s peak RSS so far (VmHWM, KiB); 0 once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_once(root: Path) -> DaemonRun:
    return Daemon(root, once=True).wait()


def count_rows(audit_log: Path) -> int:
    try:
        data = audit_log.read_bytes()
    except FileNotFoundError:
        return 0
    return max(0, data.count(b"\r\n") - 1)
