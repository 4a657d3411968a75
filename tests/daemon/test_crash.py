"""Crash safety: the daemon dies abruptly at every pipeline step in turn, then restarts.

Each run gets GICLS_FAULT for the next step and ``--once``, so a run that never reaches its
step would exit 0 and fail the test. The next run first recovers what the previous one left
(so recovery itself is crashed into as well). One crash also tears the audit log's last row
the way a power cut does (half a row, then NUL bytes). The final run has no fault; then every
file must be in exactly one place with exactly one row, and the CSV must parse. A second
test kills the real process with SIGKILL at random moments while files stream in.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from gicls.daemon.faults import KILLED_EXIT_STATUS, STEPS
from gicls.daemon.journal import replay
from tests.daemon import harness
from tests.daemon.harness import wait_until

pytestmark = pytest.mark.slow

ROUNDS = 4  # SIGKILLs in the random-kill test

# Steps reached once per file are hit the 2nd time, so the crash lands inside a batch.
PER_FILE_STEPS = {"linked", "unlinked", "audit_written"}


def _tear_last_row(audit_log: Path) -> None:
    data = audit_log.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    half = last_start + (len(data) - last_start) // 2
    audit_log.write_bytes(data[:half] + b"\0" * 300)


def test_killed_at_every_step_then_restarted_loses_and_duplicates_nothing(
    tmp_path: Path, make_bundle
) -> None:
    site = harness.write_config(tmp_path, make_bundle(), stability_seconds=0.2, max_batch=4)
    dropped: Counter[tuple[bytes, str]] = Counter()
    runs: list[harness.DaemonProcess] = []
    for number, step in enumerate(STEPS):
        for n in range(4):
            data = harness.png(number * 10 + n)
            # Half the files in a study folder: its files keep the same promises.
            name = f"{step}_{n}.png" if n % 2 else f"study_{step}/sub/{step}_{n}.png"
            (site.inbox / name).parent.mkdir(parents=True, exist_ok=True)
            (site.inbox / name).write_bytes(data)
            dropped[(os.fsencode(name), harness.sha256(data))] += 1
        fault = f"{step}:2" if step in PER_FILE_STEPS else step
        daemon = harness.DaemonProcess(
            site.config, "--once", env=harness.fault_env(fault), log_name=f"{number:02d}-{step}.log"
        )
        runs.append(daemon)
        assert daemon.wait() == KILLED_EXIT_STATUS, f"{step} was not reached:\n{daemon.output()}"
        if step == "audit_written":
            _tear_last_row(site.audit_log)

    final = harness.DaemonProcess(site.config, "--once", log_name="final.log")
    assert final.wait() == 0, final.output()
    runs.append(final)
    assert any(run.logged("audit_log_repaired") for run in runs), "the torn row was not repaired"
    assert any(run.logged("journal_recovery") for run in runs)
    rows = harness.assert_invariant(site, dropped)
    assert {row["status"] for row in rows} <= {"classified", "quarantined"}
    assert replay(site.root / "state" / "journal.jsonl") == []


def test_sigkill_at_random_moments_then_restarted_loses_and_duplicates_nothing(
    tmp_path: Path, make_bundle
) -> None:
    """Real SIGKILLs, not injected exits: at seeded random moments while files stream in."""
    site = harness.write_config(tmp_path, make_bundle(), stability_seconds=0.2, max_batch=6)
    moments = random.Random(20261126)
    dropped: Counter[tuple[bytes, str]] = Counter()

    def drop(count: int, label: str) -> None:
        for n in range(count):
            data = harness.png(len(dropped) + 1000)
            name = f"{label}_{n}.png"
            (site.inbox / name).write_bytes(data)
            dropped[(os.fsencode(name), harness.sha256(data))] += 1

    journal = site.root / "state" / "journal.jsonl"
    in_flight = 0  # kills that landed with work under way (journal entries open or files claimed)
    for round_number in range(ROUNDS):
        drop(10, f"r{round_number}_before")
        daemon = harness.DaemonProcess(site.config, log_name=f"kill-{round_number}.log")
        daemon.wait_ready()
        drop(60, f"r{round_number}_during")  # a backlog: batches follow each other
        wait_until(lambda d=daemon: d.logged("batch_done"), 60, "work under way")
        # Kill inside a batch: as soon as files are claimed (watched closely: a batch of tiny
        # images lasts tens of milliseconds), after a random few milliseconds. The moment is
        # the random variable here, not an expectation on timing.
        deadline = time.monotonic() + 60
        while not (replay(journal) or any(site.work.iterdir())):
            assert time.monotonic() < deadline, "no batch under way within 60 s"
            time.sleep(0.001)
        time.sleep(moments.uniform(0.0, 0.005))
        daemon.process.send_signal(signal.SIGKILL)
        assert daemon.wait() == -signal.SIGKILL
        # Dead now: what it left is what it was doing at the kill.
        in_flight += bool(replay(journal) or any(site.work.iterdir()))

    assert in_flight >= ROUNDS - 1, f"only {in_flight} of {ROUNDS} kills landed mid-work"
    final = harness.DaemonProcess(site.config, "--once", log_name="final.log")
    assert final.wait() == 0, final.output()
    harness.assert_invariant(site, dropped)
    assert replay(site.root / "state" / "journal.jsonl") == []


def test_killed_after_and_before_an_online_journal_compaction_loses_nothing(
    tmp_path: Path, make_bundle
) -> None:
    """The journal is truncated by the last sync of a batch when nothing else is open (step
    "done" follows that sync)."""
    site = harness.write_config(tmp_path, make_bundle(), stability_seconds=0.2, max_batch=4)
    journal = site.root / "state" / "journal.jsonl"
    dropped: Counter[tuple[bytes, str]] = Counter()

    def drop(numbers: range) -> None:
        for n in numbers:
            data = harness.png(3000 + n)
            (site.inbox / f"c{n}.png").write_bytes(data)
            dropped[(f"c{n}.png".encode(), harness.sha256(data))] += 1

    # Two batches only: with two in flight, a third could be claimed (open in the journal)
    # before the second is done, and the journal would rightly keep it.
    drop(range(8))
    after = harness.DaemonProcess(site.config, "--once", env=harness.fault_env("done:2"))
    assert after.wait() == KILLED_EXIT_STATUS, after.output()
    assert harness.row_count(site.audit_log) == 8
    assert journal.stat().st_size == 0, "two batches finished, yet the journal kept them"

    drop(range(8, 12))
    before = harness.DaemonProcess(site.config, "--once", env=harness.fault_env("audited"))
    assert before.wait() == KILLED_EXIT_STATUS, before.output()
    left_open = replay(journal)
    assert left_open and all(entry.plan is not None for entry in left_open)

    final = harness.DaemonProcess(site.config, "--once", log_name="final.log")
    assert final.wait() == 0, final.output()
    assert final.logged("journal_recovery")
    harness.assert_invariant(site, dropped)
    assert journal.stat().st_size == 0
