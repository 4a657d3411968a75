"""Studies: what a path in the inbox says about the study it belongs to.

``inbox/<study>/...`` at any depth is a study; its id is the first folder's name, and its files
go to ``output/<study>/<Class>/``, ``_review/``, ``_quarantine/<reason>/``, ``_duplicates/``
(sub-folders flatten: names are made unique as for loose files). A file at the inbox root is a
loose file with no study and keeps today's layout, except a video: ``inbox/<study>.mp4`` is the
study named by its stem (joining a study folder of that name).

A study id becomes a folder name under output_dir and a cell of the audit log, so some ids are
refused: one that could escape the output folder, one equal (ignoring case) to a class name, to
a reserved name (gicls's own ``_``-folders, ``index.html``, the audit log's name) or hidden, and
one that is not plain text (control characters such as a newline, bytes that are not UTF-8, a
leading formula character), since the study column would not hold it exactly. A refused study's
files are quarantined at the root, ``_quarantine/study_name/``, with the reason in their rows.

With ``pseudonymise_studies`` the id written everywhere (paths, rows, logs, reports) is the
keyed hash of the folder's name (``pseudonyms.py``); names are refused before that, by what the
folder is called.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gicls.audit.schema import encode_name
from gicls.daemon.reasons import Reason

STUDY_NAME = "study_name"  # the quarantine word of a refused study's files
# Output names a study may not take besides the classes (gicls's own names start with "_").
RESERVED_NAMES = ("_review", "_quarantine", "_videos", "_frames", "_duplicates", "index.html")
OWN_PREFIX = "_"
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".mpg"})


def has_video_extension(path: Path | str) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class Source:
    """Where a claimed file came from, as the audit row and the output tree say it."""

    relative: str  # path relative to the inbox (os.fsdecode'd bytes), as claimed
    file_name: str  # its last part
    study: str  # the id written to paths and rows: "" for a loose file or a refused study
    source_path: str  # ``relative`` with the study part replaced by ``study`` when pseudonymised
    refusal: Reason | None  # why the study is refused, None when it is not

    @property
    def folder_prefix(self) -> str:
        """What destinations of this file start with under output_dir ("" or ``study/``)."""
        return f"{self.study}/" if self.study else ""


def study_folder(relative: str) -> str:
    """The first folder of an inbox-relative path; "" for a file at the root."""
    first, separator, _ = relative.partition("/")
    return first if separator else ""


class StudyNames:
    """Turns inbox-relative paths into ``Source``s for one configuration."""

    def __init__(
        self,
        classes: Sequence[str],
        audit_log_name: str,
        pseudonym: Callable[[str], str] | None = None,
    ) -> None:
        self._classes = {name.casefold() for name in classes}
        self._reserved = {name.casefold() for name in (*RESERVED_NAMES, audit_log_name)}
        self._pseudonym = pseudonym

    def refusal(self, folder: str) -> Reason | None:
        """Why ``folder`` (a study folder's name) cannot be a study id; None if it can."""
        raw = os.fsencode(folder)
        folded = folder.casefold()
        if folder in ("", ".", "..") or "/" in folder or "\\" in folder:
            detail = "would escape the output folder"
        elif folder.startswith("."):
            detail = "hidden name"
        elif folded in self._classes:
            detail = "equals a class name"
        elif folded in self._reserved or folder.startswith(OWN_PREFIX):
            detail = "reserved output name"
        elif encode_name(raw) != (folder, ""):
            detail = "not plain text (control characters, non-UTF-8 bytes or a formula)"
        else:
            return None
        return Reason(STUDY_NAME, detail)

    def study_id(self, folder: str) -> str:
        """The id written for the study folder ``folder`` (not refused)."""
        return self._pseudonym(folder) if self._pseudonym else folder

    def folder_of(self, relative: str) -> str:
        """The study folder (its name as in the inbox) of an inbox-relative path; "" for a
        loose file. The one place that decides which study a path belongs to."""
        return study_folder(relative)

    def source_of(self, relative: str) -> Source:
        folder = self.folder_of(relative)
        file_name = relative.rsplit("/", 1)[-1]
        if not folder:
            return Source(relative, file_name, "", relative, None)
        refusal = self.refusal(folder)
        shown = self.study_id(folder) if refusal is None or self._pseudonym else folder
        source_path = shown + relative[len(folder) :]
        return Source(relative, file_name, "" if refusal else shown, source_path, refusal)

    def video_source_of(self, relative: str) -> Source:
        """Where a video came from: in a study folder, that study; at the inbox root, the study
        named by its stem, refused like a folder would be."""
        source = self.source_of(relative)
        if self.folder_of(relative):
            return source
        stem = Path(source.file_name).stem
        refusal = self.refusal(stem)
        study = "" if refusal else self.study_id(stem)
        if study != stem and not refusal:
            # Pseudonymised: the file's name is the study's name, so it must not show either
            # (in the output path, the row's file_name and source_path, the logs).
            renamed = study + source.file_name[len(stem) :]
            return Source(relative, renamed, study, renamed, None)
        return Source(relative, source.file_name, study, source.source_path, refusal)

    def display_folder(self, folder: str) -> str:
        """A study folder's name as logs may show it."""
        return self._pseudonym(folder) if self._pseudonym else folder

    def display(self, relative: str) -> str:
        """``relative`` as logs may show it (its study pseudonymised when that is on)."""
        if has_video_extension(relative):
            return self.video_source_of(relative).source_path
        return self.source_of(relative).source_path
