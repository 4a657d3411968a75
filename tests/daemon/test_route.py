from __future__ import annotations

import itertools
import os
from pathlib import Path

from gicls.daemon.route import NAME_MAX, Router, candidate_names, destination_folder


def test_folders_follow_the_status() -> None:
    assert destination_folder("classified", "Polyp", None) == "Polyp"
    assert destination_folder("review", "Polyp", None) == "_review"
    assert destination_folder("quarantined", None, "truncated") == "_quarantine/truncated"
    assert destination_folder("duplicate", None, None) == "_duplicates"


def test_suffixed_names_stay_within_the_limit_and_keep_utf8_whole() -> None:
    long_name = os.fsdecode("日".encode() * 82 + b".png")  # 250 bytes
    names = [os.fsencode(n) for n in itertools.islice(candidate_names(long_name, "0123ab"), 4)]
    assert names[0] == os.fsencode(long_name)
    for name in names[1:]:
        assert len(name) <= NAME_MAX and name.endswith(b".png")
        name.decode("utf-8")  # not cut inside a character
    assert len(set(names)) == 4


def test_two_different_files_with_one_name_both_survive(tmp_path: Path) -> None:
    router = Router(tmp_path / "output")
    router.prepare(["Polyp"])
    sources = []
    for n, token in enumerate(("aaaaaaaa1", "bbbbbbbb2")):
        source = tmp_path / f"work{n}"
        source.write_bytes(f"image {n}".encode())
        sources.append(source)
        destination = router.choose("Polyp", "scan.jpg", token, set())
        assert router.link(source, destination)
    files = sorted(p.read_text() for p in (tmp_path / "output" / "Polyp").iterdir())
    assert files == ["image 0", "image 1"]


def test_link_refuses_to_clobber_and_recognises_its_own_earlier_link(tmp_path: Path) -> None:
    router = Router(tmp_path)
    (tmp_path / "Polyp").mkdir()
    source, other = tmp_path / "source", tmp_path / "other"
    source.write_bytes(b"mine")
    other.write_bytes(b"theirs")
    assert router.link(other, "Polyp/scan.jpg")
    assert not router.link(source, "Polyp/scan.jpg")
    assert (tmp_path / "Polyp" / "scan.jpg").read_bytes() == b"theirs"
    assert router.link(other, "Polyp/scan.jpg")  # repeated after a crash: already there


def test_names_reserved_in_the_batch_are_not_chosen_twice(tmp_path: Path) -> None:
    router = Router(tmp_path)
    first = router.choose("Polyp", "scan.jpg", "token111", set())
    second = router.choose("Polyp", "scan.jpg", "token222", {first})
    assert (first, second) == ("Polyp/scan.jpg", "Polyp/scan-token222.jpg")


def test_a_symlink_is_moved_as_the_link_not_its_target(tmp_path: Path) -> None:
    router = Router(tmp_path / "output")
    link = tmp_path / "link"
    os.symlink("/etc/passwd", link)
    destination = router.choose("_quarantine/not_regular", "passwd.jpg", "t", set())
    assert router.link(link, destination)
    placed = tmp_path / "output" / destination
    assert placed.is_symlink() and os.readlink(placed) == "/etc/passwd"
