"""The daemon's life cycle: start-up checks, recovery, READY, the loop, an orderly stop.

``build_daemon`` assembles the parts and ``run`` drives them. Order matters: nothing is moved
before the configuration, the folders and the bundle are known good and the single-instance
lock is held; READY=1 is only sent once the model is warm, the journal has been replayed and
the inbox scanned, so systemd's "started" means "working".
"""

from __future__ import annotations

import contextlib
import functools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, Unpack

from gicls.config import GiclsConfig
from gicls.daemon.audit_writer import AuditWriter
from gicls.daemon.background_reports import BackgroundReports
from gicls.daemon.decide import ReviewPolicy
from gicls.daemon.faults import Faults
from gicls.daemon.journal import Journal, replay
from gicls.daemon.lock import StateLock
from gicls.daemon.loop import Loop, LoopSettings
from gicls.daemon.metrics import DaemonMetrics
from gicls.daemon.notify import Notifier
from gicls.daemon.pipeline import Pipeline, PipelineOptions
from gicls.daemon.pseudonyms import Pseudonyms
from gicls.daemon.recovery import recover_at_start
from gicls.daemon.route import Router
from gicls.daemon.scoring import ScoringThread
from gicls.daemon.seen_store import SNAPSHOT_NAME, SeenStore
from gicls.daemon.serving import Loader, ServingModel, configure_threads, load_ensemble
from gicls.daemon.settle import SettleTracker, empty_timeout
from gicls.daemon.startup import InboxGuard, Layout, prepare_layout
from gicls.daemon.studies import StudyNames
from gicls.daemon.study_reports import StudyReporter
from gicls.daemon.study_watch import StudyWatch
from gicls.daemon.video_job import VideoSettings
from gicls.daemon.video_runner import VideoRunner
from gicls.daemon.watch import InboxWatcher, scan
from gicls.errors import ConfigError
from gicls.logs import get_logger
from gicls.models.devices import use_device

log = get_logger(__name__)


def idle_tick(stability_seconds: float, max_wait_ms: int) -> float:
    """How long the idle loop sleeps: fine enough to notice settling and batch deadlines."""
    bounds = [0.25, stability_seconds / 4]
    if max_wait_ms > 0:
        bounds.append(max_wait_ms / 1000)
    return max(0.01, min(bounds))


def _save_at_stop(store: SeenStore, journal: Journal) -> None:
    """A clean stop saves the seen-index, so the next start reads no more of the log than
    other daemons appended meanwhile; not while a batch is unfinished (see seen_store.py)."""
    if journal.idle:
        store.quiet(save=True)


@dataclass
class Daemon:
    """Every part of a started daemon, recovered and ready to loop; ``close`` releases them.

    The cleanup stack releases in reverse order of acquisition: the observer stops, the
    journal and the audit log close, and the state lock goes last.
    """

    layout: Layout
    model: ServingModel
    router: Router
    audit: AuditWriter
    journal: Journal
    pipeline: Pipeline
    recovered: int  # files finished by recovery before the loop starts
    watcher: InboxWatcher | None  # None with --once
    tracker: SettleTracker
    loop: Loop
    notifier: Notifier
    cleanup: contextlib.ExitStack

    def close(self) -> None:
        self.cleanup.close()


class StartOptions(TypedDict, total=False):
    once: bool  # no observer, no rescans: exit once the inbox is done (default False)
    notifier: Notifier  # default: from NOTIFY_SOCKET / WATCHDOG_USEC
    faults: Faults  # default: from GICLS_FAULT


def _metrics(path: Path | None) -> DaemonMetrics | None:
    """The metrics of ``[daemon] metrics_file``, written once now, or None when unset."""
    if path is None:
        return None
    if not path.parent.is_dir():  # the textfile collector's folder is the operator's to make
        raise ConfigError(f"key 'daemon.metrics_file': folder {path.parent} does not exist")
    metrics = DaemonMetrics(path)
    try:
        metrics.write(strict=True)
    except OSError as exc:
        raise ConfigError(f"key 'daemon.metrics_file': cannot write {path}: {exc}") from None
    return metrics


def build_daemon(
    config: GiclsConfig,
    stop: threading.Event,
    reload: threading.Event,
    **options: Unpack[StartOptions],
) -> Daemon:
    """Check, lock, load, recover and scan; everything acquired is released if a step fails.

    Raises DaemonError/ModelBundleError/ConfigError when the daemon cannot start safely.
    """
    settings = config.daemon
    once = options.get("once", False)
    notifier = options.get("notifier") or Notifier.from_env()
    faults = options.get("faults") or Faults.from_env()
    layout = Layout.of(settings)
    prepare_layout(layout)
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(StateLock(layout.state_dir))
        metrics = _metrics(settings.metrics_file)  # before the slow bundle load: fails fast
        if metrics is not None:
            cleanup.callback(metrics.write)  # the last counts, when the daemon stops
        use_device(config.inference.device, "inference.device")
        notifier.status("loading model bundle")
        configure_threads()
        loader: Loader = functools.partial(load_ensemble, warm_batch=settings.max_batch)
        # An actor pool keeps one more batch than it has actors in flight; the local ensemble
        # scores on a thread of its own while the next batch is read and decoded.
        scorer: ScoringThread | None = None
        if config.inference.backend == "ray":
            from gicls.daemon.ray_pool import ActorPool  # imports ray: only when asked for

            pool = ActorPool(config, warm_batch=settings.max_batch)
            cleanup.callback(pool.close)
            loader, in_flight = pool.load, config.inference.actors + 1
        else:
            scorer = ScoringThread()
            cleanup.callback(scorer.close)
            in_flight = 2
        model = ServingModel(
            config.paths.models_dir, config.classes, config.inference.precision, loader=loader
        )
        cleanup.callback(model.close)
        router = Router(layout.output_dir)
        router.prepare(config.classes)
        audit = AuditWriter(
            layout.audit_log, config.classes, metrics.row_written if metrics else None
        )
        cleanup.callback(audit.close)
        entries = replay(layout.journal)
        journal = Journal(layout.journal, entries)  # compacted by recovery (the disk may be full)
        cleanup.callback(journal.close)
        notifier.status("reading the audit log")
        seen_store = SeenStore(layout.audit_log, layout.state_dir / SNAPSHOT_NAME)
        pseudonyms = Pseudonyms(layout.state_dir) if settings.pseudonymise_studies else None
        studies = StudyNames(config.classes, layout.audit_log.name, pseudonyms)
        cleanup.callback(_save_at_stop, seen_store, journal)
        pipeline = Pipeline(
            inbox=layout.inbox,
            work=layout.work,
            router=router,
            journal=journal,
            audit=audit,
            seen=seen_store.index,
            model=model,
            options=PipelineOptions(
                config.classes, ReviewPolicy.of(settings), settings.on_duplicate
            ),
            faults=faults,
            studies=studies,
            scorer=scorer,
        )
        notifier.status(f"recovering {len(entries)} journal entries")
        recovered = recover_at_start(entries, pipeline, seen_store, notifier, stop)
        guard = InboxGuard.of(layout.inbox)
        watcher = None if once else InboxWatcher(layout.inbox, settings.observer)
        if watcher is not None:
            watcher.start()
            cleanup.callback(watcher.stop)
        tracker = SettleTracker(
            layout.inbox,
            settings.stability_seconds,
            empty_timeout(settings.stability_seconds),
            settings.ignore,
            display=studies.display,
        )
        tracker.observe(scan(layout.inbox))
        reports = BackgroundReports(
            StudyReporter(layout.output_dir, layout.audit_log, config.classes, model, studies)
        )
        cleanup.callback(reports.close)
        study_watch = StudyWatch(
            layout.inbox,
            settings.study_quiet_seconds,
            reports,
            display=studies.display_folder,
            folder_of=studies.folder_of,
        )
        study_watch.discover()
        loop = Loop(
            settings=LoopSettings(
                max_batch=settings.max_batch,
                max_wait=settings.max_wait_ms / 1000,
                rescan_seconds=settings.rescan_seconds,
                tick=idle_tick(settings.stability_seconds, settings.max_wait_ms),
                once=once,
                stability=settings.stability_seconds,
                in_flight=in_flight,
            ),
            tracker=tracker,
            watcher=watcher,
            guard=guard,
            pipeline=pipeline,
            seen_store=seen_store,
            model=model,
            notifier=notifier,
            stop=stop,
            reload=reload,
            studies=study_watch,
            videos=VideoRunner(pipeline, VideoSettings.of(settings), notifier, reports.ask),
            metrics=metrics,
        )
        daemon = Daemon(
            layout=layout,
            model=model,
            router=router,
            audit=audit,
            journal=journal,
            pipeline=pipeline,
            recovered=recovered,
            watcher=watcher,
            tracker=tracker,
            loop=loop,
            notifier=notifier,
            cleanup=cleanup.pop_all(),  # from here on the caller closes them
        )
    return daemon


def run(
    config: GiclsConfig,
    stop: threading.Event,
    reload: threading.Event,
    **options: Unpack[StartOptions],
) -> int:
    """Run until ``stop`` is set (or, with ``once``, until the inbox is empty).

    Returns the number of files processed. Raises DaemonError/ModelBundleError/ConfigError
    when it cannot start or continue safely.
    """
    with contextlib.closing(build_daemon(config, stop, reload, **options)) as daemon:
        layout, model = daemon.layout, daemon.model
        log.info(
            "daemon_ready",
            inbox=str(layout.inbox),
            bundle_id=model.bundle_id,
            observer="none (--once)" if daemon.watcher is None else config.daemon.observer,
            waiting=len(daemon.tracker),
            recovered=daemon.recovered,
        )
        if not stop.is_set():  # not when stopped while start-up recovery waited for storage
            daemon.notifier.ready(f"watching {layout.inbox} with bundle {model.bundle_id}")
        try:
            daemon.loop.run()
        finally:
            daemon.notifier.stopping()
        processed = daemon.loop.processed + daemon.recovered
        log.info("daemon_stopped", processed=processed)
        return processed
