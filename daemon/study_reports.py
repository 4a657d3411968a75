"""What the daemon does when a study completes: publish its report from the audit log (on the
report thread, background_reports.py).

The log is read as ``gicls-audit report`` reads it, a chunk at a time keeping the study's rows,
so the report holds every row of the study whichever daemon sharing the log wrote it, and the
daemon's memory does not grow with the log's history. A report that cannot be written (the log
unreadable, a renderer error) is logged and never stops the daemon: the study's folders then
stay in the inbox, and the report is tried again when the study is next found complete.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from gicls.audit.reader import open_audit_log
from gicls.audit.study_model import BundleSummary
from gicls.audit.study_outputs import UnknownStudyError, publish_study
from gicls.daemon.serving import ServingModel
from gicls.daemon.studies import StudyNames
from gicls.logs import get_logger

log = get_logger(__name__)


class StudyReporter:
    def __init__(
        self,
        output_dir: Path,
        audit_log: Path,
        classes: Sequence[str],
        model: ServingModel,
        names: StudyNames,
    ) -> None:
        self._output_dir = output_dir
        self._audit_log = audit_log
        self._classes = tuple(classes)
        self._model = model
        self._names = names

    def __call__(self, folder: str) -> bool:
        """Publish the study of inbox folder ``folder``; whether the log has rows of it (a
        refused study has none: its files are in the root quarantine)."""
        if self._names.refusal(folder) is not None:
            return False
        study = self._names.study_id(folder)
        started = time.perf_counter()
        try:
            audit = open_audit_log(self._audit_log, self._classes)
            bundle = BundleSummary.from_manifest(self._model.ensemble.manifest)
            reports = publish_study(self._output_dir, audit, [study], bundle)
        except UnknownStudyError:
            return False
        except Exception as exc:  # a report must never take the daemon down
            log.error("study_publish_failed", study=study, error=f"{type(exc).__name__}: {exc}")
            return False
        log.info(
            "study_published",
            study=study,
            reports=[str(path) for path in reports],
            seconds=round(time.perf_counter() - started, 3),
        )
        return True
