"""Scores of a batch, and what really produced them, whoever computes them.

The pipeline sends a batch's images to ``submit`` and takes the scores later (``result``), so
the loop can keep several batches in flight when an actor pool scores (ray_pool.py); the local
ensemble scores at once. The scores carry the manifest and precision of the bundle that
produced them: the audit row names that bundle, and its thresholds decide.

In the daemon the local ensemble scores on a thread of its own (``ScoringThread``), so the
loop reads and decodes the next batch while this one is scored: the two took turns before,
and a file cost their sum.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gicls.models.bundle import Manifest
from gicls.models.ensemble import FusedEnsemble


@dataclass(frozen=True)
class Scores:
    values: np.ndarray  # float32 (batch, n_classes) in class order
    manifest: Manifest  # of the bundle that scored them
    precision: str  # what that bundle served: "float32", "bfloat16" or "float16"

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id


class PendingScores(Protocol):
    def done(self) -> bool:
        """Whether ``result`` would return without waiting."""

    def wait(self, seconds: float) -> None:
        """Return when the scores are in, or after ``seconds``."""

    def result(self) -> Scores:
        """The scores (waits for them); raises what scoring raised."""


class RemoteEnsemble(Protocol):
    """A served ensemble whose scoring happens elsewhere (ray_pool.PoolEnsemble)."""

    manifest: Manifest
    precision: str

    def submit(self, images: np.ndarray) -> PendingScores: ...


@dataclass(frozen=True)
class Ready:
    """Scores computed already (the local ensemble's, or a batch with no image to score)."""

    scores: Scores

    def done(self) -> bool:
        return True

    def wait(self, seconds: float) -> None:
        return None

    def result(self) -> Scores:
        return self.scores


class _Later:
    """Scores being computed on the scoring thread."""

    def __init__(self, future: Future[Scores]) -> None:
        self._future = future

    def done(self) -> bool:
        return self._future.done()

    def wait(self, seconds: float) -> None:
        wait([self._future], timeout=seconds)

    def result(self) -> Scores:
        return self._future.result()


class ScoringThread:
    """One thread that scores batches with the local ensemble, one after the other."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")

    def submit(self, ensemble: FusedEnsemble, images: np.ndarray) -> PendingScores:
        return _Later(self._executor.submit(_score_now, ensemble, images))

    def close(self) -> None:
        """Wait for the batch being scored, if any (the loop finishes every batch it starts)."""
        self._executor.shutdown(wait=True)


def submit(
    ensemble: FusedEnsemble | RemoteEnsemble,
    images: np.ndarray,
    scorer: ScoringThread | None = None,
) -> PendingScores:
    """Send uint8 ``images`` (batch, size, size, 3) to be scored by ``ensemble``: a local one
    scores on ``scorer``'s thread, or here and now without one."""
    if len(images) == 0:
        return Ready(Scores(np.zeros((0, 0), np.float32), ensemble.manifest, ensemble.precision))
    if isinstance(ensemble, FusedEnsemble):
        if scorer is not None:
            return scorer.submit(ensemble, images)
        return Ready(_score_now(ensemble, images))
    return ensemble.submit(images)


def _score_now(ensemble: FusedEnsemble, images: np.ndarray) -> Scores:
    return Scores(ensemble(images), ensemble.manifest, ensemble.precision)
