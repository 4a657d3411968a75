"""Peak memory of ``gicls-audit summary``, ``verify``, ``tail``, ``report`` and ``export`` as
the audit log grows.

For each size, a site is built once and kept under ``--work``: an audit log of that many
schema-valid rows (studies, every status, flags, two bundles, several days) and the output tree
the rows describe (one empty file per moved row, so ``verify`` finds a consistent tree and
hashes real files). ``report S00`` writes one study's report (and the index) twice: first with
no study's index line kept (``<study>/_summary.json`` removed, as on a site written before those
files existed: every line is rebuilt), then with the lines the first run kept; ``report``
rewrites every study's report. Each command
then runs in a fresh process under ``/usr/bin/time -f %M``,
whose own footprint is a few MiB (``ru_maxrss`` of a child forked from this process would
carry this process's high-water mark). Prints peak RSS and seconds per command and size, and
RSS(largest)/RSS(smallest) per command, all measured in one run.

    .venv/bin/python -m bench.audit_memory [--sizes 5000,50000,500000] [--work DIR] [--only LABEL]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

from bench import fixtures
from gicls.audit.schema import audit_columns
from gicls.audit.study_index import SUMMARY_NAME
from gicls.config import DEFAULT_CLASSES

REPO_ROOT = Path(__file__).resolve().parents[1]
GICLS_AUDIT = REPO_ROOT / ".venv" / "bin" / "gicls-audit"
NO_LINES_KEPT = "report S00, no lines kept"
COMMANDS = {
    "summary": ("summary",),
    "summary --by study": ("summary", "--by", "study"),
    "verify": ("verify",),
    "tail": ("tail",),
    # Run with every study's kept index line removed first (see main).
    NO_LINES_KEPT: ("report", "S00"),
    "report S00": ("report", "S00"),
    # Every study's report rewritten (ten studies, each about a tenth of the rows).
    "report, every study": ("report",),
    # The site's folder replaces {site}: the export is written beside the log.
    "export csv": ("export", "{site}/export.csv"),
    "export xlsx": ("export", "--format", "xlsx", "{site}/export.xlsx"),
}
STUDIES = [f"S{n:02d}" for n in range(10)] + [""]  # "" = loose files at the output root
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def build_site(root: Path, rows: int, models_dir: Path, seed: int = 0) -> Path:
    """Write the log and the output tree for ``rows`` rows under ``root``; the config's path
    (the reports take the bundle in ``models_dir``).

    Reused when a previous run finished it (the tree of 500,000 files takes a while).
    """
    config = root / "config.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        f"classes = {json.dumps(list(DEFAULT_CLASSES))}\n"
        f"[paths]\nmodels_dir = {json.dumps(str(models_dir))}\n[daemon]\n"
        'output_dir = "output"\naudit_log = "audit_log.csv"\n'
    )
    if (root / "complete").exists():
        return config
    rng = np.random.default_rng(seed)
    classes = list(DEFAULT_CLASSES)
    status = rng.choice(
        ["classified", "review", "quarantined", "duplicate"], rows, p=[0.9, 0.06, 0.02, 0.02]
    )
    predicted = rng.integers(0, len(classes), rows)
    confidence = rng.uniform(0.3, 1.0, rows)
    latency = rng.integers(40, 20_000, rows)
    study = rng.integers(0, len(STUDIES), rows)
    output = root / "output"
    output.mkdir(parents=True, exist_ok=True)
    start = np.datetime64("2024-05-01T00:00:00")
    with (root / "audit_log.csv").open("w", newline="", encoding="utf-8") as handle:
        # The daemon's own CSV dialect (gicls.daemon.audit_writer.format_row).
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(audit_columns(classes))
        for n in range(rows):
            writer.writerow(
                _row(
                    n,
                    str(status[n]),
                    classes[predicted[n]],
                    confidence[n],
                    int(latency[n]),
                    STUDIES[study[n]],
                    start,
                    classes,
                    output,
                )
            )
    (root / "complete").touch()
    return config


def _row(
    n: int,
    status: str,
    predicted: str,
    confidence: float,
    latency: int,
    study: str,
    start: np.datetime64,
    classes: list[str],
    output: Path,
) -> list[str]:
    name = f"f{n:07d}.jpg"
    scored = status in ("classified", "review")
    folder = {"classified": predicted, "review": "_review", "quarantined": "quarantine/truncated"}
    destination = ""
    if status in folder:
        destination = "/".join(part for part in (study, folder[status], name) if part)
        target = output / destination
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    at = start + np.timedelta64(n * 2, "s")  # a row every 2 s: 500,000 rows span 11 days
    rest = (1 - confidence) / (len(classes) - 1)
    scores = [f"{confidence if c == predicted else rest:.6f}" if scored else "" for c in classes]
    cells = {
        "processed_at": f"{at}+00:00",
        "status": status,
        "file_name": name,
        "sha256": EMPTY_SHA if destination else "",
        "bytes": "0",
        "predicted_class": predicted if scored else "",
        "confidence": f"{confidence:.6f}" if scored else "",
        "margin": f"{confidence - rest:.6f}" if scored else "",
        **dict(zip(classes, scores, strict=True)),
        "destination": destination,
        "reason": {"review": "low_confidence", "quarantined": "truncated"}.get(status, ""),
        "model_bundle": ("b1" if n % 7 else "b2") if scored else "",
        "batch_id": str(n // 32),
        "latency_ms": str(latency),
        "duplicate_of": f"f{max(0, n - 1):07d}.jpg" if status == "duplicate" else "",
        "file_name_hex": "",
        "destination_hex": "",
        "precision": "bfloat16" if scored else "",
        "flags": predicted if scored and confidence > 0.9 else "",
        "study": study,
        "source_path": "/".join(part for part in (study, name) if part),
        "frames_scored": "",
        "duration_s": "",
        "outputs": "",
        "schema_version": "4",
    }
    return [cells[column] for column in audit_columns(classes)]


def measure(config: Path, arguments: tuple[str, ...]) -> tuple[float, float]:
    """Peak RSS (MiB) and seconds of one ``gicls-audit`` run in a fresh process."""
    began = time.monotonic()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", str(GICLS_AUDIT), *arguments, "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.monotonic() - began
    # verify exits 1 on a mismatch; the site is consistent, so anything but 0 is a failure.
    if done.returncode != 0:
        raise RuntimeError(f"gicls-audit {' '.join(arguments)} failed: {done.stderr[-2000:]}")
    return int(done.stderr.strip().splitlines()[-1]) / 1024, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,50000,500000")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "bench/results/audit_memory")
    parser.add_argument(
        "--only",
        action="append",
        metavar="LABEL",
        help="measure only the commands whose label starts with LABEL (repeatable)",
    )
    args = parser.parse_args()
    commands = {
        label: arguments
        for label, arguments in COMMANDS.items()
        if not args.only or any(label.startswith(prefix) for prefix in args.only)
    }
    sizes = [int(size) for size in args.sizes.split(",")]
    models_dir = args.work / "bundle"
    if not (models_dir / "manifest.json").exists():
        fixtures.write_bundle(models_dir)
    configs = {size: build_site(args.work / f"rows_{size}", size, models_dir) for size in sizes}
    print(f"load average before: {os.getloadavg()}")
    peaks: dict[str, list[float]] = {}
    for label, arguments in commands.items():
        for size in sizes:
            site = configs[size].parent
            if label == NO_LINES_KEPT:
                for kept in (site / "output").glob(f"*/{SUMMARY_NAME}"):
                    kept.unlink()
            filled = tuple(argument.replace("{site}", str(site)) for argument in arguments)
            mib, seconds = measure(configs[size], filled)
            peaks.setdefault(label, []).append(mib)
            print(f"{label:20} {size:>9,} rows: peak RSS {mib:7.1f} MiB, {seconds:6.1f} s")
    print(f"load average after: {os.getloadavg()}")
    for label, values in peaks.items():
        print(f"{label:20} RSS({sizes[-1]:,}) / RSS({sizes[0]:,}) = {values[-1] / values[0]:.2f}")


if __name__ == "__main__":
    main()
