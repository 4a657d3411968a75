"""structlog set-up, done in exactly one place.

JSON lines go to stdout when it is not a terminal (journald and log shippers keep them);
a terminal gets the human-friendly console renderer. Event names are stable snake_case
(``image_classified``, ``batch_done``, ``file_quarantined``) with key-values.
"""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str = "INFO") -> None:
    """Configure structlog for the whole process: JSON lines unless stdout is a terminal."""
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=True)
        if sys.stdout.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # No fixed file: each logger resolves sys.stdout when created, so a redirected or
        # replaced stdout (tests, CliRunner) is always the one written to.
        logger_factory=structlog.PrintLoggerFactory(),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
