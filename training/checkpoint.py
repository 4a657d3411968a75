"""The conditions a stopped training had finished, kept for the next run of the same training.

One model per condition takes minutes to hours on a CPU: a crash, a reboot or a stop in the
eighth fit used to throw away seven. While ``train_bundle`` runs, each finished fit's files
(model, history, plot) are linked into ``.<models_dir name>.unfinished/`` beside the bundle,
with its manifest entry and results. The next ``train_bundle`` whose fingerprint (the
settings that shape a model, the data, the code version) is the same takes them up instead of
fitting them again; each fit is seeded by its condition, so it would make the same model.
Another fingerprint discards them, saying so. Published fits leave it, and so does the folder
with the last one.
The live bundle is never touched: the daemon serves it until the whole new one replaces it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gicls import __version__
from gicls.config import GiclsConfig
from gicls.fsutil import replace_file
from gicls.logs import get_logger
from gicls.models.bundle import condition_files
from gicls.training.fit import FitResult

log = get_logger(__name__)

FINGERPRINT_NAME = "fingerprint.json"
# Settings sections that shape a model; paths, the daemon and the cluster do not.
SHAPING_SECTIONS = {"classes", "balance", "train", "augment", "preprocess"}


def training_fingerprint(
    config: GiclsConfig, data_summary: dict[str, Any], train_rows: Sequence[tuple[str, str]]
) -> dict[str, Any]:
    """What must match for a kept fit to be the one this training would make: the shaping
    settings, the data's summary (counts and the held-out split's digest), the training
    images (sha256 and class) and the code version."""
    rows = json.dumps(sorted(train_rows)).encode()
    return {
        "settings": config.model_dump(mode="json", include=SHAPING_SECTIONS),
        "data": data_summary,
        "training_images": hashlib.sha256(rows).hexdigest(),
        "code_version": __version__,
    }


class Checkpoint:
    def __init__(self, models_dir: Path, fingerprint: dict[str, Any]) -> None:
        """The kept fits of the training that has ``fingerprint``; kept fits of another are
        discarded."""
        self.folder = models_dir.parent / f".{models_dir.name}.unfinished"
        fingerprint_path = self.folder / FINGERPRINT_NAME
        if self.folder.exists() and _read_json(fingerprint_path) != json.loads(
            json.dumps(fingerprint)
        ):
            log.warning(
                "unfinished_training_discarded",
                folder=str(self.folder),
                reason="its settings, data or code version differ from this training's",
            )
            shutil.rmtree(self.folder)
        if not self.folder.exists():
            self.folder.mkdir(parents=True)
            replace_file(fingerprint_path, [json.dumps(fingerprint, indent=1).encode()])

    def take_up(
        self, names: Sequence[str], staging: Path
    ) -> dict[str, tuple[FitResult, dict[str, Any]]]:
        """The kept fits among ``names``, their files linked into ``staging``; by condition,
        its results and manifest entry."""
        found = {}
        for name in names:
            record = _read_json(self._record_path(name))
            files = condition_files(name)
            if record is None or not all((self.folder / f).is_file() for f in files):
                continue
            _link(self.folder, staging, files)
            found[name] = (FitResult(**record["result"]), record["entry"])
        if found:
            log.info("unfinished_training_resumed", folder=str(self.folder), kept=list(found))
        return found

    def keep(self, name: str, staging: Path, result: FitResult, entry: dict[str, Any]) -> None:
        """Keep a fit just written into ``staging``: its files first, its record last (a fit
        without a record is not taken up)."""
        _link(staging, self.folder, condition_files(name))
        record = {"result": dataclasses.asdict(result), "entry": entry}
        replace_file(self._record_path(name), [json.dumps(record).encode()])

    def discard(self, names: Sequence[str]) -> None:
        """Drop the kept fits of ``names`` (just published); the folder goes with the last
        one. Others stay: ``gicls-train fit Polyp`` after a stopped ``all`` keeps the rest of
        that training for its next run."""
        for name in names:
            self._record_path(name).unlink(missing_ok=True)
            for file in condition_files(name):
                (self.folder / file).unlink(missing_ok=True)
        if not any(self.folder.glob("*.fit.json")):
            shutil.rmtree(self.folder, ignore_errors=True)

    def _record_path(self, name: str) -> Path:
        return self.folder / f"{name}.fit.json"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _link(source: Path, target: Path, files: Sequence[str]) -> None:
    for name in files:
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.unlink(missing_ok=True)
        os.link(source / name, destination)
