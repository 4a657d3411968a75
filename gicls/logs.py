"""structlog set-up, done in exactly one place.

Logs go to stderr, so that stdout carries only tables and data (``gicls-audit summary >
x.txt`` and pipes stay clean): JSON lines when stderr is not a terminal (journald and log
shippers keep them), the human-friendly console renderer on a terminal. Event names are
stable snake_case (``image_classified``, ``batch_done``, ``file_quarantined``) with key-values.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


def configure_logging(level: str = "INFO") -> None:
    """Configure structlog for the whole process: JSON lines unless stderr is a terminal."""
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=True)
        if sys.stderr.isatty()
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
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def _stderr_logger(*_args: Any) -> structlog.PrintLogger:
    # No fixed file: each logger resolves sys.stderr when created, so a redirected or replaced
    # stderr (tests, CliRunner) is always the one written to.
    return structlog.PrintLogger(sys.stderr)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
