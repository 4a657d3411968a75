"""systemd/gicls.service and its example drop-in: the directives the daemon relies on, and
systemd's own checks (``systemd-analyze verify`` and ``security``, Debian package systemd).

The unit's ExecStart names /opt/gicls, which does not exist on a test machine and would make
verify fail for that reason alone; the checked copies point ExecStart at a real script instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
UNIT = REPO_ROOT / "systemd" / "gicls.service"
DROP_IN = REPO_ROOT / "systemd" / "gicls.service.d" / "override.conf.example"
MAX_EXPOSURE = 2.0  # systemd-analyze security: 0 = fully locked down, 10 = UNSAFE

Directives = list[tuple[str, str, str]]


def parse_unit(text: str) -> Directives:
    """(section, key, value) in file order; repeated keys are kept, as systemd keeps them."""
    directives: Directives = []
    section = ""
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        directives.append((section, key.strip(), value.strip()))
    return directives


def values(directives: Directives, section: str, key: str) -> list[str]:
    return [v for s, k, v in directives if (s, k) == (section, key)]


def value(directives: Directives, section: str, key: str) -> str:
    found = values(directives, section, key)
    assert found, f"[{section}] {key}= is missing"
    return found[-1]


def seconds(text: str) -> float:
    """A systemd time span ("300", "5min", "1min 30s") in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    return sum(
        float(number) * units[unit]
        for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    )


@pytest.fixture(scope="module")
def unit() -> Directives:
    return parse_unit(UNIT.read_text())


def test_service_type_life_cycle_and_restart(unit: Directives) -> None:
    assert value(unit, "Service", "Type") == "notify"
    assert value(unit, "Service", "NotifyAccess") == "main"
    assert value(unit, "Service", "Restart") == "on-failure"
    assert seconds(value(unit, "Service", "RestartSec")) > 0
    assert seconds(value(unit, "Service", "WatchdogSec")) == 60
    assert seconds(value(unit, "Service", "TimeoutStartSec")) >= 300
    assert seconds(value(unit, "Service", "TimeoutStopSec")) >= 30
    assert value(unit, "Service", "KillMode") == "mixed"
    assert value(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert value(unit, "Install", "WantedBy") == "multi-user.target"


def test_exec_start_runs_the_venv_daemon_with_an_absolute_config(unit: Directives) -> None:
    program, command, option, config = value(unit, "Service", "ExecStart").split()

    assert program.startswith("/") and program.endswith("/.venv/bin/gicls-daemon")
    assert (command, option) == ("run", "--config")
    assert config.startswith("/") and config.endswith(".toml")


def test_fixed_account_and_its_directories(unit: Directives) -> None:
    assert value(unit, "Service", "User") == "gicls"
    assert value(unit, "Service", "Group") == "gicls"
    assert values(unit, "Service", "DynamicUser") in ([], ["no"])
    assert value(unit, "Service", "UMask") == "0007"
    state = value(unit, "Service", "StateDirectory")
    cache = value(unit, "Service", "CacheDirectory")
    environment = dict(
        item.split("=", 1)
        for line in values(unit, "Service", "Environment")
        for item in line.split()
    )
    # HOME and KERAS_HOME must be writable under ProtectSystem=strict: inside those directories.
    assert environment["HOME"] == f"/var/lib/{state}"
    assert environment["KERAS_HOME"].startswith(f"/var/cache/{cache}/")


def test_sandbox(unit: Directives) -> None:
    for key, expected in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictSUIDSGID", "yes"),
        ("LockPersonality", "yes"),
        ("RestrictRealtime", "yes"),
    ]:
        assert value(unit, "Service", key) == expected, key
    writable = " ".join(values(unit, "Service", "ReadWritePaths")).split()
    assert writable and all(path.startswith("/") for path in writable)
    assert re.fullmatch(r"\d+[KMGT]", value(unit, "Service", "MemoryMax"))
    # TensorFlow's JIT needs writable+executable memory.
    assert values(unit, "Service", "MemoryDenyWriteExecute") in ([], ["no"])


def test_drop_in_example_resets_list_settings_before_setting_them() -> None:
    directives = [(k, v) for s, k, v in parse_unit(DROP_IN.read_text()) if s == "Service"]
    for key in ("ExecStart", "ReadWritePaths"):
        assigned = [v for k, v in directives if k == key]
        assert len(assigned) == 2 and assigned[0] == "" and assigned[1], key


# systemd-analyze ---------------------------------------------------------------------------


def _runnable_copy(folder: Path, drop_in: bool = False) -> Path:
    """gicls.service (and optionally its drop-in) in ``folder``, ExecStart on a real script."""
    daemon = folder / "bin" / "gicls-daemon"
    daemon.parent.mkdir(parents=True, exist_ok=True)
    daemon.write_text("#!/bin/sh\nexit 0\n")
    daemon.chmod(0o755)

    def real_exec(text: str) -> str:
        return re.sub(r"^ExecStart=/\S+", f"ExecStart={daemon}", text, flags=re.MULTILINE)

    unit = folder / "gicls.service"
    unit.write_text(real_exec(UNIT.read_text()))
    if drop_in:
        # systemd-analyze reads drop-ins from "<unit>.d/" beside the unit file.
        conf = folder / "gicls.service.d" / "override.conf"
        conf.parent.mkdir()
        conf.write_text(real_exec(DROP_IN.read_text()))
    return unit


def _verify(analyze: str, unit: Path) -> tuple[int, list[str]]:
    """Exit code and the diagnostics about ``unit`` (systemd may also talk about its own units)."""
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120
    )
    folder = str(unit.parent)
    lines = (done.stdout + done.stderr).splitlines()
    return done.returncode, [line for line in lines if folder in line or unit.name in line]


@pytest.fixture(scope="module")
def analyze(tmp_path_factory: pytest.TempPathFactory) -> str:
    """systemd-analyze, once it has shown it accepts a good unit and flags a broken one."""
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze not found (Debian package: systemd)")
    folder = tmp_path_factory.mktemp("probe")
    good = folder / "probe-good.service"
    good.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    bad = folder / "probe-bad.service"
    bad.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\nNoSuchKey=1\n")
    code, diagnostics = _verify(found, good)
    if code != 0 or diagnostics:
        pytest.skip(f"systemd-analyze verify cannot run here: {' | '.join(diagnostics)}")
    if not _verify(found, bad)[1]:
        pytest.skip("systemd-analyze verify does not report unknown keys here")
    return found


@pytest.mark.parametrize("drop_in", [False, True], ids=["unit", "unit+drop-in"])
def test_systemd_analyze_verify_is_clean(analyze: str, tmp_path: Path, drop_in: bool) -> None:
    code, diagnostics = _verify(analyze, _runnable_copy(tmp_path, drop_in))

    assert (code, diagnostics) == (0, [])


def test_systemd_analyze_security_exposure(analyze: str, tmp_path: Path) -> None:
    unit = _runnable_copy(tmp_path)
    done = subprocess.run(
        [analyze, "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "--offline" in done.stderr:
        pytest.skip(f"this systemd-analyze has no --offline: {done.stderr.strip()}")
    match = re.search(r"Overall exposure level for gicls\.service: (\d+(?:\.\d+)?)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr[-2000:]

    assert float(match.group(1)) <= MAX_EXPOSURE
