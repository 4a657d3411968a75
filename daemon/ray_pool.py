"""Scoring on a Ray actor pool of fused ensembles (``[inference] backend = "ray"``).

Each actor loads the bundle with the daemon's own loader (``serving.load_ensemble``: verified
hashes, guard frames checked, bfloat16 guarded, warmed up) and only turns uint8 pixels into
scores; claim, route, audit and the journal stay in the daemon, so a crash of the daemon
leaves claimed-but-unplanned entries that recovery processes again, whoever was scoring them.

- Several batches in flight (loop.py): each goes to the actor with the fewest outstanding.
- An actor that dies (its worker killed, its node removed) is restarted by Ray
  (``max_restarts``); its batch is sent again to another actor, the images already being in
  the object store, and it gets no new batch while it restarts if another actor can take it.
  Only a batch that ``DEATHS_PER_ACTOR`` x actors deaths lost fails the daemon, as a local
  crash would (recovery and poison counting take over).
- A reload runs ``load`` on every actor (between its batches: an actor runs one call at a
  time); an actor keeps the bundle it served before, so batches started under the old bundle
  are still scored by it. Every answer carries the manifest of the bundle that scored it, so
  a restarted actor that found a newer bundle on disk is named truthfully in the audit row.

The actors read the bundle from ``models_dir``: on one machine or a shared file system that
path is enough. On several machines without one, the bundle must be at the same path on
every node (copied there by deployment, as the code is) before the daemon starts or reloads.

Ray is imported only through ``gicls.cluster`` when a pool is started, never at import.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from gicls.cluster import connect, import_ray, limit_tensorflow_threads
from gicls.config import GiclsConfig
from gicls.daemon.scoring import Scores
from gicls.errors import DaemonError, ModelBundleError
from gicls.logs import get_logger
from gicls.models.bundle import Manifest

log = get_logger(__name__)

# Deaths under one batch before it fails the daemon: every actor dying under it twice.
DEATHS_PER_ACTOR = 2
# An actor that lost a batch is restarting (seconds: a worker imports TensorFlow and loads
# the bundle): for this long, batches go to the others if there are any.
RESTART_GRACE_SECONDS = 30.0
UNAVAILABLE_RETRY_SECONDS = 1.0
RESTART_PATIENCE_SECONDS = 120.0  # a bundle load waits this long for a restarting actor


class EnsembleActor:
    """One fused ensemble in a Ray worker process (made remote by ``ActorPool``)."""

    def __init__(
        self, models_dir: str, classes: Sequence[str], precision: str, warm_batch: int, cpus: float
    ) -> None:
        limit_tensorflow_threads(cpus)  # actors share the machine
        self._bundle = (Path(models_dir), tuple(classes), precision, warm_batch)
        self._served: dict[str, Any] = {}  # bundle id -> FusedEnsemble; the newest last

    def where(self) -> tuple[int, str]:
        """This actor's process id and Ray node id (logged: operators and tests find it)."""
        return os.getpid(), import_ray().get_runtime_context().get_node_id()

    def load(self) -> tuple[Manifest, str]:
        """Load the bundle now in ``models_dir``; keep the one served before it (batches
        started under it are still to be scored). Raises what loading raises; then the
        bundles held are unchanged."""
        from gicls.daemon.serving import load_ensemble

        models_dir, classes, precision, warm_batch = self._bundle
        ensemble = load_ensemble(models_dir, classes, precision, warm_batch)
        newest = list(self._served.values())[-1:]
        self._served = {e.bundle_id: e for e in [*newest, ensemble]}
        return ensemble.manifest, ensemble.precision

    def score(self, images: np.ndarray, bundle_id: str) -> Scores:
        """Scores of uint8 ``images`` (batch, size, size, 3) by bundle ``bundle_id`` if held,
        else by the newest held (a restarted actor holds only what it loaded since)."""
        if not self._served:
            self.load()
        ensemble = self._served.get(bundle_id) or list(self._served.values())[-1]
        return Scores(ensemble(images), ensemble.manifest, ensemble.precision)


class ActorPool:
    """The daemon's handle on its actors: sends batches, re-sends lost ones, reloads all."""

    def __init__(self, config: GiclsConfig, warm_batch: int) -> None:
        settings = config.inference
        self._ray = connect(config.cluster.address)
        remote = self._ray.remote(EnsembleActor).options(
            num_cpus=settings.cpus_per_actor,
            num_gpus=settings.gpus_per_actor,
            max_restarts=-1,  # a dead actor comes back; its batch is re-sent by us, not Ray
            max_task_retries=0,
            scheduling_strategy="SPREAD",  # one node lost takes as few actors as possible
        )
        self._actors = [
            remote.remote(
                str(config.paths.models_dir),
                config.classes,
                settings.precision,
                warm_batch,
                settings.cpus_per_actor,
            )
            for _ in range(settings.actors)
        ]
        self._outstanding = [0] * len(self._actors)
        self._lost_at = [-math.inf] * len(self._actors)
        self.max_deaths = DEATHS_PER_ACTOR * len(self._actors)
        places = self._ray.get([actor.where.remote() for actor in self._actors])
        log.info(
            "ray_pool_started",
            actors=len(self._actors),
            pids=[pid for pid, _ in places],
            nodes=[node for _, node in places],
        )

    def load(self, models_dir: Path, classes: Sequence[str], precision: str) -> PoolEnsemble:
        """``serving.Loader`` for the pool: every actor loads the bundle (the actors were
        given the same ``models_dir``, ``classes`` and ``precision`` when started)."""
        loading = [actor.load.remote() for actor in self._actors]  # all at once
        answers = [
            self._get_until_alive(actor, "load", answer)
            for actor, answer in zip(self._actors, loading, strict=True)
        ]
        bundles = {manifest.bundle_id for manifest, _ in answers}
        if len(bundles) != 1:
            # The bundle was swapped while the actors loaded: refused, the next stat retries.
            raise ModelBundleError(f"bundle {models_dir}: actors loaded {sorted(bundles)}")
        manifest, served = answers[0]
        return PoolEnsemble(self, manifest, served)

    def _get_until_alive(self, actor: Any, method: str, answer: Any) -> Any:
        """The ``answer`` of ``actor.method()``, called again after a death (up to
        ``max_deaths``) or while the actor restarts (up to ``RESTART_PATIENCE_SECONDS``)."""
        exceptions = self._ray.exceptions
        deaths, patience = 0, time.monotonic() + RESTART_PATIENCE_SECONDS
        while True:
            try:
                return self._ray.get(answer)
            except exceptions.RayActorError as exc:
                unavailable = isinstance(exc, exceptions.ActorUnavailableError)
                deaths += not unavailable
                if deaths >= self.max_deaths or time.monotonic() > patience:
                    raise DaemonError(f"ray actor {method} failed: {exc}") from exc
                log.warning("ray_actor_lost", during=method, error=str(exc).splitlines()[0])
                time.sleep(UNAVAILABLE_RETRY_SECONDS if unavailable else 0.0)
                answer = getattr(actor, method).remote()

    def submit(self, images: np.ndarray, bundle_id: str) -> RemoteScores:
        return RemoteScores(self, self._ray.put(images), len(images), bundle_id)

    def healthy(self) -> list[int]:
        """The actors that lost no batch lately (the others are probably restarting)."""
        now = time.monotonic()
        return [k for k, lost in enumerate(self._lost_at) if now - lost > RESTART_GRACE_SECONDS]

    def send(self, images: Any, bundle_id: str) -> tuple[int, Any, bool]:
        """Send the images in the object store to the least busy healthy actor, else to the
        one that lost a batch longest ago; returns its index, the answer's reference and
        whether it was healthy."""
        healthy = self.healthy()
        if healthy:
            index = min(healthy, key=lambda k: self._outstanding[k])
        else:
            index = min(range(len(self._actors)), key=lambda k: self._lost_at[k])
        self._outstanding[index] += 1
        return index, self._actors[index].score.remote(images, bundle_id), bool(healthy)

    def answered(self, index: int, lost: bool) -> None:
        self._outstanding[index] -= 1
        if lost:
            self._lost_at[index] = time.monotonic()

    @property
    def ray(self) -> Any:
        return self._ray

    def close(self) -> None:
        """End the actors (they would die with the daemon anyway: it owns them)."""
        for actor in self._actors:
            self._ray.kill(actor)


class RemoteScores:
    """``scoring.PendingScores`` of one batch sent to the pool; re-sent if its actor dies.

    Ray reports an actor's death under a task as "unavailable, may or may not have been
    executed" (ActorUnavailableError) like a restart in progress, so losses are told apart by
    where the batch went: a loss on a healthy actor counts towards ``max_deaths`` (a batch
    that kills every actor it meets fails the daemon, and recovery's poison count takes
    over); a send to an actor that is restarting, made because no other was healthy, is
    retried every ``UNAVAILABLE_RETRY_SECONDS``, for at most ``RESTART_PATIENCE_SECONDS``.
    """

    def __init__(self, pool: ActorPool, images: Any, count: int, bundle_id: str) -> None:
        self._pool = pool
        self._images = images  # the object store reference: a re-send copies nothing again
        self._count = count
        self._bundle_id = bundle_id
        self._deaths = 0
        self._first_loss: float | None = None
        self._scores: Scores | None = None
        self._send_at = 0.0
        self._answer: Any = None
        self._send()

    def _send(self) -> None:
        self._actor, self._answer, self._healthy = self._pool.send(self._images, self._bundle_id)

    def done(self) -> bool:
        if self._scores is not None:
            return True
        ray = self._pool.ray
        if self._answer is None:
            if time.monotonic() < self._send_at:
                return False
            self._send()
        ready, _ = ray.wait([self._answer], timeout=0)
        if not ready:
            return False
        try:
            self._scores = ray.get(self._answer)
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as exc:
            self._pool.answered(self._actor, lost=True)
            self._lost(exc)
            return False
        self._pool.answered(self._actor, lost=False)
        return True

    def wait(self, seconds: float) -> None:
        if self._answer is None:
            time.sleep(max(0.0, min(seconds, self._send_at - time.monotonic())))
        else:
            self._pool.ray.wait([self._answer], timeout=seconds)

    def result(self) -> Scores:
        while not self.done():
            self.wait(1.0)
        return cast(Scores, self._scores)

    def _lost(self, error: Exception) -> None:
        now = time.monotonic()
        self._first_loss = self._first_loss or now
        self._deaths += self._healthy
        if (
            self._deaths >= self._pool.max_deaths
            or now - self._first_loss > RESTART_PATIENCE_SECONDS
        ):
            raise DaemonError(
                f"a batch of {self._count} images was lost {self._deaths} times on running "
                f"actors, and has waited {now - self._first_loss:.0f} s: actors keep dying"
            ) from error
        log.warning(
            "batch_resent",
            images=self._count,
            lost_actor=self._actor,
            deaths=self._deaths,
            error=str(error).splitlines()[0],
        )
        self._answer = None
        self._send_at = now if self._pool.healthy() else now + UNAVAILABLE_RETRY_SECONDS
        self.done()  # sends now if due


class PoolEnsemble:
    """What ``ServingModel.ensemble`` is with the ray backend: the bundle every actor loaded."""

    def __init__(self, pool: ActorPool, manifest: Manifest, precision: str) -> None:
        self._pool = pool
        self.manifest = manifest
        self.precision = precision
        self.classes = list(manifest.classes)
        self.image_size = manifest.image_size

    @property
    def bundle_id(self) -> str:
        return self.manifest.bundle_id

    def submit(self, images: np.ndarray) -> RemoteScores:
        return self._pool.submit(images, self.bundle_id)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Scores now, by this bundle only (a video keeps one bundle from its first frame: if
        the actor no longer holds it, the video fails and is done again from the start)."""
        scores = self.submit(images).result()
        if scores.bundle_id != self.bundle_id:
            raise ModelBundleError(
                f"scored by bundle {scores.bundle_id}, not {self.bundle_id}: the bundle changed"
            )
        return scores.values
