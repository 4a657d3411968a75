"""The project's own error tree.

Everything a user can get wrong (configuration, data, model bundle, input files) raises a
subclass of GiclsError with a one-line, human-readable message. The command-line apps turn
these into that message plus a non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

# A one-line message names at most this many of the offending items.
MAX_LISTED = 5


def listing(items: Iterable[object]) -> str:
    """At most MAX_LISTED items, comma-separated, then how many more there are."""
    items = list(items)
    shown = ", ".join(str(item) for item in items[:MAX_LISTED])
    if len(items) > MAX_LISTED:
        shown += f", ... and {len(items) - MAX_LISTED} more"
    return shown


class GiclsError(Exception):
    """Base of every error a user can cause and fix."""

    exit_code = 1


class ConfigError(GiclsError):
    """A configuration key is unknown, missing, of the wrong type or out of range."""

    exit_code = 2


class DatasetError(GiclsError):
    """The labelled image folders do not match the configuration or hold too little data."""


class ModelBundleError(GiclsError):
    """A model bundle is missing, incomplete, or its files do not match the manifest."""


class UnreadableImageError(GiclsError):
    """An input file is not an image gicls accepts.

    ``reason`` is a short machine-friendly word (``truncated``, ``not_image``, ...) used as the
    quarantine sub-folder name and in the audit log.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class UnreadableVideoError(GiclsError):
    """A video file cannot be demuxed or decoded (corrupt, truncated, not a video).

    ``detail`` is FFmpeg's own message; ``frames_decoded`` counts the frames that were read
    (and already handed on) before the damage.
    """

    reason = "video_unreadable"

    def __init__(self, detail: str, frames_decoded: int) -> None:
        super().__init__(f"{self.reason}: {detail} (after {frames_decoded} frames)")
        self.detail = detail
        self.frames_decoded = frames_decoded


class ScoringError(GiclsError):
    """A ground-truth or prediction file cannot be scored (missing rows, bad cells, ...)."""


class DaemonError(GiclsError):
    """The daemon cannot start or continue safely (lock held, folders on different devices, ...)."""


class AuditError(GiclsError):
    """The audit log (or the output tree it describes) cannot be read as gicls wrote it."""


class DeviceError(GiclsError):
    """The configured device cannot be used here (a GPU asked for and none visible, ...)."""
