"""The pseudonym key and mapping file in state_dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gicls.daemon.pseudonyms import KEY_NAME, MAPPING_NAME, Pseudonyms
from gicls.errors import DaemonError


def test_the_key_is_made_once_and_pseudonyms_stay_the_same(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)  # the key's mode must not depend on the umask
    try:
        first = Pseudonyms(tmp_path)
        pseudonym = first("P0042")
    finally:
        os.umask(old_umask)
    assert (tmp_path / KEY_NAME).stat().st_mode & 0o777 == 0o640
    assert (tmp_path / MAPPING_NAME).stat().st_mode & 0o777 == 0o640
    again = Pseudonyms(tmp_path)
    assert again("P0042") == pseudonym and again("P0043") != pseudonym
    assert pseudonym.startswith("ps-") and len(pseudonym) == 23
    assert (tmp_path / MAPPING_NAME).read_text().splitlines() == [
        f"{pseudonym},P0042,",
        f"{again('P0043')},P0043,",
    ]
    assert sorted(os.listdir(tmp_path)) == [KEY_NAME, MAPPING_NAME]  # no staging file left


def test_another_key_gives_other_pseudonyms(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    assert Pseudonyms(tmp_path / "a")("P1") != Pseudonyms(tmp_path / "b")("P1")


def test_a_damaged_key_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / KEY_NAME).write_bytes(b"short")
    with pytest.raises(DaemonError, match="holds 5 bytes, not 32: restore it"):
        Pseudonyms(tmp_path)
