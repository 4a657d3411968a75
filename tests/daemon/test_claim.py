from __future__ import annotations

import threading
from pathlib import Path

from gicls.daemon.claim import claim_batch, claim_one, new_entry_id
from gicls.daemon.faults import Faults
from gicls.daemon.journal import Journal, replay
from gicls.daemon.settle import Settled, stat_signature


def _claim_after(
    barrier: threading.Barrier, results: list[bool], inbox: Path, name: str, work: Path
) -> None:
    barrier.wait()  # all five rename at once
    results.append(claim_one(inbox, name, work, new_entry_id()))


def test_five_concurrent_claims_of_one_path_have_exactly_one_winner(tmp_path: Path) -> None:
    inbox, work = tmp_path / "inbox", tmp_path / "work"
    inbox.mkdir()
    work.mkdir()
    for round_number in range(20):
        name = f"scan{round_number}.jpg"
        (inbox / name).write_bytes(b"bytes")
        barrier = threading.Barrier(5)
        results: list[bool] = []
        threads = [
            threading.Thread(target=_claim_after, args=(barrier, results, inbox, name, work))
            for _ in range(5)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [False, False, False, False, True]
    assert len(list(work.iterdir())) == 20


def test_claim_batch_journals_before_renaming_and_skips_changed_files(tmp_path: Path) -> None:
    inbox, work = tmp_path / "inbox", tmp_path / "work"
    inbox.mkdir()
    work.mkdir()
    settled = []
    for name in ("a.jpg", "b.jpg", "gone.jpg"):
        (inbox / name).write_bytes(b"x")
        signature = stat_signature(inbox, name)
        assert signature is not None
        settled.append(Settled(name, signature, 1.0))
    (inbox / "b.jpg").write_bytes(b"grown")
    (inbox / "gone.jpg").unlink()
    journal = Journal(tmp_path / "journal.jsonl")

    claims = claim_batch(settled, inbox, work, journal, Faults())
    claimed, changed = claims.entries, claims.changed

    assert [entry.name for entry in claimed] == ["a.jpg"]
    assert [item.name for item in changed] == ["b.jpg"]
    assert (work / claimed[0].id).read_bytes() == b"x"
    assert [entry.name for entry in replay(tmp_path / "journal.jsonl")] == ["a.jpg"]
    assert sorted(p.name for p in inbox.iterdir()) == ["b.jpg"]
