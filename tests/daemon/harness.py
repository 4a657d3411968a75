"""Helpers for the daemon tests: configs, sample files, real daemon processes, the invariant.

The invariant (DESIGN.md): every file that entered the inbox ends in exactly one place under
output_dir with exactly one audit row, and its bytes unchanged.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
import uuid
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.fixtures import config_text
from gicls.audit.schema import audit_columns, decode_name
from gicls.daemon.faults import FAULT_ENV, TEST_FAULTS_ENV

CLASSES = ("Bleeding", "Normal", "Polyp")
REPO = Path(__file__).resolve().parents[2]
DAEMON_COMMAND = [sys.executable, "-m", "gicls.daemon.cli"]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# ---------------------------------------------------------------------------- sample files


def pixels(seed: int, size: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def png(seed: int, size: int = 40) -> bytes:
    return encode(Image.fromarray(pixels(seed, size)), "PNG")


def jpeg(seed: int, size: int = 40) -> bytes:
    return encode(Image.fromarray(pixels(seed, size)), "JPEG")


def cmyk_jpeg(seed: int) -> bytes:
    return encode(Image.fromarray(pixels(seed)).convert("CMYK"), "JPEG")


def png16(seed: int) -> bytes:
    values = np.random.default_rng(seed).integers(0, 65536, (40, 40), dtype=np.uint16)
    return encode(Image.fromarray(values), "PNG")


def truncated_jpeg(seed: int) -> bytes:
    data = jpeg(seed, 64)
    return data[: len(data) // 2]


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Site:
    """One daemon's folders under a test's tmp_path."""

    root: Path
    config: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def output(self) -> Path:
        return self.root / "output"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit_log.csv"

    @property
    def work(self) -> Path:
        return self.root / "state" / "work"


# What the sites below score in unless a test says: "auto" would build and guard a bfloat16
# twin at every load on a CPU with native bfloat16 (seconds per daemon start) and make routing
# tests depend on which precision this machine has; test_serving covers "auto".
SITE_INFERENCE = {"precision": "float32"}


def write_config(
    root: Path,
    models_dir: Path,
    name: str = "config.toml",
    inference: dict[str, object] | None = None,
    **daemon: object,
) -> Site:
    """A site's configuration; ``inference`` is its [inference] section (default
    ``SITE_INFERENCE``, ``{}`` for the product's defaults)."""
    settings: dict[str, object] = {
        "inbox": root / "inbox",
        "output_dir": root / "output",
        "state_dir": root / "state",
        "audit_log": root / "audit_log.csv",
        "stability_seconds": 0.3,
        "max_wait_ms": 100,
        "max_batch": 32,
        **daemon,
    }
    config = root / name
    root.mkdir(parents=True, exist_ok=True)
    sections = {
        "paths": {"models_dir": models_dir},
        "daemon": settings,
        "inference": SITE_INFERENCE if inference is None else inference,
    }
    config.write_text(config_text(sections, CLASSES))
    (root / "inbox").mkdir(exist_ok=True)
    return Site(root, config)


def score_on_ray(site: Site, address: str, **inference: object) -> Site:
    """Make ``site``'s daemon score on a Ray actor pool at ``address`` ([inference] ray),
    keeping the rest of its [inference] section."""
    sections = tomllib.loads(site.config.read_text())
    classes = sections.pop("classes")
    sections["inference"] = {**sections.get("inference", {}), "backend": "ray", **inference}
    sections["cluster"] = {"address": address}
    site.config.write_text(config_text(sections, classes))
    return site


def shared_inbox_configs(root: Path, models_dir: Path, **daemon: object) -> tuple[Site, list[Path]]:
    """Two daemons' configurations sharing one inbox, output folder and audit log, each with
    its own state_dir; the second polls (both observers get exercised). The first's Site and
    both configuration files."""
    shared = {
        "inbox": root / "inbox",
        "output_dir": root / "output",
        "audit_log": root / "audit_log.csv",
        "stability_seconds": 0.2,
        **daemon,
    }
    first = write_config(root, models_dir, "a.toml", state_dir=root / "state", **shared)
    write_config(
        root, models_dir, "b.toml", state_dir=root / "state-b", observer="polling", **shared
    )
    return first, [root / "a.toml", root / "b.toml"]


# ---------------------------------------------------------------------------- bundles


def republish_bundle(
    models_dir: Path,
    members: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    keep_guard: bool = True,
) -> None:
    """Publish ``models_dir`` again through the bundle API with some members (Keras models)
    replaced and/or a calibration or thresholds set, as a retrained or recalibrated bundle
    would be.

    The guard frames are scored again by the new ensemble (as training would); without
    ``keep_guard`` the bundle has none, like a migrated one (needed for models whose scores
    the guard's reproduction check would refuse, such as NaN).
    """
    from gicls.hashing import file_sha256
    from gicls.models.bundle import (
        bundle_files,
        new_manifest,
        publish_bundle,
        read_manifest,
        replace_in_stage,
        stage_bundle,
        write_manifest,
    )
    from gicls.models.ensemble import guard_fields
    from gicls.models.guard import read_guard

    manifest = read_manifest(models_dir)
    # A stage starts empty: keep every file of the bundle (replaced members are unlinked first).
    staging = stage_bundle(models_dir, keep=bundle_files(models_dir))
    models = {name: entry.model_dump() for name, entry in manifest.models.items()}
    for name, model in (members or {}).items():
        path = replace_in_stage(staging / models[name]["file"])
        model.save(path)
        models[name]["sha256"] = file_sha256(path)
    fields = manifest.model_dump(exclude={"bundle_id", "created_at", "code_version", "guard"})
    fields.update(models=models)
    if calibration is not None:
        fields.update(calibration=calibration)
    if thresholds is not None:
        fields.update(thresholds=thresholds)
    staged = new_manifest(**fields)
    if keep_guard and manifest.guard is not None:
        guard = read_guard(models_dir, manifest.guard, manifest.image_size, len(manifest.classes))
        staged = new_manifest(**fields, **guard_fields(staging, staged, guard.frames))
    write_manifest(staged, staging)
    publish_bundle(staging, models_dir)


# ---------------------------------------------------------------------------- processes


def fault_env(spec: str) -> dict[str, str]:
    """The environment that makes a daemon die at ``spec`` (faults.py); both variables."""
    return {FAULT_ENV: spec, TEST_FAULTS_ENV: "1"}


class DaemonProcess:
    """``gicls-daemon run`` as a real subprocess; its output goes to a log file."""

    def __init__(
        self, config: Path, *args: str, env: Mapping[str, str] | None = None, log_name: str = ""
    ) -> None:
        self.log_path = config.parent / (log_name or f"daemon-{time.monotonic_ns()}.log")
        environment = {**os.environ, "GICLS_LOG_LEVEL": "DEBUG", **(env or {})}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [*DAEMON_COMMAND, "run", "-c", str(config), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=REPO,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self) -> list[dict[str, object]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def logged(self, event: str) -> bool:
        return any(item.get("event") == event for item in self.events())

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"daemon exited early:\n{self.output()}")
            return self.logged("daemon_ready")

        wait_until(ready, timeout, "daemon_ready")

    def wait(self, timeout: float = 120) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise AssertionError(f"daemon did not exit:\n{self.output()}") from None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.wait(60)


class NotifyListener:
    """An abstract-namespace datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self) -> None:
        self.address = f"@gicls-test-{uuid.uuid4().hex}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind("\0" + self.address[1:])
        self._socket.settimeout(0.2)
        self.messages: list[str] = []
        self.arrivals: list[tuple[float, str]] = []  # (time.time() on arrival, message)
        self._done = threading.Event()
        # Read continuously: unread datagrams would fill the queue (max_dgram_qlen).
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                message = self._socket.recv(4096).decode()
            except TimeoutError:
                continue
            self.arrivals.append((time.time(), message))
            self.messages.append(message)

    def close(self) -> None:
        self._done.set()
        self._thread.join()
        self._socket.close()

    def lifecycle(self) -> list[str]:
        """READY/WATCHDOG/STOPPING assignments in arrival order (STATUS lines left out)."""
        wanted = {"READY=1", "WATCHDOG=1", "STOPPING=1"}
        return [line for m in self.messages for line in m.splitlines() if line in wanted]


def run_once(config: Path, env: Mapping[str, str] | None = None, log_name: str = "") -> int:
    return DaemonProcess(config, "--once", env=env, log_name=log_name).wait()


def run_once_here(config: Path) -> int:
    """``gicls-daemon run --once`` in this process (its errors raise here); files processed."""
    from gicls.config import load_config
    from gicls.daemon import service
    from gicls.daemon.notify import Notifier

    return service.run(
        load_config(config),
        threading.Event(),
        threading.Event(),
        once=True,
        notifier=Notifier(None),
    )


# ---------------------------------------------------------------------------- audit log


def row_count(audit_log: Path) -> int:
    """Complete rows so far (cheap, tolerant of a row being written right now)."""
    try:
        return max(0, audit_log.read_bytes().count(b"\n") - 1)
    except FileNotFoundError:
        return 0


def read_audit(audit_log: Path) -> list[dict[str, str]]:
    """Parse strictly: exact header, every record one line with every column."""
    data = audit_log.read_bytes()
    assert data.endswith(b"\n"), "audit log ends in a torn line"
    assert b"\0" not in data, "audit log holds NUL bytes"
    records = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    header, rows = records[0], records[1:]
    assert header == audit_columns(CLASSES)
    physical_lines = data.count(b"\n")
    assert physical_lines == len(records), "a row spans more than one line"
    for row in rows:
        assert len(row) == len(header), row
    return [dict(zip(header, row, strict=True)) for row in rows]


def destination_of(row: Mapping[str, str]) -> bytes:
    return decode_name(row["destination"], row["destination_hex"])


def file_name_of(row: Mapping[str, str]) -> bytes:
    return decode_name(row["file_name"], row["file_name_hex"])


def source_of(row: Mapping[str, str]) -> bytes:
    """The path a row's file had in the inbox: its exact name for a loose file, the escaped
    ``source_path`` text for a file in a study folder."""
    if "/" not in row["source_path"]:
        return file_name_of(row)
    return row["source_path"].encode("utf-8")


def _tree(output: Path) -> set[bytes]:
    found = set()
    root = os.fsencode(output)
    for folder, dirs, files in os.walk(root):
        relative = os.path.relpath(folder, root)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            found.add(os.path.normpath(os.path.join(relative, name)))
    return found


def row_outputs(output: Path, rows: list[dict[str, str]]) -> set[bytes]:
    """The files the rows' ``outputs`` cells name (a video's table and key frames) and the
    manifests they name list, each checked against its recorded sha256."""
    from gicls.audit.outputs import decode_outputs, is_manifest, parse_manifest

    found: set[bytes] = set()
    pending = [entry for row in rows for entry in decode_outputs(row.get("outputs", ""))]
    while pending:
        entry = pending.pop()
        path = output / entry.path
        assert file_sha256(path) == entry.sha256, entry.path
        found.add(os.fsencode(entry.path))
        if is_manifest(entry.path):
            pending += parse_manifest(path.read_bytes(), entry.path)
    return found


def file_sha256(path: Path | bytes) -> str:
    with open(path, "rb") as handle:
        return sha256(handle.read())


def recorded_outputs(output: Path) -> set[bytes]:
    """The study outputs under ``output`` listed in its manifests (the root one and one per
    study: reports, the index), and the manifests; each listed file must hold its sha256."""
    manifests = [output / "_manifest.json", *output.glob("*/_manifest.json")]
    found = set()
    for manifest in (path for path in manifests if path.exists()):
        found.add(os.fsencode(manifest.relative_to(output)))
        for entry in json.loads(manifest.read_text())["outputs"]:
            assert file_sha256(output / entry["path"]) == entry["sha256"], entry
            found.add(os.fsencode(entry["path"]))
    return found


def assert_invariant(
    site: Site, dropped: Counter[tuple[bytes, str]], audit_log: Path | None = None
) -> list[dict[str, str]]:
    """Every dropped (name, sha256) has exactly one row, one file, bytes unchanged; no extras.

    The name is the path in the inbox (``source_of``): ``study/sub/frame.png`` in a study.

    ``sha256`` is "" for entries that are not regular files (symlinks, FIFOs). A regular file
    whose row has no sha256 was never read by the daemon (unreadable, poison): it must be
    quarantined, and its bytes are hashed here to check they are the ones dropped.
    """
    rows = read_audit(audit_log or site.audit_log)
    destinations = [destination_of(row) for row in rows]
    assert len(set(destinations)) == len(destinations), "two rows name one destination"
    output = os.fsencode(site.output)
    logged: Counter[tuple[bytes, str]] = Counter()
    for row, destination in zip(rows, destinations, strict=True):
        path = os.path.join(output, destination)
        regular = stat.S_ISREG(os.lstat(path).st_mode)
        if row["sha256"]:
            assert regular and file_sha256(path) == row["sha256"], destination
        else:
            assert row["status"] == "quarantined", destination
        logged[(source_of(row), file_sha256(path) if regular else "")] += 1
    assert logged == dropped, {
        "missing": dropped - logged,
        "unexpected": logged - dropped,
    }
    outputs = recorded_outputs(site.output) | row_outputs(site.output, rows)
    assert _tree(site.output) - outputs == set(destinations), "files under output_dir without a row"
    assert not list(site.work.iterdir()), "files left in the work folder"
    return rows


# ------------------------------------------------------------------ running as another user

# Python code a root-started child runs before it becomes another user (uid and gid in
# sys.argv[2:4], the configuration in sys.argv[1]): the interpreter lives under /root (mode
# 0700), so TensorFlow and everything loading a bundle imports lazily (keras' zip reading needs
# the cp437 codec, for one) must be imported while root can still read them.
BECOME_USER = """
import os, sys, threading
from pathlib import Path

import gicls  # first: it filters TensorFlow's start-up lines
import tensorflow  # noqa: F401

from gicls.config import load_config
from gicls.daemon import service  # noqa: F401  every module the daemon imports, while root
from gicls.daemon.serving import load_ensemble

config = load_config(Path(sys.argv[1]))
load_ensemble(config.paths.models_dir, config.classes, "float32")
os.setgroups([])
os.setgid(int(sys.argv[3]))
os.setuid(int(sys.argv[2]))
"""


@contextmanager
def open_folder(prefix: str) -> Iterator[Path]:
    """A folder every user may enter and write (tmp_path's parents are closed to others)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        folder.chmod(0o777)
        yield folder
    finally:
        shutil.rmtree(folder)
