"""Which study a path belongs to, which ids are refused, and what rows and logs show."""

from __future__ import annotations

import os

import pytest

from gicls.daemon.studies import StudyNames

CLASSES = ("Bleeding", "Foreign Body", "Normal")
NAMES = StudyNames(CLASSES, "audit_log.csv")


@pytest.mark.parametrize(
    ("folder", "detail"),
    [
        ("..", "would escape the output folder"),
        ("a\\b", "would escape the output folder"),
        (".hidden", "hidden name"),
        ("FOREIGN BODY", "equals a class name"),
        ("_frames", "reserved output name"),
        ("_anything", "reserved output name"),
        ("Audit_Log.CSV", "reserved output name"),
        ("index.html", "reserved output name"),
        ("tab\there", "not plain text"),
        (os.fsdecode(b"caf\xe9"), "not plain text"),
        ("=cmd()", "not plain text"),
    ],
)
def test_refused_study_ids_say_why(folder: str, detail: str) -> None:
    reason = NAMES.refusal(folder)
    assert reason is not None and reason.word == "study_name"
    assert reason.detail.startswith(detail)


@pytest.mark.parametrize("folder", ["P0042", "patient 7", "Bleeding-study", "été", "a.b"])
def test_ordinary_ids_are_accepted(folder: str) -> None:
    assert NAMES.refusal(folder) is None


def test_a_path_gives_its_study_file_name_and_destination_prefix() -> None:
    deep = NAMES.source_of("P1/day 1/sub/f.png")
    assert (deep.study, deep.file_name, deep.source_path) == ("P1", "f.png", "P1/day 1/sub/f.png")
    assert deep.folder_prefix == "P1/" and deep.refusal is None
    loose = NAMES.source_of("loose.png")
    assert (loose.study, loose.folder_prefix, loose.source_path) == ("", "", "loose.png")
    refused = NAMES.source_of("normal/f.png")
    assert (refused.study, refused.folder_prefix) == ("", "")
    assert refused.refusal is not None and refused.source_path == "normal/f.png"


def test_pseudonyms_replace_the_study_in_ids_paths_and_what_logs_show() -> None:
    names = StudyNames(CLASSES, "audit_log.csv", pseudonym=lambda name: f"ps-{len(name)}")
    source = names.source_of("JaneDoe/sub/f.png")
    assert (source.study, source.source_path) == ("ps-7", "ps-7/sub/f.png")
    assert names.display("JaneDoe/sub/f.png") == "ps-7/sub/f.png"
    assert names.display_folder("JaneDoe") == "ps-7"
    # A refused study keeps no study id, but its name is still kept out of the row.
    refused = names.source_of(".JaneDoe/f.png")
    assert (refused.study, refused.source_path) == ("", "ps-8/f.png")
