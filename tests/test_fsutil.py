"""gicls.fsutil.replace_file: the old file or the new one, and nothing left behind."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path

import pytest

from gicls.fsutil import replace_file


def test_a_write_that_fails_half_way_keeps_the_old_file_and_leaves_no_staging(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.bin"
    path.write_bytes(b"old")

    def chunks() -> Iterator[bytes]:
        yield b"new, first part"
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    with pytest.raises(OSError, match="No space"):
        replace_file(path, chunks())
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.bin"]
