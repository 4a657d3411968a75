"""The per-batch pipeline in-process, on real folders with a real tiny bundle.

Files are put into the work folder and journaled the way a claim leaves them, then
``Pipeline.process`` takes them to the end; the audit log and the output tree are checked.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import keras
import numpy as np
import pytest

from gicls.daemon.audit_writer import AuditWriter
from gicls.daemon.decide import ReviewPolicy
from gicls.daemon.dedupe import SeenIndex
from gicls.daemon.faults import Faults
from gicls.daemon.journal import Entry, Journal
from gicls.daemon.pipeline import Pipeline, PipelineOptions
from gicls.daemon.route import Router
from gicls.daemon.scoring import ScoringThread
from gicls.daemon.serving import ServingModel
from gicls.daemon.studies import StudyNames
from gicls.models.bundle import read_manifest
from tests.daemon import harness
from tests.daemon.harness import CLASSES


@pytest.fixture
def site(tmp_path: Path, make_bundle) -> harness.Site:
    site = harness.write_config(tmp_path, make_bundle())
    site.work.mkdir(parents=True)
    return site


@pytest.fixture
def serving(site: harness.Site) -> ServingModel:
    return ServingModel(site.root / "Models", CLASSES, "float32")


class Bench:
    """A pipeline over ``site`` and the entries handed to it."""

    def __init__(self, site: harness.Site, model: ServingModel, **options: object) -> None:
        self.site = site
        router = Router(site.output)
        router.prepare(CLASSES)
        self.journal = Journal(site.root / "state" / "journal.jsonl")
        self.audit = AuditWriter(site.audit_log, CLASSES)
        settings = {"review": ReviewPolicy(), "on_duplicate": "process", **options}
        self.pipeline = Pipeline(
            inbox=site.inbox,
            work=site.work,
            router=router,
            journal=self.journal,
            audit=self.audit,
            seen=SeenIndex(),
            model=model,
            options=PipelineOptions(CLASSES, **settings),  # type: ignore[arg-type]
            faults=Faults(),
            studies=StudyNames(CLASSES, site.audit_log.name),
        )
        self.entries: list[Entry] = []

    def claimed(self, name: str, data: bytes | None) -> Entry:
        """An entry as a claim leaves it; ``data`` None: its work file is gone."""
        entry = Entry(f"{len(self.entries):032x}", name, time.time())
        if data is not None:
            (self.site.work / entry.id).write_bytes(data)
        self.journal.claim(entry)
        self.entries.append(entry)
        return entry

    def process(self) -> dict[str, dict[str, str]]:
        self.journal.sync()
        self.pipeline.process(self.entries)
        self.journal.close()
        self.audit.close()
        return {row["file_name"]: row for row in harness.read_audit(self.site.audit_log)}


@pytest.fixture
def bench(site: harness.Site, serving: ServingModel) -> Iterator[Bench]:
    yield Bench(site, serving)


def test_a_claimed_file_that_vanished_is_unreadable_and_the_batch_goes_on(bench: Bench) -> None:
    bench.claimed("gone.png", None)  # ENOENT after the claim: a network file system, a person
    data = harness.png(1)
    bench.claimed("fine.png", data)
    rows = bench.process()
    assert rows["gone.png"]["status"] == "quarantined"
    assert rows["gone.png"]["reason"] == "unreadable: ENOENT (No such file or directory)"
    assert rows["gone.png"]["destination"] == "_quarantine/unreadable/gone.png"
    assert rows["gone.png"]["sha256"] == ""
    assert rows["fine.png"]["status"] == "classified"
    assert (bench.site.output / rows["fine.png"]["destination"]).read_bytes() == data
    assert not list(bench.site.work.iterdir())


def test_a_folder_in_place_of_the_claimed_file_is_moved_as_not_regular(bench: Bench) -> None:
    entry = bench.claimed("scan.jpg", None)
    (bench.site.work / entry.id).mkdir()  # link(2) refuses a folder (EPERM): it is renamed
    (bench.site.work / entry.id / "inside.txt").write_bytes(b"kept")
    rows = bench.process()
    assert (rows["scan.jpg"]["status"], rows["scan.jpg"]["reason"]) == (
        "quarantined",
        "not_regular",
    )
    moved = bench.site.output / "_quarantine" / "not_regular" / "scan.jpg"
    assert (moved / "inside.txt").read_bytes() == b"kept"
    assert not list(bench.site.work.iterdir())


@pytest.mark.parametrize("on_duplicate", ["skip", "process"])
def test_a_copy_inside_one_batch_is_a_duplicate_like_any_other(
    site: harness.Site, serving: ServingModel, on_duplicate: str
) -> None:
    bench = Bench(site, serving, on_duplicate=on_duplicate)
    data = harness.png(7)
    bench.claimed("first.png", data)
    bench.claimed("copy.png", data)
    rows = bench.process()
    first, copy = rows["first.png"], rows["copy.png"]
    assert first["status"] == "classified" and first["duplicate_of"] == ""
    assert copy["duplicate_of"] == first["destination"]
    if on_duplicate == "skip":
        assert (copy["status"], copy["destination"]) == ("duplicate", "_duplicates/copy.png")
        assert copy["predicted_class"] == ""  # not classified
    else:
        assert copy["status"] == "classified"


def break_member(models_dir: Path, class_name: str) -> None:
    """Republish the bundle with ``class_name``'s output bias set to NaN (a broken model)."""
    model = keras.models.load_model(models_dir / read_manifest(models_dir).models[class_name].file)
    weights = model.get_weights()
    weights[-1][:] = np.nan
    model.set_weights(weights)
    harness.republish_bundle(models_dir, {class_name: model}, keep_guard=False)


def test_nan_scores_go_to_review_as_non_finite_never_to_a_condition(site: harness.Site) -> None:
    break_member(site.root / "Models", "Normal")
    bench = Bench(site, ServingModel(site.root / "Models", CLASSES, "float32"))
    data = harness.png(3)
    bench.claimed("scan.png", data)
    row = bench.process()["scan.png"]
    assert (row["status"], row["reason"]) == ("review", "non_finite")
    assert row["destination"] == "_review/scan.png"
    assert (row["predicted_class"], row["confidence"], row["margin"]) == ("", "", "")
    assert row["Normal"] == "nan"
    assert 0.0 <= float(row["Bleeding"]) <= 1.0 and 0.0 <= float(row["Polyp"]) <= 1.0
    assert (site.output / "_review" / "scan.png").read_bytes() == data


@pytest.mark.parametrize("scorer", [None, ScoringThread], ids=["scored_in_start", "thread"])
def test_a_copy_in_a_later_batch_in_flight_is_a_duplicate(
    site: harness.Site, serving: ServingModel, scorer: type[ScoringThread] | None
) -> None:
    """With an actor pool or the scoring thread, batch 2 is started (read, decoded, sent)
    before batch 1 is planned: the copy in batch 2 must still be found a duplicate of batch
    1's file, not scored anew."""
    bench = Bench(site, serving, on_duplicate="skip")
    bench.pipeline.scorer = scorer() if scorer else None
    data = harness.png(7)
    first = [bench.claimed("first.png", data)]
    second = [bench.claimed("again.png", data)]
    bench.journal.sync()
    started = [bench.pipeline.start(batch) for batch in (first, second)]
    for batch in started:
        bench.pipeline.finish(batch)
    if bench.pipeline.scorer is not None:
        bench.pipeline.scorer.close()
    bench.journal.close()
    bench.audit.close()
    rows = {row["file_name"]: row for row in harness.read_audit(site.audit_log)}
    assert rows["first.png"]["status"] == "classified"
    assert rows["again.png"]["status"] == "duplicate"
    assert rows["again.png"]["duplicate_of"] == rows["first.png"]["destination"]


def test_the_scoring_thread_gives_the_rows_that_scoring_in_start_gives(
    tmp_path: Path, make_bundle
) -> None:
    """Two batches in flight on the scoring thread, finished in order: the same scores,
    classes and destinations as each batch scored before ``start`` returns."""
    bundle = make_bundle()
    rows_of: dict[str, dict[str, dict[str, str]]] = {}
    for way in ("in_start", "thread"):
        site = harness.write_config(tmp_path / way, bundle)
        site.work.mkdir(parents=True)
        bench = Bench(site, ServingModel(bundle, CLASSES, "float32"))
        scorer = ScoringThread() if way == "thread" else None
        bench.pipeline.scorer = scorer
        batches = [
            [bench.claimed(f"b{b}_{k}.png", harness.png(10 * b + k)) for k in range(3)]
            for b in range(2)
        ]
        bench.journal.sync()
        started = [bench.pipeline.start(batch) for batch in batches]
        for batch in started:
            bench.pipeline.finish(batch)
        if scorer is not None:
            scorer.close()
        bench.journal.close()
        bench.audit.close()
        rows_of[way] = {row["file_name"]: row for row in harness.read_audit(site.audit_log)}
    compared = ("status", "predicted_class", "destination", *CLASSES)
    assert len(rows_of["thread"]) == 6
    for name, row in rows_of["in_start"].items():
        assert {k: rows_of["thread"][name][k] for k in compared} == {k: row[k] for k in compared}
