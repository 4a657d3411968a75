"""The daemon as an unprivileged user facing files it may not read (RELIABILITY.md item 13).

A ``cp -p`` of someone else's 0600 file lands in the inbox: the service account can claim it
(a rename needs only the folder) but not read it (EACCES) and, with
``fs.protected_hardlinks = 1``, not link it either. The daemon runs in a real subprocess that
root starts and that drops to ``nobody`` once TensorFlow and the bundle's lazy imports are
loaded: the interpreter lives under /root, which ``nobody`` cannot enter, so a fresh
interpreter started as ``nobody`` could not even import its standard library.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gicls.audit.cli import app as audit_app
from gicls.daemon.journal import Entry, Journal, replay
from tests.daemon import harness
from tests.daemon.harness import wait_until

pytestmark = pytest.mark.slow

_AS_NOBODY = (
    harness.BECOME_USER
    + """
from gicls.daemon import service
from gicls.daemon.notify import Notifier
from gicls.logs import configure_logging

configure_logging("DEBUG")
service.run(config, threading.Event(), threading.Event(), once=True, notifier=Notifier(None))
"""
)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the test drops a daemon subprocess's privileges to nobody")
    with harness.open_folder("gicls-nobody-") as folder:
        yield folder


def test_files_the_service_account_may_not_read_end_in_quarantine_unreadable(
    open_folder: Path, make_bundle
) -> None:
    nobody = pwd.getpwnam("nobody")
    site = harness.write_config(
        open_folder, make_bundle(models_dir=open_folder / "Models"), stability_seconds=0.1
    )
    site.inbox.chmod(0o777)
    secret, readable, killer = harness.png(1), harness.png(2), harness.png(3)
    (site.inbox / "secret.png").write_bytes(secret)
    (site.inbox / "secret.png").chmod(0o600)  # root's own file: nobody may not read it
    (site.inbox / "open.png").write_bytes(readable)
    # A file that crashed the daemon three times and that it may not read: the poison path
    # must quarantine it without reading it (or it would crash-loop on EACCES).
    site.work.mkdir(parents=True)
    for folder in (site.work.parent, site.work):
        folder.chmod(0o777)
    (site.work / ("k" * 32)).write_bytes(killer)
    (site.work / ("k" * 32)).chmod(0o600)
    journal = Journal(site.work.parent / "journal.jsonl")
    journal.claim(Entry("k" * 32, "killer.png", time.time(), attempt=3))
    journal.sync()
    journal.close()
    journal.path.chmod(0o666)  # as if the service account had written it
    home = open_folder / "home"
    home.mkdir(mode=0o777)
    home.chmod(0o777)

    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _AS_NOBODY,
            str(site.config),
            str(nobody.pw_uid),
            str(nobody.pw_gid),
        ],
        env={**os.environ, "HOME": str(home), "KERAS_HOME": str(home / "keras")},
        cwd=harness.REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    dropped = Counter(
        (name, harness.sha256(data))
        for name, data in (
            (b"secret.png", secret),
            (b"killer.png", killer),
            (b"open.png", readable),
        )
    )
    rows = {row["file_name"]: row for row in harness.assert_invariant(site, dropped)}
    assert rows["secret.png"]["destination"] == "_quarantine/unreadable/secret.png"
    assert rows["secret.png"]["reason"] == "unreadable: EACCES (Permission denied)"
    assert (rows["secret.png"]["sha256"], rows["secret.png"]["bytes"]) == ("", str(len(secret)))
    assert rows["killer.png"]["destination"] == "_quarantine/poison/killer.png"
    assert rows["open.png"]["status"] == "classified"
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert [e["file_name"] for e in events if e["event"] == "file_unreadable"] == ["secret.png"]

    # verify: the two files never read are checked by size, not reported as lacking a sha256.
    verified = CliRunner().invoke(audit_app, ["verify", "-c", str(site.config)])
    assert verified.exit_code == 0, verified.output
    assert "1 sha256 checked, 2 checked by size only" in verified.output
    with (site.output / "_quarantine" / "poison" / "killer.png").open("ab") as handle:
        handle.write(b"more")
    verified = CliRunner().invoke(audit_app, ["verify", "-c", str(site.config)])
    assert verified.exit_code == 1
    assert "size differs from the row's bytes" in verified.output
    assert f"_quarantine/poison/killer.png ({len(killer) + 4} bytes" in verified.output


_AS_NOBODY_UNTIL_SIGTERM = (
    harness.BECOME_USER
    + """
import signal

from gicls.daemon import service
from gicls.daemon.notify import Notifier
from gicls.logs import configure_logging

configure_logging("DEBUG")
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
service.run(config, stop, threading.Event(), notifier=Notifier(None))
"""
)


def test_a_file_the_service_account_may_not_take_is_left_in_the_inbox_and_logged_once(
    open_folder: Path, make_bundle
) -> None:
    """Sticky inbox (1777): another user's file cannot be renamed by nobody (EPERM)."""
    nobody = pwd.getpwnam("nobody")
    site = harness.write_config(
        open_folder,
        make_bundle(models_dir=open_folder / "Models"),
        stability_seconds=0.1,
        rescan_seconds=0.2,
    )
    site.inbox.chmod(0o1777)
    foreign, own = harness.png(4), harness.png(5)
    (site.inbox / "foreign.png").write_bytes(foreign)  # root's, readable by all
    (site.inbox / "own.png").write_bytes(own)
    os.chown(site.inbox / "own.png", nobody.pw_uid, nobody.pw_gid)
    home = open_folder / "home"
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    log_path = open_folder / "daemon.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [
                *(sys.executable, "-c", _AS_NOBODY_UNTIL_SIGTERM, str(site.config)),
                *(str(nobody.pw_uid), str(nobody.pw_gid)),
            ],
            env={**os.environ, "HOME": str(home), "KERAS_HOME": str(home / "keras")},
            cwd=harness.REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def events() -> list[dict[str, object]]:
        lines = log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def named(event: str) -> list[dict[str, object]]:
        return [item for item in events() if item["event"] == event]

    try:

        def own_logged() -> bool:
            assert daemon.poll() is None, log_path.read_text()[-3000:]
            return harness.row_count(site.audit_log) == 1

        wait_until(own_logged, 120, "the row of nobody's own file")
        wait_until(lambda: named("claim_refused"), 30, "claim_refused")
        # Time for ten rescans (rescan_seconds=0.2): a retried claim would be logged again.
        time.sleep(2.0)
        assert daemon.poll() is None, log_path.read_text()[-3000:]
    finally:
        daemon.terminate()
        daemon.wait(60)
    assert daemon.returncode == 0, log_path.read_text()[-3000:]
    (refused,) = named("claim_refused")
    assert (refused["file_name"], refused["error"]) == ("foreign.png", "EPERM")
    assert (site.inbox / "foreign.png").read_bytes() == foreign
    (row,) = harness.read_audit(site.audit_log)
    assert row["file_name"] == "own.png" and row["status"] in ("classified", "review")
    assert replay(site.work.parent / "journal.jsonl") == []
