"""Start-up time: from process start to READY=1, fresh state against a long-lived one.

``make bench-startup`` (or ``.venv/bin/python -m bench.startup``) starts ``gicls-daemon run``
twice on the same ten-model bundle and times each from ``Popen`` to the READY=1 datagram on a
real NOTIFY_SOCKET (an AF_UNIX datagram socket bound here, as systemd binds one):

(a) fresh: no audit log, no journal;
(b) aged: an audit log of ``--rows`` rows and a journal of ``--journal-files`` files, each a
    claim, plan and done record, written through the daemon's own AuditWriter and Journal classes
    (what a month of work left behind before the journal was compacted while running);
(c) the same audit log with the journal and the seen-index snapshot a running daemon now leaves
    at a clean stop (compacted: empty; the snapshot valid up to the log's end);
(d) like (c) without the snapshot: the first start after an upgrade, which reads the whole log.

(b) has the snapshot too, so (b) against (c) is the cost of replaying the long journal and (d)
against (c) the cost of reading the whole log.

It prints the times, their ratios to (a) and the daemon's peak RSS at READY (VmHWM); ``--profile``
also runs the aged start-up's state reading (journal replay, audit-log scan) under cProfile
in this process and prints where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench.daemon_runs import BIN, peak_rss_kib, write_site
from bench.fixtures import write_bundle
from gicls.config import DEFAULT_CLASSES
from gicls.daemon.audit_writer import AuditWriter
from gicls.daemon.journal import Entry, Journal
from gicls.daemon.seen_store import SNAPSHOT_NAME, SeenStore
from gicls.daemon.startup import JOURNAL_NAME

BATCH = 32  # rows per fsync while generating, like a daemon under a backlog


def fake_cells(n: int) -> dict[str, str]:
    """The cells of one classified image's row, shaped like the pipeline's."""
    scores = {name: f"{((n * 7 + k) % 100) / 100:.6f}" for k, name in enumerate(DEFAULT_CLASSES)}
    return {
        "status": "classified",
        "file_name": f"img_{n:08d}.jpg",
        "file_name_hex": "",
        "sha256": hashlib.sha256(n.to_bytes(8, "big")).hexdigest(),
        "bytes": str(20_000 + n % 5000),
        "batch_id": f"{n // BATCH:012x}",
        "duplicate_of": "",
        "predicted_class": DEFAULT_CLASSES[n % len(DEFAULT_CLASSES)],
        "confidence": "0.910000",
        "margin": "0.420000",
        "model_bundle": "0123456789abcdef",
        **scores,
    }


def write_audit_log(path: Path, rows: int) -> None:
    audit = AuditWriter(path, DEFAULT_CLASSES)
    try:
        for start in range(0, rows, BATCH):
            with audit.batch():
                for n in range(start, min(rows, start + BATCH)):
                    cells = fake_cells(n)
                    destination = f"{cells['predicted_class']}/{cells['file_name']}"
                    audit.append(
                        {
                            **cells,
                            "processed_at": "2026-11-01T00:00:00.000+00:00",
                            "destination": destination,
                            "destination_hex": "",
                            "latency_ms": "850",
                        }
                    )
    finally:
        audit.close()


def write_journal(path: Path, files: int) -> None:
    """claim, plan and done for every file, as the pipeline journals them (never synced here:
    a sync with nothing open would compact the file, which is what (b) must not see)."""
    journal = Journal(path, [])
    try:
        for n in range(files):
            entry = Entry(uuid.UUID(int=n).hex, f"img_{n:08d}.jpg", 1.7e9 + n)
            journal.claim(entry)
            cells = fake_cells(n)
            destination = f"{cells['predicted_class']}/{cells['file_name']}".encode()
            journal.plan(entry, {"destination_hex": destination.hex(), "cells": cells})
            journal.done(entry)
    finally:
        journal.close()


def write_snapshot(state: Path) -> None:
    """The seen-index snapshot a daemon leaves at a clean stop, written by the daemon's code."""
    store = SeenStore(state.parent / "audit_log.csv", state / SNAPSHOT_NAME)
    store.find_logged({})
    store.quiet(save=True)


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def without_watchdog(environ: os._Environ[str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if not k.startswith(("WATCHDOG_", "NOTIFY_"))}


def time_to_ready(config: Path, timeout: float = 1800) -> tuple[float, float]:
    """Seconds from process start to READY=1, and peak RSS (MiB) at that moment."""
    address = f"\0gicls-bench-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(address)
        receiver.settimeout(1.0)
        log = (config.parent / "daemon.log").open("wb")
        started = time.perf_counter()
        process = subprocess.Popen(
            [str(BIN / "gicls-daemon"), "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**without_watchdog(os.environ), "NOTIFY_SOCKET": "@" + address[1:]},
            cwd=config.parent,
        )
        try:
            while True:
                try:
                    message = receiver.recv(4096).decode()
                except TimeoutError:
                    message = ""
                if "READY=1" in message.splitlines():
                    seconds = time.perf_counter() - started
                    peak_kib = peak_rss_kib(process.pid)
                    if peak_kib == 0:  # gone between READY and the reading: no figure
                        raise RuntimeError(
                            f"daemon exited at READY; see {config.parent / 'daemon.log'}"
                        )
                    return seconds, peak_kib / 1024
                if process.poll() is not None or time.perf_counter() - started > timeout:
                    raise RuntimeError(f"no READY=1; see {config.parent / 'daemon.log'}")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(120)
            log.close()


def profile_state_reading(root: Path, top: int) -> None:
    """The aged start-up's reading of its state, in this process, under cProfile."""
    from gicls.daemon.recovery import planned_rows

    journal_path = root / "state" / JOURNAL_NAME
    copy = journal_path.with_name("journal-profile.jsonl")
    shutil.copyfile(journal_path, copy)  # Journal.open compacts: keep the aged file for (b)
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    journal, entries = Journal.open(copy)
    SeenStore(root / "audit_log.csv", root / "no-snapshot").find_logged(planned_rows(entries))
    profiler.disable()
    journal.close()
    print(f"state reading under cProfile: {time.perf_counter() - started:.1f} s")
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="audit rows in (b)")
    parser.add_argument("--journal-files", type=int, default=1_000_000, help="journal triples")
    parser.add_argument("--profile", action="store_true", help="cProfile the state reading")
    parser.add_argument("--work", type=Path, help="keep the generated state here")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="gicls-bench-startup-"))
    print(f"load average before: {load_average()}")
    models_dir = write_bundle(work / "Models")
    daemon = {"max_batch": 32}
    fresh = write_site(work / "fresh", models_dir, daemon)
    aged = write_site(work / "aged", models_dir, daemon)
    compacted = write_site(work / "compacted", models_dir, daemon)
    first_start = write_site(work / "first-start", models_dir, daemon)
    started = time.perf_counter()
    write_audit_log(aged.parent / "audit_log.csv", args.rows)
    (aged.parent / "state").mkdir(exist_ok=True)
    write_journal(aged.parent / "state" / JOURNAL_NAME, args.journal_files)
    sizes = {
        name: (aged.parent / name).stat().st_size / 2**20
        for name in ("audit_log.csv", f"state/{JOURNAL_NAME}")
    }
    print(
        f"generated {args.rows:,} audit rows ({sizes['audit_log.csv']:.0f} MiB) and a journal "
        f"of {args.journal_files:,} files ({sizes[f'state/{JOURNAL_NAME}']:.0f} MiB) "
        f"in {time.perf_counter() - started:.0f} s"
    )
    for site in (compacted, first_start):
        shutil.copyfile(aged.parent / "audit_log.csv", site.parent / "audit_log.csv")
    (compacted.parent / "state").mkdir(exist_ok=True)
    write_snapshot(compacted.parent / "state")
    shutil.copyfile(
        compacted.parent / "state" / SNAPSHOT_NAME, aged.parent / "state" / SNAPSHOT_NAME
    )
    if args.profile:
        profile_state_reading(aged.parent, top=15)
    cases = {
        "(a) fresh state": fresh,
        "(b) aged: rows + long journal": aged,
        "(c) rows, compacted journal": compacted,
        "(d) rows, no snapshot": first_start,
    }
    measured = {label: time_to_ready(config) for label, config in cases.items()}
    baseline = measured["(a) fresh state"][0]
    for label, (seconds, rss) in measured.items():
        print(
            f"{label:30s} READY after {seconds:6.1f} s ({seconds / baseline:.2f}x (a)),"
            f" peak RSS {rss:6.0f} MiB"
        )
    print(f"load average after: {load_average()}")
    if args.work is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
