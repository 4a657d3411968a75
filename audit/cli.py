"""``gicls-audit``: review the daemon's audit log (summary, verify, tail, export, report).

Every command reads ``daemon.audit_log`` of the configuration, or the log named by ``--log``,
with all its segments (``gicls.audit.segments``) as one log.
"""

from __future__ import annotations

import enum
import json
from pathlib import Path
from typing import Annotated

import typer

from gicls.audit.export import ExportFormat, export_log
from gicls.audit.reader import AuditSource, open_audit_log
from gicls.audit.segments import segment_paths
from gicls.audit.study_model import read_bundle_summary
from gicls.audit.study_outputs import (
    publish_every_study,
    publish_study,
    study_row_counts,
)
from gicls.audit.summary import (
    by_study,
    by_study_dict,
    by_study_text,
    summarise,
    tail,
)
from gicls.audit.verify import verify_output
from gicls.cli_support import ConfigOption, add_version_option, run_command
from gicls.config import GiclsConfig

app = typer.Typer(
    name="gicls-audit",
    help="Review the gicls audit log: summary, verify, tail, export, report.",
    no_args_is_help=True,
    add_completion=False,
)
add_version_option(app)

LogOption = Annotated[
    Path | None,
    typer.Option(
        "--log",
        help="Read this audit log instead of daemon.audit_log of the configuration.",
        show_default=False,
    ),
]


def _open(config: GiclsConfig, log: Path | None) -> AuditSource:
    """The log, its structure checked, for a command that reads it a chunk at a time."""
    return open_audit_log(log or config.daemon.audit_log, config.classes)


class SummaryBy(enum.StrEnum):
    STUDY = "study"


@app.command()
def summary(
    config: ConfigOption = None,
    log: LogOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    by: Annotated[
        SummaryBy | None,
        typer.Option(
            "--by",
            help="study: rows per status for each study (loose files as '(none)') instead.",
        ),
    ] = None,
) -> None:
    """Counts per class, status and day; confidence percentiles; rates; throughput; bundles."""

    def action(settings: GiclsConfig) -> None:
        audit = _open(settings, log)
        if by is SummaryBy.STUDY:
            frame = by_study(audit)
            typer.echo(
                json.dumps(by_study_dict(frame), indent=2) if as_json else by_study_text(frame)
            )
            return
        result = summarise(audit)
        typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else result.to_text())

    run_command(config, action)


@app.command()
def verify(config: ConfigOption = None, log: LogOption = None) -> None:
    """Check that output_dir and the log match exactly (exit 1 on any mismatch)."""

    def action(settings: GiclsConfig) -> None:
        audit = _open(settings, log)
        daemon = settings.daemon
        result = verify_output(
            audit,
            daemon.output_dir,
            own_paths=(
                *(segment.path for segment in audit.segments),
                *segment_paths(daemon.audit_log),
                daemon.state_dir,
                daemon.inbox,
            ),
        )
        if audit.incomplete_tail:
            typer.echo(
                "note: the log's unterminated last line was ignored (a row being written, or "
                "one torn by a crash, which the daemon repairs when it starts)"
            )
        typer.echo("\n".join(result.report()))
        if not result.ok:
            raise typer.Exit(1)

    run_command(config, action)


@app.command("tail")
def tail_command(
    config: ConfigOption = None,
    log: LogOption = None,
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, help="How many rows.")] = 10,
) -> None:
    """Show the latest rows: time, status, file, predicted class, confidence, destination."""

    def action(settings: GiclsConfig) -> None:
        typer.echo(tail(_open(settings, log), lines))

    run_command(config, action)


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="File to write (replaced if it exists).")],
    export_format: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            "-f",
            help="csv or xlsx: the whole log; capsule-vision: the Capsule Vision 2024 "
            "submission layout (xlsx if OUT ends with .xlsx, else csv).",
        ),
    ] = ExportFormat.CSV,
    config: ConfigOption = None,
    log: LogOption = None,
) -> None:
    """Write the log as CSV or Excel, or as a Capsule Vision 2024 submission."""

    def action(settings: GiclsConfig) -> None:
        rows = export_log(_open(settings, log), export_format, out)
        typer.echo(f"wrote {rows} rows to {out}")

    run_command(config, action)


@app.command()
def report(
    studies: Annotated[
        list[str] | None,
        typer.Argument(
            help="Study ids as in the log's study column (default: every study).",
            show_default=False,
        ),
    ] = None,
    config: ConfigOption = None,
    log: LogOption = None,
) -> None:
    """Write (or rewrite) output/<study>/report.html for studies, and output/index.html."""

    def action(settings: GiclsConfig) -> None:
        audit = _open(settings, log)
        # Studies named: one pass holding their rows. Every study: a pass to count them, then
        # passes of bounded size.
        counts = None if studies else study_row_counts(audit)
        if counts == {}:
            typer.echo(f"no studies in {audit.path}: nothing to report")
            return
        bundle = read_bundle_summary(settings.paths.models_dir)
        output_dir = settings.daemon.output_dir
        written = (
            publish_study(output_dir, audit, studies or [], bundle)
            if counts is None
            else publish_every_study(output_dir, audit, bundle, counts)
        )
        for path in written:
            typer.echo(f"wrote {path}")

    run_command(config, action)
