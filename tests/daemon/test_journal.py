from __future__ import annotations

import os
from pathlib import Path

from gicls.daemon.journal import Entry, Journal, replay


def test_replay_keeps_open_entries_with_their_latest_state(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    raw_name = os.fsdecode(b"odd\n\xff name.jpg")
    entries = [Entry(f"id{n}", raw_name if n == 0 else f"f{n}.jpg", 10.0 + n) for n in range(4)]
    for entry in entries:
        journal.claim(entry)
    journal.plan(entries[1], {"destination_hex": "61", "cells": {"status": "classified"}})
    journal.done(entries[2])
    journal.drop(entries[3])
    journal.sync()
    journal.close()

    open_entries = replay(path)

    assert [e.id for e in open_entries] == ["id0", "id1"]
    assert os.fsencode(open_entries[0].name) == b"odd\n\xff name.jpg"
    assert open_entries[0].plan is None
    assert open_entries[1].plan == {"destination_hex": "61", "cells": {"status": "classified"}}


def test_a_torn_last_record_is_ignored_and_open_compacts(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    for n in range(3):
        journal.claim(Entry(f"id{n}", f"f{n}.jpg", 1.0))
    journal.done(Entry("id0", "f0.jpg", 1.0))
    journal.close()
    with path.open("ab") as handle:
        handle.write(b'{"op":"done","id":"id1"')  # a crash in the middle of a write

    reopened, entries = Journal.open(path)

    assert [e.id for e in entries] == ["id1", "id2"]
    assert len(path.read_bytes().splitlines()) == 2  # only the open entries' records remain
    entries[0].attempt += 1
    reopened.claim(entries[0])
    reopened.sync()
    assert [(e.id, e.attempt) for e in replay(path)] == [("id1", 2), ("id2", 1)]


def _batch(journal: Journal, ids: list[str]) -> None:
    """What the pipeline journals for one batch: claims, plans, dones, each step synced."""
    entries = [Entry(entry_id, f"{entry_id}.jpg", 1.0) for entry_id in ids]
    for entry in entries:
        journal.claim(entry)
    journal.sync()
    for entry in entries:
        journal.plan(entry, {"destination_hex": "61", "cells": {"status": "classified"}})
    journal.sync()
    for entry in entries:
        journal.done(entry)
    journal.sync()


def test_a_running_journal_is_empty_after_every_batch_it_finished(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal, _ = Journal.open(path)
    for number in range(50):
        _batch(journal, [f"b{number}f{n}" for n in range(4)])
        assert path.stat().st_size == 0, number
    journal.claim(Entry("open", "open.jpg", 2.0))  # appends go on after a truncation
    journal.sync()
    journal.close()
    assert [entry.id for entry in replay(path)] == ["open"]


def test_a_journal_growing_around_a_long_open_entry_is_rewritten_with_it(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, [], compact_bytes=64 * 1024)
    stuck = Entry("stuck", "stuck.jpg", 1.0)
    journal.claim(stuck)
    journal.plan(stuck, {"destination_hex": "62", "cells": {"status": "review"}})
    largest = 0
    for number in range(400):  # about 500 KiB of records without the rewrites
        _batch(journal, [f"b{number}f{n}" for n in range(4)])
        largest = max(largest, path.stat().st_size)
    journal.close()

    assert largest <= 64 * 1024 + 2048  # one batch's records past the limit at most
    (entry,) = replay(path)
    assert (entry.id, entry.plan) == ("stuck", stuck.plan)
    assert not path.with_name(path.name + ".staging").exists()
