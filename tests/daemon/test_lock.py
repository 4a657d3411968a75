from __future__ import annotations

import os
from pathlib import Path

import pytest

from gicls.daemon.lock import StateLock
from gicls.errors import DaemonError


def test_one_holder_per_state_folder(tmp_path: Path) -> None:
    with StateLock(tmp_path):
        assert StateLock(tmp_path).held_elsewhere()
        with pytest.raises(DaemonError, match=f"pid {os.getpid()}"):
            StateLock(tmp_path).acquire()
    assert not StateLock(tmp_path).held_elsewhere()
    with StateLock(tmp_path):  # released: free again
        pass
