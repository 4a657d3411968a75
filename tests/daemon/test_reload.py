"""A new bundle loads beside the one serving: the loop keeps turning, batches switch cleanly.

Loading, verifying, guarding and warming a bundle can take longer than systemd's WatchdogSec,
so it runs on its own thread (RELIABILITY.md item 15); WATCHDOG=1 keeps arriving meanwhile.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.daemon_runs import parse_ts
from gicls.daemon.loop import Loop, LoopSettings
from gicls.daemon.notify import Notifier
from gicls.daemon.serving import ServingModel
from gicls.daemon.settle import SettleTracker
from gicls.daemon.startup import InboxGuard
from gicls.daemon.watch import InboxWatcher
from tests.daemon import harness
from tests.daemon.harness import CLASSES, DaemonProcess, NotifyListener, wait_until

PING_USEC = 100_000  # WATCHDOG_USEC: a ping every 0.05 s


def _pings(listener: NotifyListener) -> int:
    return listener.lifecycle().count("WATCHDOG=1")


def _idle_loop(folder: Path, model: ServingModel, notifier: Notifier, **parts: object) -> Loop:
    settings = LoopSettings(max_batch=4, max_wait=0.1, rescan_seconds=60.0, tick=0.01, once=False)
    return Loop(
        settings=settings,
        tracker=SettleTracker(folder, 0.1, 3.0, ()),
        watcher=parts.get("watcher"),  # type: ignore[arg-type]
        guard=parts.get("guard"),  # type: ignore[arg-type]
        pipeline=None,  # type: ignore[arg-type]  # an empty inbox never makes a batch
        seen_store=None,  # type: ignore[arg-type]
        model=model,
        notifier=notifier,
        stop=threading.Event(),
        reload=parts.get("reload") or threading.Event(),  # type: ignore[arg-type]
    )


def test_the_loop_keeps_pinging_while_a_slow_bundle_loads_and_a_sighup_waits_its_turn(
    tmp_path: Path,
) -> None:
    models_dir = tmp_path / "Models"
    models_dir.mkdir()
    (models_dir / "manifest.json").write_text("{}")
    finish_load = threading.Event()
    loads: list[int] = []

    def slow_loader(folder: Path, classes: object, precision: str) -> SimpleNamespace:
        loads.append(len(loads) + 1)
        if len(loads) == 2:  # the first reload hangs until the test lets it finish
            finish_load.wait(30)
        return SimpleNamespace(bundle_id=f"bundle-{len(loads)}")

    model = ServingModel(models_dir, CLASSES, "float32", loader=slow_loader)  # type: ignore[arg-type]
    reload = threading.Event()
    listener = NotifyListener()
    loop = _idle_loop(
        tmp_path, model, Notifier(listener.address, watchdog_usec=PING_USEC), reload=reload
    )
    thread = threading.Thread(target=loop.run)
    try:
        reload.set()  # SIGHUP
        thread.start()
        wait_until(lambda: len(loads) == 2, 10, "the reload to start")
        reload.set()  # a second SIGHUP while loading: remembered, no second load beside it
        during = _pings(listener)
        wait_until(lambda: _pings(listener) >= during + 5, 10, "pings while the bundle loads")
        assert loads == [1, 2] and model.bundle_id == "bundle-1" and model.loading
        finish_load.set()
        wait_until(lambda: model.bundle_id == "bundle-3", 10, "both reloads adopted in turn")
    finally:
        finish_load.set()
        loop.stop.set()
        if thread.is_alive():
            thread.join(30)
        listener.close()
    assert loads == [1, 2, 3]


def test_a_pause_keeps_pinging_but_a_dead_observer_withholds_pings(tmp_path: Path) -> None:
    """Any wait of the loop (idle, a storage-full back-off) goes through ``_pause``."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    models_dir = tmp_path / "Models"
    models_dir.mkdir()
    model = ServingModel(
        models_dir,
        CLASSES,
        "float32",
        loader=lambda *_: SimpleNamespace(bundle_id="b"),  # type: ignore[arg-type,return-value]
    )
    watcher = InboxWatcher(inbox, "inotify")
    watcher.start()
    listener = NotifyListener()
    loop = _idle_loop(
        inbox,
        model,
        Notifier(listener.address, watchdog_usec=PING_USEC),
        watcher=watcher,
        guard=InboxGuard.of(inbox),
    )
    try:
        loop._pause(1.0)
        alive_pings = _pings(listener)
        watcher.stop()  # the observer thread is gone
        loop._pause(1.0)
        dead_pings = _pings(listener) - alive_pings
    finally:
        watcher.stop()
        listener.close()
    assert alive_pings >= 5 and dead_pings == 0, (alive_pings, dead_pings)


@pytest.mark.slow
def test_watchdog_pings_arrive_from_a_real_daemon_while_it_loads_a_bundle(
    tmp_path: Path, make_bundle
) -> None:
    models_dir = make_bundle(image_size=64, seed=0)
    site = harness.write_config(tmp_path, models_dir)
    listener = NotifyListener()
    daemon = DaemonProcess(
        site.config,
        env={"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": str(PING_USEC)},
        log_name="daemon.log",
    )
    try:
        daemon.wait_ready()
        make_bundle(image_size=64, models_dir=models_dir, seed=1)
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.logged("bundle_loaded"), 90, "bundle_loaded")
    finally:
        daemon.stop()
        listener.close()
    assert daemon.process.returncode == 0, daemon.output()
    started = parse_ts(_first(daemon, "bundle_loading")["timestamp"])
    loaded = parse_ts(_first(daemon, "bundle_loaded")["timestamp"])
    during = [
        at for at, message in listener.arrivals if started < at < loaded and message == "WATCHDOG=1"
    ]
    # Pings are due every 0.05 s; a load of a 64 px bundle takes far longer than a few of those.
    assert loaded - started > 0.3, "the load was too quick to show anything"
    assert len(during) >= 3, (len(during), loaded - started)


def _first(daemon: DaemonProcess, event: str) -> dict[str, object]:
    found = [item for item in daemon.events() if item.get("event") == event]
    assert found, f"{event} was not logged:\n{daemon.output()}"
    return found[0]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "ray"])
def test_a_bundle_published_and_sighup_sent_mid_stream_switches_between_batches(
    tmp_path: Path, make_bundle, backend: str, request: pytest.FixtureRequest
) -> None:
    """On a Ray pool several batches are in flight when the new bundle arrives: each still
    names, in its rows and its batch_done line, the bundle that scored it."""
    models_dir = make_bundle(seed=0)
    site = harness.write_config(tmp_path, models_dir, stability_seconds=0.2, max_batch=4)
    # On Ray every actor loads TensorFlow and each bundle itself: starts and reloads take longer.
    patience = 1.0
    if backend == "ray":
        cluster = request.getfixturevalue("ray_cluster")
        harness.score_on_ray(site, cluster.address, actors=2, cpus_per_actor=0.5)
        patience = 2.0
    dropped: Counter[tuple[bytes, str]] = Counter()
    stop_dropping = threading.Event()

    def stream() -> None:
        n = 0
        while not stop_dropping.wait(0.03):
            data = harness.png(5000 + n, size=24)
            name = f"stream_{n:05d}.png"
            (site.inbox / name).write_bytes(data)
            dropped[(os.fsencode(name), harness.sha256(data))] += 1
            n += 1

    daemon = DaemonProcess(site.config, log_name="daemon.log")
    dropper = threading.Thread(target=stream)
    try:
        daemon.wait_ready(timeout=90 * patience)
        dropper.start()
        wait_until(lambda: harness.row_count(site.audit_log) >= 12, 60, "rows from the old bundle")
        make_bundle(models_dir=models_dir, seed=1)  # published while files keep arriving
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.logged("bundle_loaded"), 90 * patience, "bundle_loaded")
        after = harness.row_count(site.audit_log) + 12
        wait_until(lambda: harness.row_count(site.audit_log) >= after, 60, "rows after the swap")
        stop_dropping.set()
        dropper.join()
        total = sum(dropped.values())
        wait_until(lambda: harness.row_count(site.audit_log) >= total, 60, f"{total} rows")
    finally:
        stop_dropping.set()
        if dropper.is_alive():
            dropper.join()
        daemon.stop()
    assert daemon.process.returncode == 0, daemon.output()
    rows = harness.assert_invariant(site, dropped)
    loaded = _first(daemon, "bundle_loaded")
    old, new = loaded["previous"], loaded["bundle_id"]
    bundles_of_batch: dict[str, set[str]] = {}
    for row in rows:
        bundles_of_batch.setdefault(row["batch_id"], set()).add(row["model_bundle"])
    assert all(len(bundles) == 1 for bundles in bundles_of_batch.values()), bundles_of_batch
    logged = {
        e["batch_id"]: e["bundle_id"] for e in daemon.events() if e.get("event") == "batch_done"
    }
    assert {batch: logged.get(batch) for batch in bundles_of_batch} == {
        batch: next(iter(bundles)) for batch, bundles in bundles_of_batch.items()
    }
    order = [row["model_bundle"] for row in rows]
    switch = order.index(new)
    assert switch > 0 and set(order[:switch]) == {old} and set(order[switch:]) == {new}
