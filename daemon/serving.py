"""The model being served, and swapping in a new bundle between batches.

Bundles are published by swapping the whole folder (renameat2 exchange), so a new bundle shows
as a different ``manifest.json`` inode; it is stat'ed between batches (cheap) and on SIGHUP the
bundle is reloaded regardless. A new bundle is verified (hashes, classes), loaded and warmed up
before it replaces the old one; if any of that fails it is refused and the old one keeps
serving. A refused manifest is not retried until it changes again or SIGHUP asks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from gicls.logs import get_logger
from gicls.models.bundle import MANIFEST_NAME
from gicls.models.ensemble import FusedEnsemble

log = get_logger(__name__)

ManifestStamp = tuple[int, int, int, int] | None
Loader = Callable[[Path, Sequence[str], str], FusedEnsemble]


def _load(models_dir: Path, classes: Sequence[str], precision: str) -> FusedEnsemble:
    ensemble = FusedEnsemble.from_bundle(models_dir, list(classes), precision)
    ensemble.warm_up()
    return ensemble


def manifest_stamp(models_dir: Path) -> ManifestStamp:
    try:
        st = os.stat(models_dir / MANIFEST_NAME)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class ServingModel:
    def __init__(
        self, models_dir: Path, classes: Sequence[str], precision: str, loader: Loader = _load
    ) -> None:
        """Load the bundle now; ModelBundleError (or Keras' own error) propagates at start-up."""
        self._models_dir = models_dir
        self._classes = tuple(classes)
        self._precision = precision
        self._loader = loader
        self._stamp = manifest_stamp(models_dir)
        self.ensemble = loader(models_dir, self._classes, precision)

    @property
    def bundle_id(self) -> str:
        return self.ensemble.bundle_id

    def refresh(self, force: bool = False) -> bool:
        """Load a new bundle if the manifest changed (or ``force``); True if one was swapped in."""
        stamp = manifest_stamp(self._models_dir)
        if stamp == self._stamp and not force:
            return False
        self._stamp = stamp
        try:
            candidate = self._loader(self._models_dir, self._classes, self._precision)
        except Exception as exc:
            # Anything a broken bundle raises (ours, Keras', h5py's) means: keep the old one.
            log.error(
                "bundle_refused",
                models_dir=str(self._models_dir),
                error=str(exc),
                serving=self.bundle_id,
            )
            return False
        if candidate.bundle_id == self.bundle_id:
            return False
        previous, self.ensemble = self.bundle_id, candidate
        log.info("bundle_loaded", bundle_id=candidate.bundle_id, previous=previous)
        return True
