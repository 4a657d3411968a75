"""Issue 3's main acceptance test: a real daemon, real watchdog, 300 images dropped the ways
users drop them, and every kind of bad file, then the invariant and ``gicls-audit verify``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.daemon import harness
from tests.daemon.harness import DaemonProcess, sha256, wait_until

pytestmark = pytest.mark.slow

AWKWARD_NAMES = [
    b"comma, in name.png",
    b'double "quotes".png',
    b"single 'quote'.png",
    b"new\nline.png",
    b"=cmd|' -C calc'!A0.png",  # '/' cannot be in a name
    b"+plus.png",
    b"-minus.png",
    b"@at.png",
    b"tab\tinside.png",
    b"latin1 \xe9t\xe9.png",
    b"bad utf8 \xff\xfe.png",
    b"\xce\xb1\xce\xb2 greek.png",
    b'=HYPERLINK("http:x").png',
    b"semi;colon.png",
    b"back\\slash.png",
    b"carriage\rreturn.png",
    b"  leading spaces.png",
    b"trailing space .png",
    b"x" * 246 + b".png",
    b"\xe6\x97\xa5" * 82 + b".png",  # 246 bytes of 3-byte characters + 4
    b"#hash.png",
    b"percent%20.png",
    b"unicode \xe2\x80\xae rtl.png",
    b"emoji \xf0\x9f\x98\x80.png",
]


def _write(path: Path | bytes, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)


def _slow_writer(paths_and_data: list[tuple[Path, bytes]]) -> None:
    """Write each file in chunks, closing and reopening between them (as scanners do)."""
    for path, data in paths_and_data:
        step = max(1, len(data) // 5)
        for start in range(0, len(data), step):
            with open(path, "ab") as handle:
                handle.write(data[start : start + step])
            time.sleep(0.05)


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed (apt rsync)")
def test_300_images_and_bad_files_each_end_in_one_place_with_one_row(
    tmp_path: Path, make_bundle
) -> None:
    site = harness.write_config(
        tmp_path, make_bundle(), stability_seconds=0.4, max_batch=32, rescan_seconds=5.0
    )
    daemon = DaemonProcess(site.config, log_name="daemon.log")
    dropped: Counter[tuple[bytes, str]] = Counter()
    try:
        daemon.wait_ready()
        outside = tmp_path / "outside"
        for folder in ("cp", "mv", "rsync", "ln"):
            (outside / folder).mkdir(parents=True)
        seed = iter(range(10_000))

        def prepare(folder: str, count: int, suffix: str) -> list[Path]:
            made = []
            for n in range(count):
                data = harness.png(next(seed)) if suffix == ".png" else harness.jpeg(next(seed))
                path = outside / folder / f"{folder}_{n:03d}{suffix}"
                _write(path, data)
                dropped[(os.fsencode(path.name), sha256(data))] += 1
                made.append(path)
            return made

        for path in prepare("cp", 64, ".jpg"):
            subprocess.run(["cp", str(path), str(site.inbox)], check=True)
        for path in prepare("mv", 64, ".png"):
            subprocess.run(["mv", str(path), str(site.inbox)], check=True)
        prepare("rsync", 64, ".png")
        subprocess.run(["rsync", "-a", f"{outside / 'rsync'}/", f"{site.inbox}/"], check=True)
        for path in prepare("ln", 64, ".jpg"):
            os.link(path, site.inbox / path.name)

        slow = []
        for n in range(20):
            data = harness.jpeg(next(seed), 96)
            slow.append((site.inbox / f"slow_{n:02d}.jpg", data))
            dropped[(os.fsencode(f"slow_{n:02d}.jpg"), sha256(data))] += 1
        writer = threading.Thread(target=_slow_writer, args=(slow,))
        writer.start()

        inbox = os.fsencode(site.inbox)
        for name in AWKWARD_NAMES:
            data = harness.png(next(seed))
            _write(os.path.join(inbox, name), data)
            dropped[(name, sha256(data))] += 1

        bad = {
            b"truncated.jpg": harness.truncated_jpeg(1),
            b"empty.jpg": b"",
            b"text.jpg": b"this is not an image\n",
            b"sixteen_bit.png": harness.png16(2),
            b"cmyk.jpg": harness.cmyk_jpeg(3),
            b"bomb.png": harness.png_claiming(30000, 30000),
        }
        for name, data in bad.items():
            _write(os.path.join(inbox, name), data)
            dropped[(name, sha256(data))] += 1
        os.symlink("/etc/passwd", site.inbox / "passwd.jpg")
        os.mkfifo(site.inbox / "fifo.jpg")
        (site.inbox / "x.jpg").mkdir()
        dropped[(b"passwd.jpg", "")] += 1
        dropped[(b"fifo.jpg", "")] += 1
        writer.join()

        total = sum(dropped.values())
        assert total == 64 * 4 + 20 + len(AWKWARD_NAMES) + len(bad) + 2
        wait_until(lambda: harness.row_count(site.audit_log) >= total, 90, f"{total} rows")
    finally:
        daemon.stop()
    assert daemon.process.returncode == 0, daemon.output()

    rows = harness.assert_invariant(site, dropped)
    by_name = {harness.file_name_of(row): row for row in rows}
    expected_reasons = {
        b"truncated.jpg": "truncated",
        b"empty.jpg": "empty",
        b"text.jpg": "not_image",
        b"bomb.png": "too_large",
        b"passwd.jpg": "not_regular",
        b"fifo.jpg": "not_regular",
    }
    for name, reason in expected_reasons.items():
        assert (by_name[name]["status"], by_name[name]["reason"]) == ("quarantined", reason)
    for name in (b"sixteen_bit.png", b"cmyk.jpg"):
        assert by_name[name]["status"] == "classified"
    moved_link = site.output / harness.destination_of(by_name[b"passwd.jpg"]).decode()
    assert os.readlink(moved_link) == "/etc/passwd"  # the link itself, never its target
    assert (site.inbox / "x.jpg").is_dir()  # folders are left alone (see daemon/settle.py)
    assert sorted(os.listdir(site.inbox)) == ["x.jpg"]
    hard_linked = outside / "ln" / "ln_000.jpg"
    assert hard_linked.exists() and os.stat(hard_linked).st_nlink == 2
    assert {row["file_name"] for row in rows} >= {"'=cmd|' -C calc'!A0.png", "new\\nline.png"}

    verify = Path(sys.executable).with_name("gicls-audit")
    if not verify.exists():
        pytest.fail("gicls-audit is not installed; cannot run `gicls-audit verify`")
    result = subprocess.run(
        [str(verify), "verify", "-c", str(site.config)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
