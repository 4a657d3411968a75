"""systemd/gicls.service and its example drop-in: the daemon run the way the unit starts,
reloads and stops it, the properties of the unit that matter (writable paths under the
sandbox, the watchdog's room), and systemd's own checks (``systemd-analyze verify`` and
``security``, Debian package systemd).

The unit's ExecStart names /opt/gicls, which does not exist on a test machine and would make
verify fail for that reason alone; the checked copies point ExecStart at a real script instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
UNIT = REPO_ROOT / "systemd" / "gicls.service"
DROP_IN = REPO_ROOT / "systemd" / "gicls.service.d" / "override.conf.example"
RAY_DROP_IN = REPO_ROOT / "systemd" / "gicls.service.d" / "ray.conf.example"
GPU_DROP_IN = REPO_ROOT / "systemd" / "gicls.service.d" / "gpu.conf.example"
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


def _environment(directives: Directives) -> dict[str, str]:
    return dict(
        item.split("=", 1)
        for line in values(directives, "Service", "Environment")
        for item in line.split()
    )


def _writable_roots(directives: Directives) -> list[Path]:
    """What stays writable under ProtectSystem=strict: ReadWritePaths and the unit's dirs."""
    roots = [
        Path(p) for line in values(directives, "Service", "ReadWritePaths") for p in line.split()
    ]
    roots += [Path("/var/lib") / d for d in values(directives, "Service", "StateDirectory")]
    roots += [Path("/var/cache") / d for d in values(directives, "Service", "CacheDirectory")]
    return roots


def _within(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def test_everything_the_daemon_writes_outside_its_data_is_writable(unit: Directives) -> None:
    """ProtectSystem=strict makes the whole tree read-only: HOME, KERAS_HOME (Keras writes its
    config there) and the working directory must lie in a writable root, and the data folders
    (ReadWritePaths) must wait for their mount."""
    assert value(unit, "Service", "ProtectSystem") == "strict"  # what makes this matter
    roots = _writable_roots(unit)
    environment = _environment(unit)
    for path in (
        environment["HOME"],
        environment["KERAS_HOME"],
        value(unit, "Service", "WorkingDirectory"),
    ):
        assert _within(Path(path), roots), path
    mounts = [Path(p) for line in values(unit, "Unit", "RequiresMountsFor") for p in line.split()]
    data = [Path(p) for line in values(unit, "Service", "ReadWritePaths") for p in line.split()]
    assert data and all(_within(path, mounts) for path in data), (data, mounts)


def test_the_account_is_fixed_so_researchers_keep_owning_the_output(unit: Directives) -> None:
    # DynamicUser would hand files to a uid that disappears with the service.
    assert value(unit, "Service", "User") and values(unit, "Service", "DynamicUser") in ([], ["no"])
    # TensorFlow's oneDNN/XLA JIT needs writable+executable memory: the first batch would die.
    assert values(unit, "Service", "MemoryDenyWriteExecute") in ([], ["no"])


def test_the_watchdog_interval_leaves_room_for_the_daemons_pings(unit: Directives) -> None:
    from gicls.daemon.notify import Notifier

    watchdog = seconds(value(unit, "Service", "WatchdogSec"))
    pings = Notifier.from_env({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": str(int(watchdog * 1e6))})
    assert pings.watchdog_interval is not None and pings.watchdog_interval <= watchdog / 2


@pytest.mark.slow
def test_the_daemon_lives_through_the_units_start_reload_and_stop(
    unit: Directives, tmp_path: Path, make_bundle
) -> None:
    """ExecStart's command line with the unit's Environment and UMask, as systemd starts it:
    READY=1 within TimeoutStartSec (Type=notify), ExecReload's command reloads the bundle
    and leaves the daemon running, SIGTERM to the main process (KillMode=mixed) stops it
    within TimeoutStopSec with exit 0 (Restart=on-failure leaves it stopped), and what it
    creates has the unit's permissions."""
    from tests.daemon import harness

    assert value(unit, "Service", "Type") == "notify"
    program, *arguments = value(unit, "Service", "ExecStart").split()
    config_option = arguments.index("--config")
    site = harness.write_config(tmp_path / "site", make_bundle())
    arguments[config_option + 1] = str(site.config)

    # The unit's directories (HOME, KERAS_HOME, WorkingDirectory), as systemd creates them,
    # moved under tmp_path.
    def moved(path: str) -> Path:
        return tmp_path / path.lstrip("/")

    environment = {
        key: str(moved(text)) if text.startswith("/") else text
        for key, text in _environment(unit).items()
    }
    working = moved(value(unit, "Service", "WorkingDirectory"))
    for folder in (working, Path(environment["HOME"]), Path(environment["KERAS_HOME"])):
        folder.mkdir(parents=True, exist_ok=True)
    umask = int(value(unit, "Service", "UMask"), 8)
    listener = harness.NotifyListener()
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log:
        daemon = subprocess.Popen(
            [str(REPO_ROOT / ".venv" / "bin" / Path(program).name), *arguments],
            env={**os.environ, **environment, "NOTIFY_SOCKET": listener.address},
            cwd=working,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: os.umask(umask),
        )
    try:
        harness.wait_until(
            lambda: "READY=1" in listener.lifecycle(),
            seconds(value(unit, "Service", "TimeoutStartSec")),
            "READY=1",
        )
        reload = value(unit, "Service", "ExecReload").replace("$MAINPID", str(daemon.pid))
        subprocess.run(reload.split(), check=True, timeout=10)
        harness.wait_until(lambda: b"bundle_loading" in log_path.read_bytes(), 30, "a reload")
        (site.inbox / "one.png").write_bytes(harness.png(1))
        harness.wait_until(lambda: harness.row_count(site.audit_log) == 1, 60, "a row")
        assert daemon.poll() is None, "the reload signal ended the daemon"
        stopping = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(seconds(value(unit, "Service", "TimeoutStopSec")))
        stopped_in = time.monotonic() - stopping
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        listener.close()
    assert code == 0, log_path.read_text()[-3000:]
    assert listener.lifecycle()[-1] == "STOPPING=1"
    folders = [path for path in site.output.iterdir() if path.is_dir()]
    for created in (site.audit_log, site.output, *folders):  # made by the daemon
        mode = created.stat().st_mode
        assert mode & 0o007 == 0 and mode & 0o060 == 0o060, (created, oct(mode))
    assert stopped_in < seconds(value(unit, "Service", "TimeoutStopSec"))


def test_drop_in_example_resets_list_settings_before_setting_them() -> None:
    directives = [(k, v) for s, k, v in parse_unit(DROP_IN.read_text()) if s == "Service"]
    for key in ("ExecStart", "ReadWritePaths"):
        assigned = [v for k, v in directives if k == key]
        assert len(assigned) == 2 and assigned[0] == "" and assigned[1], key


# systemd-analyze ---------------------------------------------------------------------------


def _runnable_copy(folder: Path, drop_in: Path | None = None) -> Path:
    """gicls.service (and optionally a drop-in) in ``folder``, ExecStart on a real script."""
    daemon = folder / "bin" / "gicls-daemon"
    daemon.parent.mkdir(parents=True, exist_ok=True)
    daemon.write_text("#!/bin/sh\nexit 0\n")
    daemon.chmod(0o755)

    def real_exec(text: str) -> str:
        return re.sub(r"^ExecStart=/\S+", f"ExecStart={daemon}", text, flags=re.MULTILINE)

    unit = folder / "gicls.service"
    unit.write_text(real_exec(UNIT.read_text()))
    if drop_in is not None:
        # systemd-analyze reads drop-ins from "<unit>.d/" beside the unit file.
        conf = folder / "gicls.service.d" / drop_in.name.removesuffix(".example")
        conf.parent.mkdir()
        conf.write_text(real_exec(drop_in.read_text()))
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


@pytest.mark.parametrize(
    "drop_in",
    [None, DROP_IN, RAY_DROP_IN, GPU_DROP_IN],
    ids=["unit", "unit+drop-in", "unit+ray-drop-in", "unit+gpu-drop-in"],
)
def test_systemd_analyze_verify_is_clean(
    analyze: str, tmp_path: Path, drop_in: Path | None
) -> None:
    code, diagnostics = _verify(analyze, _runnable_copy(tmp_path, drop_in))

    assert (code, diagnostics) == (0, [])


def _offline_security(analyze: str, unit: Path, *options: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [analyze, "security", "--offline=yes", *options, str(unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "--offline" in done.stderr or "--json" in done.stderr:
        pytest.skip(f"this systemd-analyze cannot: {done.stderr.strip()}")
    return done


def _security_checks(analyze: str, folder: Path, drop_in: Path | None) -> dict[str, dict]:
    """systemd's own reading of the sandbox: check name -> {"set": ..., "exposure": ...}."""
    done = _offline_security(analyze, _runnable_copy(folder, drop_in), "--json=short")
    return {check["name"]: check for check in json.loads(done.stdout)}


def test_only_the_ray_drop_in_opens_the_network_and_only_to_listed_addresses(
    analyze: str, tmp_path: Path
) -> None:
    strict = _security_checks(analyze, tmp_path / "unit", None)
    ray = _security_checks(analyze, tmp_path / "ray", RAY_DROP_IN)
    inet, netns, allow = (
        "RestrictAddressFamilies=~AF_(INET|INET6)",
        "PrivateNetwork=",
        "IPAddressDeny=",
    )
    # The default unit: no network namespace of the host's, no Internet sockets.
    assert (strict[netns]["set"], strict[inet]["set"]) == (True, True)
    # With the drop-in: Internet sockets, but an allow list (lower exposure than none) ...
    assert (ray[netns]["set"], ray[inet]["set"]) == (False, False)
    assert float(ray[allow]["exposure"]) < float(strict[allow]["exposure"])
    # ... and still no packet, netlink or exotic sockets.
    for family in ("AF_PACKET", "AF_NETLINK", "…"):
        assert ray[f"RestrictAddressFamilies=~{family}"]["set"], family


def _exposure(analyze: str, unit: Path) -> float:
    done = _offline_security(analyze, unit)
    match = re.search(r"Overall exposure level for gicls\.service: (\d+(?:\.\d+)?)", done.stdout)
    assert match, done.stdout[-2000:] + done.stderr[-2000:]
    return float(match.group(1))


def test_systemd_analyze_security_exposure(analyze: str, tmp_path: Path) -> None:
    assert _exposure(analyze, _runnable_copy(tmp_path)) <= MAX_EXPOSURE


def test_the_gpu_drop_in_opens_devices_and_stays_within_the_exposure_bound(
    analyze: str, tmp_path: Path
) -> None:
    strict = _exposure(analyze, _runnable_copy(tmp_path / "strict"))
    gpu = _exposure(analyze, _runnable_copy(tmp_path / "gpu", GPU_DROP_IN))
    assert strict < gpu <= MAX_EXPOSURE  # it was read, and opened only a little
