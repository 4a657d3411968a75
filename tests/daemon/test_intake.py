from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

from gicls.daemon.intake import read_claimed


def test_a_regular_file_is_read_and_hashed(tmp_path: Path) -> None:
    path = tmp_path / "a"
    path.write_bytes(b"image bytes")
    intake = read_claimed(path)
    assert intake.sha256 == hashlib.sha256(b"image bytes").hexdigest()
    assert (intake.size, intake.data, intake.reason) == (11, b"image bytes", None)


def test_links_fifos_and_sockets_are_not_regular_and_never_opened_through(
    tmp_path: Path,
) -> None:
    os.symlink("/etc/passwd", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")  # opening it for reading without O_NONBLOCK would hang
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "sock"))
        for name in ("link", "fifo", "sock"):
            assert str(read_claimed(tmp_path / name).reason) == "not_regular"


def test_empty_and_oversized_files(tmp_path: Path) -> None:
    (tmp_path / "empty").touch()
    assert str(read_claimed(tmp_path / "empty").reason) == "empty"
    (tmp_path / "big").write_bytes(b"x" * 100)
    big = read_claimed(tmp_path / "big", max_bytes=10)
    assert (str(big.reason), big.size, big.data) == ("too_large", 100, None)
    assert big.sha256 == hashlib.sha256(b"x" * 100).hexdigest()
