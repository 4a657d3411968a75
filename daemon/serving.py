"""The model being served, and swapping in a new bundle between batches.

Bundles are published by swapping the whole folder (renameat2 exchange), so a new bundle shows
as a different ``manifest.json`` inode; it is stat'ed between batches (cheap) and on SIGHUP the
bundle is reloaded regardless. A new bundle is verified (hashes, classes), loaded and warmed up
before it replaces the old one; if any of that fails it is refused and the old one keeps
serving. Every load checks that the models reproduce the scores stored with the bundle's guard
frames (real held-out frames); when ``[inference] precision`` resolves to bfloat16 or float16
(gicls.models.devices), float32 and that precision score those frames and it is only served
when the guard accepts it (gicls.models.guard), else (or without guard frames) float32 is
served and ``bfloat16_refused`` / ``float16_refused`` logged. A refused bundle is not retried
until its manifest changes again or SIGHUP asks.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from gicls.logs import get_logger
from gicls.models.bundle import MANIFEST_NAME
from gicls.models.devices import PrecisionChoice, resolve_precision
from gicls.models.ensemble import FusedEnsemble

if TYPE_CHECKING:
    from gicls.daemon.ray_pool import PoolEnsemble

log = get_logger(__name__)

ManifestStamp = tuple[int, int, int, int] | None
# Loads the local ensemble, or (``[inference] backend = "ray"``) every actor's (ray_pool.py).
Loader = Callable[[Path, Sequence[str], str], "FusedEnsemble | PoolEnsemble"]


def configure_threads() -> None:
    """One TensorFlow op at a time (inter-op 1), each on every core (intra-op default).

    The fused graph holds ten independent member models; running two at once on a 2-core
    machine made no batch faster (same CPU time per image) but kept two members' activations
    alive together, about 0.4 GiB more peak RSS at max_batch 32 with 224 px images
    (BENCHMARKS.md). Must run before TensorFlow executes anything; later it is a no-op.
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.debug("threads_already_configured")


def open_ensemble(
    models_dir: Path, classes: Sequence[str], precision: str
) -> tuple[FusedEnsemble, PrecisionChoice]:
    """Load, verify and check against the guard frames, guarding a reduced precision.
    ``precision`` is the ``[inference] precision`` value ("auto" is resolved here, for the
    device and CPU of the process that loads); returns the ensemble and that resolution."""
    choice = resolve_precision(precision)
    return FusedEnsemble.from_bundle(models_dir, list(classes), choice.tried), choice


def load_ensemble(
    models_dir: Path, classes: Sequence[str], precision: str, warm_batch: int = 1
) -> FusedEnsemble:
    """``open_ensemble``, then warm up: the first real batch pays no set-up cost.

    Warming up at one image and at ``warm_batch`` images (the daemon's max_batch: the size of
    every batch under a backlog) lets TensorFlow trace the graph and allocate the large
    activations before READY.
    """
    ensemble, _ = open_ensemble(models_dir, classes, precision)
    ensemble.warm_up()
    if warm_batch > 1:
        ensemble.warm_up(warm_batch)
    return ensemble


def served_precision(ensemble: FusedEnsemble, choice: PrecisionChoice) -> str:
    """What ``choice`` really serves with this loaded ``ensemble``, in words (for
    ``gicls-daemon check``).

    Only loading the bundle says: the load checks the guard frames' scores (a failure raises,
    as it would stop ``run``) and runs the guard, which can refuse a reduced precision.
    """
    frames = ensemble.manifest.guard.images if ensemble.manifest.guard else 0
    checked = f"scores of its {frames} guard frames reproduced" if frames else "no guard frames"
    loaded = f"{choice.reason}; bundle loaded, {checked}"
    guard = f"; guard: {ensemble.verdict.describe()}" if ensemble.verdict is not None else ""
    if choice.tried == "float32" or ensemble.refused is None:
        return f"inference precision {ensemble.precision} ({loaded}{guard})"
    return (
        f"inference precision float32: {choice.tried} refused by the guard "
        f"({ensemble.refused}; {loaded}{guard})"
    )


def manifest_stamp(models_dir: Path) -> ManifestStamp:
    try:
        st = os.stat(models_dir / MANIFEST_NAME)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ServingModel:
    """The bundle being served, and at most one new bundle loading beside it.

    A load (verify, build, bfloat16 guard, warm-up) runs on its own thread, because it can take
    longer than systemd's WatchdogSec and the loop must keep turning (and pinging) meanwhile;
    the old bundle serves until the loop adopts the new one between batches. Only the loop's
    thread calls ``refresh``, so ``ensemble`` never changes under a batch.
    """

    def __init__(
        self,
        models_dir: Path,
        classes: Sequence[str],
        precision: str,
        loader: Loader = load_ensemble,
    ) -> None:
        """Load the bundle now; ModelBundleError (or Keras' own error) propagates at start-up."""
        self._models_dir = models_dir
        self._classes = tuple(classes)
        self._precision = precision
        self._loader = loader
        self._stamp = manifest_stamp(models_dir)
        self.ensemble = loader(models_dir, self._classes, precision)
        self._load: _BackgroundLoad | None = None
        self._forced_again = False  # SIGHUP during a load: load once more after it

    @property
    def bundle_id(self) -> str:
        return self.ensemble.bundle_id

    @property
    def loading(self) -> bool:
        """True while a new bundle is being loaded (not yet finished)."""
        return self._load is not None and not self._load.future.done()

    def refresh(self, force: bool = False) -> bool:
        """Adopt a finished load; start one if the manifest changed (or ``force``). Never waits.

        A ``force`` (SIGHUP) while a load runs starts no second load beside it: it is
        remembered and honoured once the running one has finished. Returns True if a new
        bundle was swapped in.
        """
        swapped = False
        if self._load is not None:
            if not self._load.future.done():
                self._forced_again = self._forced_again or force
                return False
            swapped = self._adopt(self._load)
            self._load = None
            force, self._forced_again = force or self._forced_again, False
        stamp = manifest_stamp(self._models_dir)
        if force or stamp != self._stamp:
            self._stamp = stamp
            log.info(
                "bundle_loading",
                models_dir=str(self._models_dir),
                forced=force,
                serving=self.bundle_id,
            )
            self._load = _BackgroundLoad(
                lambda: self._loader(self._models_dir, self._classes, self._precision)
            )
        return swapped

    def close(self) -> None:
        """Wait for a load in progress: TensorFlow aborts the process if it exits under one."""
        if self.loading and self._load is not None:
            log.info("bundle_load_awaited", models_dir=str(self._models_dir))
            self._load.future.exception()  # waits; the outcome no longer matters

    def _adopt(self, load: _BackgroundLoad) -> bool:
        seconds = round(time.monotonic() - load.started, 3)
        error = load.future.exception()
        if error is not None:
            # Anything a broken bundle raises (ours, Keras', h5py's) means: keep the old one.
            log.error(
                "bundle_refused",
                models_dir=str(self._models_dir),
                error=str(error),
                serving=self.bundle_id,
                seconds=seconds,
            )
            return False
        candidate = load.future.result()
        if candidate.bundle_id == self.bundle_id:
            return False
        previous, self.ensemble = self.bundle_id, candidate
        log.info("bundle_loaded", bundle_id=candidate.bundle_id, previous=previous, seconds=seconds)
        return True


class _BackgroundLoad:
    """One bundle load on its own thread (not a daemon thread: exit waits for it, see close)."""

    def __init__(self, load: Callable[[], FusedEnsemble]) -> None:
        self.started = time.monotonic()
        self.future: Future[FusedEnsemble] = Future()
        threading.Thread(target=self._run, args=(load,), name="bundle-load").start()

    def _run(self, load: Callable[[], FusedEnsemble]) -> None:
        try:
            self.future.set_result(load())
        except Exception as exc:
            self.future.set_exception(exc)
