"""``gicls-daemon check``: the audit log's segments and the folders the daemon writes.

Tests run as root, for whom permission bits stop nothing; so a read-only folder is made real
for root with a read-only bind mount in a private mount namespace, and the permission case
runs the check as ``nobody`` (privileges dropped after the imports, in a subprocess).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gicls.daemon.cli import app
from tests.audit.v1_log import write_v1_log
from tests.daemon import harness

NOBODY = 65534


def _check(config: Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["check", "-c", str(config)])
    return result.exit_code, result.stdout, result.stderr


def test_check_says_an_older_log_is_kept_and_where_new_rows_go(tmp_path: Path, make_bundle) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    old = write_v1_log(site.audit_log, harness.CLASSES, [{"status": "classified"}])

    code, out, _ = _check(site.config)

    assert code == 0, out
    segment = site.root / "audit_log.v4.csv"
    assert (
        f"audit log: {segment} (will be created), schema version 4; earlier rows kept as they "
        f"are in {site.audit_log} (schema version 1)"
    ) in out.splitlines()
    assert site.audit_log.read_bytes() == old and not segment.exists()


@pytest.mark.parametrize("bad", ["audit_log.csv", "audit_log.v2.csv"])
def test_check_refuses_any_segment_written_for_other_classes(
    tmp_path: Path, make_bundle, bad: str
) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    write_v1_log(site.audit_log, harness.CLASSES, [{"status": "classified"}])
    other = ("Bleeding", "Normal", "Ulcer")
    write_v1_log(site.root / bad, other, [{"status": "classified"}])

    code, out, err = _check(site.config)

    assert (code, out) == (1, "")
    assert err.startswith(
        f"error: audit log {site.root / bad} does not match the configured classes: "
        "missing column(s) 'Polyp'; unexpected column(s) 'Ulcer'"
    )
    assert err.endswith("set daemon.audit_log to a new file\n")


def test_check_names_a_folder_on_a_read_only_mount_even_as_root(tmp_path: Path) -> None:
    site = harness.write_config(tmp_path, tmp_path / "Models")
    site.output.mkdir()
    mount_and_check = (
        'mount --bind -o ro "$1" "$1" || exit 99; exec "$2" -m gicls.daemon.cli check -c "$3"'
    )
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare(1) is not installed: cannot make a read-only mount for root")
    result = subprocess.run(
        [
            *(unshare, "--mount", "--propagation", "private", "sh", "-c", mount_and_check, "sh"),
            *(str(site.output), sys.executable, str(site.config)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=harness.REPO,
    )
    if result.returncode == 99 or "unshare failed" in result.stderr:
        pytest.skip(f"no private read-only bind mount here: {result.stderr.strip()}")

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"daemon.output_dir {site.output}: read-only file system" in result.stderr
    assert "daemon.inbox" not in result.stderr and "daemon.state_dir" not in result.stderr


# Imports everything `check` needs while root can still read the interpreter (under /root,
# mode 0700), then becomes nobody and runs the real CLI.
_AS_NOBODY = (
    harness.BECOME_USER
    + """
import gicls.daemon.check
from gicls.daemon.cli import app

app(["check", "-c", sys.argv[1]])
"""
)


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A folder nobody can reach (pytest's tmp_path is private to root)."""
    with harness.open_folder("gicls-check-") as root:
        root.chmod(0o755)
        yield root


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become nobody")
@pytest.mark.parametrize("audit_folder_owner", [NOBODY, 0])
def test_check_as_an_unprivileged_user_names_each_folder_it_cannot_write(
    shared_root: Path, make_bundle, audit_folder_owner: int
) -> None:
    models = make_bundle(models_dir=shared_root / "Models")
    site = harness.write_config(shared_root, models, audit_log=shared_root / "logs" / "audit.csv")
    for folder in (site.inbox, site.output, site.root / "state", site.root / "logs"):
        folder.mkdir(exist_ok=True)
        os.chown(folder, NOBODY, NOBODY)
    os.chown(site.root / "logs", audit_folder_owner, audit_folder_owner)

    result = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, str(site.config), str(NOBODY), str(NOBODY)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=harness.REPO,
    )

    if audit_folder_owner == NOBODY:
        assert result.returncode == 0, result.stderr
        assert "hashes verified" in result.stdout
    else:
        assert result.returncode == 1, result.stdout
        assert result.stderr == (
            f"error: not writable by user nobody (uid {NOBODY}): "
            f"daemon.audit_log {site.root / 'logs'}: no permission\n"
        )


def test_check_describes_the_bundle_thresholds_and_the_review_rules(
    tmp_path: Path, make_bundle
) -> None:
    models_dir = make_bundle()
    site = harness.write_config(tmp_path / "plain", models_dir)
    code, out, _ = _check(site.config)
    assert code == 0, out
    assert "flags: none (the bundle has no thresholds)" in out.splitlines()
    assert "review margin: off" in out.splitlines()

    harness.republish_bundle(
        models_dir, thresholds={"Polyp": {"threshold": 0.25, "target_sensitivity": 0.9}}
    )
    site = harness.write_config(
        tmp_path / "set", models_dir, review_margin=0.1, review_on_flag=True
    )
    code, out, _ = _check(site.config)
    assert code == 0, out
    lines = out.splitlines()
    assert "flags: Polyp >= 0.250; a flag that lost the argmax goes to _review/" in lines
    assert "review margin: top two scores closer than 0.1 go to _review/" in lines


def test_check_names_the_scoring_backend_and_its_pool(tmp_path: Path, make_bundle) -> None:
    site = harness.write_config(tmp_path, make_bundle())
    local_code, local_out, _ = _check(site.config)
    harness.score_on_ray(site, "h:6379", actors=3)

    code, out, _ = _check(site.config)

    assert (local_code, code) == (0, 0), out
    assert "scoring: local" in local_out
    assert "scoring: ray, a pool of 3 actors (1 CPU each) on the Ray cluster at h:6379" in out


def _sees_a_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@pytest.mark.slow
def test_check_prints_the_device_and_a_gpu_asked_for_and_absent_stops_check_and_run(
    tmp_path: Path, make_bundle
) -> None:

    from gicls.errors import DeviceError

    if _sees_a_gpu():
        pytest.skip("this machine has a GPU")
    models_dir = make_bundle()
    site = harness.write_config(tmp_path, models_dir)
    code, out, _ = _check(site.config)
    assert code == 0, out
    assert "device: cpu (inference.device = 'auto' and TensorFlow sees no GPU)" in out

    site = harness.write_config(tmp_path, models_dir, inference={"device": "gpu"})
    code, out, err = _check(site.config)
    assert (code, out) == (1, "")
    assert err.startswith("error: inference.device = 'gpu', but TensorFlow sees no GPU (")

    (site.inbox / "a.png").write_bytes(harness.png(1, size=40))
    with pytest.raises(DeviceError, match=r"^inference\.device = 'gpu'"):
        harness.run_once_here(site.config)
    assert (site.inbox / "a.png").exists() and not site.audit_log.exists()  # nothing done
