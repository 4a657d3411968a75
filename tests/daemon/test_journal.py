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
