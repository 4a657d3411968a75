"""``gicls-daemon``: run the inbox daemon, or check what it would do.

Thin by design: parse, load the configuration, call ``service.run`` or ``check.describe``.
SIGTERM and SIGINT set the stop event (the batch in flight finishes, exit 0); SIGHUP asks for
the model bundle to be reloaded between batches.
"""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

from gicls.cli_support import ConfigOption, add_version_option, run_command
from gicls.config import GiclsConfig

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Classify images dropped into an inbox folder; sort them and log every one.",
)
add_version_option(app)


@app.command()
def run(
    config: ConfigOption = None,
    once: Annotated[
        bool,
        typer.Option("--once", help="Process what is in the inbox (once settled), then exit."),
    ] = False,
) -> None:
    """Watch the inbox and classify every file that lands in it."""
    stop = threading.Event()
    reload = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: reload.set())

    def action(settings: GiclsConfig) -> None:
        # Imported here so that `--help` and config errors do not wait for TensorFlow.
        from gicls.daemon.service import run as run_service

        run_service(settings, stop, reload, once=once)

    run_command(config, action)


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate the configuration and the model bundle, and say what `run` would do."""

    def action(settings: GiclsConfig) -> None:
        from gicls.daemon.check import describe

        for line in describe(settings):
            typer.echo(line)

    run_command(config, action)


if __name__ == "__main__":
    app()
