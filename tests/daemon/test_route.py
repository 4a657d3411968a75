from __future__ import annotations

import errno
import itertools
import os
from pathlib import Path

from gicls.daemon.reasons import unreadable
from gicls.daemon.route import NAME_MAX, Router, candidate_names, destination_folder


def test_folders_follow_the_status() -> None:
    assert destination_folder("classified", "Polyp", None) == "Polyp"
    assert destination_folder("review", "Polyp", None) == "_review"
    assert (
        destination_folder(
            "quarantined", None, unreadable(PermissionError(errno.EACCES, "Permission denied"))
        )
        == "_quarantine/unreadable"
    )
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
        assert router.place(source, destination)
    files = sorted(p.read_text() for p in (tmp_path / "output" / "Polyp").iterdir())
    assert files == ["image 0", "image 1"]


def test_link_refuses_to_clobber_and_recognises_its_own_earlier_link(tmp_path: Path) -> None:
    router = Router(tmp_path)
    (tmp_path / "Polyp").mkdir()
    source, other = tmp_path / "source", tmp_path / "other"
    source.write_bytes(b"mine")
    other.write_bytes(b"theirs")
    assert router.place(other, "Polyp/scan.jpg")
    assert not router.place(source, "Polyp/scan.jpg")
    assert (tmp_path / "Polyp" / "scan.jpg").read_bytes() == b"theirs"
    assert router.place(other, "Polyp/scan.jpg")  # repeated after a crash: already there


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
    assert router.place(link, destination)
    placed = tmp_path / "output" / destination
    assert placed.is_symlink() and os.readlink(placed) == "/etc/passwd"


def test_what_may_not_be_linked_is_renamed_into_place_without_clobbering(tmp_path: Path) -> None:
    # link(2) refuses a folder with EPERM, as protected_hardlinks refuses another user's file.
    router = Router(tmp_path / "output")
    router.prepare(["Polyp"])
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (second / "inside").write_bytes(b"second")
    assert router.place(first, "Polyp/scan.jpg")
    assert not first.exists() and (tmp_path / "output" / "Polyp" / "scan.jpg").is_dir()
    assert not router.place(second, "Polyp/scan.jpg")  # the name is taken: not replaced
    assert (second / "inside").read_bytes() == b"second"
    assert not (tmp_path / "output" / "Polyp" / "scan.jpg" / "inside").exists()
