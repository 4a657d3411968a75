"""Keep TensorFlow's start-up chatter off the user's terminal.

TensorFlow 2.2x logs through absl. While its shared libraries load it writes INFO lines
straight to file descriptor 2 (the oneDNN notice, "Could not find cuda drivers", and absl's
"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"),
before it has read TF_CPP_MIN_LOG_LEVEL, so no setting hides them. The only way is to hold
fd 2 while ``tensorflow`` is imported: a meta-path hook wraps that one import, then forwards
everything written meanwhile except absl INFO and WARNING lines. Errors still get through.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

# absl's own notice, and absl-formatted INFO/WARNING lines ("I0000 00:00:... file.cc:153] ...").
START_UP_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} [\d:.]+ +\d+ \S+\] )"
)


@contextmanager
def start_up_noise_filtered() -> Iterator[None]:
    """Capture fd 2 for the duration, then write back all but ``START_UP_NOISE`` lines."""
    _flush_stderr()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing would reach a terminal anyway
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            _flush_stderr()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [
                line
                for line in captured.read().splitlines(keepends=True)
                if not START_UP_NOISE.match(line)
            ]
            if kept:
                os.write(2, b"".join(kept))


def _flush_stderr() -> None:
    if sys.stderr is not None:  # None when the process started without fd 2
        sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with start_up_noise_filtered():
            self._inner.exec_module(module)

    def __getattr__(self, name: str) -> object:  # resource readers and the like
        return getattr(self._inner, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the libraries load with the top-level package
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Quieten the first ``import tensorflow`` of this process (no-op once it is imported)."""
    if "tensorflow" in sys.modules:
        return
    if not any(isinstance(finder, _QuietTensorFlowFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
