"""Does writing a study's report hold up the files dropped meanwhile?

A study's report reads the study's rows from the whole audit log: 13-23 s on a log of 500,000
rows. This bench starts a real daemon (ten untrained ``seed_cnn`` models at 224 px) on the
site of ``bench.audit_memory`` (a schema-valid log of ``--rows`` rows, studies S00-S09), then:

1. drops loose JPEGs one every ``--interval`` seconds into the idle daemon (``idle``);
2. drops three frames as the study folder ``S00`` (a study the log has about a tenth of the
   rows of) and goes on dropping loose files every ``--interval`` seconds until the daemon logs
   ``study_published`` for it, and a few more after.

For each loose file it takes the time from its drop to its audit row (``processed_at``). The
files dropped while the report was being written (by the report's own ``seconds``) are
compared with the idle ones, and with the report's seconds: a loop that writes the report
itself holds them up for about that long. Prints the figures, all measured in one run.

    .venv/bin/python -m bench.report_pause [--rows 500000] [--work DIR] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench import audit_memory, fixtures
from bench.daemon_runs import Daemon, parse_ts, write_site
from gicls.audit.rows import LogCursor

REPO_ROOT = Path(__file__).resolve().parents[1]
STUDY = "S00"  # one of bench.audit_memory's studies
STUDY_FRAMES = 3
IDLE_DROPS = 10
DROPS_AFTER_REPORT = 4
QUIET_SECONDS = 3.0
COLUMNS = ("file_name", "processed_at")  # of each new row, all the bench needs


class AuditTail:
    """The rows appended to an audit log since this was made, read as the daemon reads its own
    log (``LogCursor``: only what was appended since the last look)."""

    def __init__(self, path: Path) -> None:
        self._cursor = LogCursor(path)
        self._poll()  # the rows already there are skipped, read once
        self.rows: list[dict[str, str]] = []

    def poll(self) -> list[dict[str, str]]:
        self.rows += self._poll()
        return self.rows

    def _poll(self) -> list[dict[str, str]]:
        starts = self._cursor.starts()
        if starts is None:
            raise RuntimeError(f"{self._cursor.log} was replaced while the bench read it")
        return [
            dict(zip(COLUMNS, cells, strict=True)) for cells in self._cursor.read(COLUMNS, starts)
        ]


def drop(source: Path, inbox: Path, name: str) -> float:
    """Move a copy of ``source`` into the inbox as ``name`` at once (a rename); when."""
    staging = inbox / f".{name}"  # a dot-file: ignored by the daemon until renamed
    staging.write_bytes(source.read_bytes())
    dropped = time.time()
    os.rename(staging, inbox / name)
    return dropped


def wait_for_rows(tail: AuditTail, names: set[str], daemon: Daemon, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not names <= {row["file_name"] for row in tail.poll()}:
        if daemon.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"not every dropped file was logged; see {daemon.run.log_path}")
        time.sleep(0.05)


def report_written(daemon: Daemon) -> dict | None:
    return next((e for e in daemon.events() if e.get("event") == "study_published"), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "bench/results/report_pause")
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()

    models_dir = args.work / "bundle"
    if not (models_dir / "manifest.json").exists():
        fixtures.write_bundle(models_dir)
    root = args.work / f"rows_{args.rows}"
    print(f"building or reusing the site of {args.rows} rows in {root}", flush=True)
    audit_memory.build_site(root, args.rows, models_dir)
    write_site(
        root,
        models_dir,
        {"stability_seconds": 0.5, "max_wait_ms": 100, "study_quiet_seconds": QUIET_SECONDS},
    )
    images = fixtures.write_images(args.work / "images", 200, seed=int(time.time()) % 1000)
    run_tag = time.strftime("%H%M%S")
    inbox = root / "inbox"
    tail = AuditTail(root / "audit_log.csv")
    print(f"load average before: {os.getloadavg()}", flush=True)

    daemon = Daemon(root, once=False)
    dropped: dict[str, float] = {}
    try:
        daemon.wait_for("daemon_ready", timeout=900)
        for k in range(IDLE_DROPS):
            name = f"idle_{run_tag}_{k:02d}.jpg"
            dropped[name] = drop(images[k], inbox, name)
            time.sleep(args.interval)
        wait_for_rows(tail, set(dropped), daemon, timeout=120)

        staging = inbox / f".{STUDY}"
        staging.mkdir()
        for k in range(STUDY_FRAMES):
            (staging / f"frame_{run_tag}_{k}.jpg").write_bytes(images[IDLE_DROPS + k].read_bytes())
        os.rename(staging, inbox / STUDY)
        k, after = IDLE_DROPS + STUDY_FRAMES, 0
        while after < DROPS_AFTER_REPORT:
            name = f"loose_{run_tag}_{k:03d}.jpg"
            dropped[name] = drop(images[k % len(images)], inbox, name)
            k += 1
            if report_written(daemon) is not None:
                after += 1
            if daemon.process.poll() is not None:
                raise RuntimeError(f"the daemon exited; see {daemon.run.log_path}")
            time.sleep(args.interval)
        wait_for_rows(tail, set(dropped), daemon, timeout=300)
        written = report_written(daemon)
    finally:
        daemon.stop()
    daemon.wait()
    assert written is not None
    print(f"load average after: {os.getloadavg()}")
    summarise(tail.rows, dropped, written)


def summarise(rows: list[dict[str, str]], dropped: dict[str, float], written: dict) -> None:
    logged = {row["file_name"]: parse_ts(row["processed_at"]) for row in rows}
    waited = {name: logged[name] - at for name, at in dropped.items()}
    report_end = parse_ts(written["timestamp"])
    report_start = report_end - float(written["seconds"])
    idle = [s for name, s in waited.items() if name.startswith("idle_")]
    during = [
        waited[name]
        for name, at in dropped.items()
        if name.startswith("loose_") and report_start <= at <= report_end
    ]
    if not during:
        raise RuntimeError("no loose file was dropped while the report was written")
    print(f"report of {STUDY}: {float(written['seconds']):.1f} s")
    print(
        f"idle, {len(idle)} files: drop to row, median {statistics.median(idle):.2f} s, "
        f"max {max(idle):.2f} s"
    )
    print(
        f"while the report was written, {len(during)} files: drop to row, median "
        f"{statistics.median(during):.2f} s, max {max(during):.2f} s"
    )
    print(
        f"max wait while the report was written / report seconds: "
        f"{max(during) / float(written['seconds']):.2f}"
    )


if __name__ == "__main__":
    main()
