"""Audit logs in schema version 1, byte for byte as gicls wrote them before logs had versions.

The column list is frozen here on purpose: logs in this layout exist and must stay readable,
whatever the current schema becomes.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path


def v1_columns(classes: Sequence[str]) -> list[str]:
    return [
        "processed_at",
        "status",
        "file_name",
        "sha256",
        "bytes",
        "predicted_class",
        "confidence",
        "margin",
        *classes,
        "destination",
        "reason",
        "model_bundle",
        "batch_id",
        "latency_ms",
        "duplicate_of",
        "file_name_hex",
        "destination_hex",
    ]


def write_v1_log(path: Path, classes: Sequence[str], rows: Sequence[Mapping[str, str]]) -> bytes:
    """Write the header and ``rows`` (missing cells empty) as the v1 writer did; the bytes."""
    columns = v1_columns(classes)
    buffer = io.StringIO()
    # The v1 writer: csv module, minimal quoting, CRLF line ends, one os.write per row.
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(column, "") for column in columns])
    data = buffer.getvalue().encode("utf-8")
    path.write_bytes(data)
    return data
