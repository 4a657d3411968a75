"""What every Typer app shares: the --config option, logging flags and error handling.

The apps stay thin: parse, load config, call a library function. Our own errors become one
line on stderr and the error's exit code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer

from gicls import __version__
from gicls.config import CONFIG_ENV_VAR, DEFAULT_CONFIG_NAME, GiclsConfig, load_config
from gicls.errors import GiclsError
from gicls.logs import configure_logging

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help=f"Configuration file [default: ${CONFIG_ENV_VAR} or ./{DEFAULT_CONFIG_NAME}]",
        show_default=False,
    ),
]


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn GiclsError into a one-line message on stderr and its exit code."""
    try:
        yield
    except GiclsError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None


def load(config_path: Path | None) -> GiclsConfig:
    """Configure logging from the environment and load the configuration."""
    configure_logging(os.environ.get("GICLS_LOG_LEVEL", "INFO"))
    return load_config(config_path)


def run_command(config_path: Path | None, action: Callable[[GiclsConfig], None]) -> None:
    """Load the configuration and run ``action`` with it, reporting user errors plainly."""
    with user_errors():
        action(load(config_path))


def _installed(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"


def version_text() -> str:
    """gicls' version and the TensorFlow and Keras it runs on, read without importing them."""
    return (
        f"gicls {__version__} (TensorFlow {_installed('tensorflow')}, Keras {_installed('keras')})"
    )


def _print_version(requested: bool) -> None:
    if requested:
        typer.echo(version_text())
        raise typer.Exit()


VersionOption = Annotated[
    bool,
    typer.Option(
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the gicls, TensorFlow and Keras versions and exit.",
    ),
]


def add_version_option(app: typer.Typer) -> None:
    """Give ``app`` a ``--version`` option (a callback, so it works without a command)."""

    @app.callback()
    def _main(show_version: VersionOption = False) -> None:
        """Run ``--help`` for the commands."""
