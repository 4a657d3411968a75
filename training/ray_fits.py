"""The conditions' fits as Ray tasks (``[cluster] backend = "ray"``).

The driver puts the prepared data (with the decoded uint8 image cache) into the object store
once; every task reads it from there as a read-only, zero-copy view. A task may run on another
machine, so it never writes into the driver's stage: it fits into a scratch folder of its own
and returns the files' bytes, which the driver writes into the stage that
``gicls.training.pipeline.train_bundle`` publishes. Epoch lines travel back through a small
queue actor and are logged by the driver as they arrive, as a local run logs them. A fit that
fails is tried once more; a second failure names the condition and nothing is published.

Ray is reached only through ``gicls.cluster``; this module is imported only for the ray backend.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from gicls.cluster import connect, import_ray
from gicls.config import GiclsConfig
from gicls.errors import GiclsError
from gicls.logs import get_logger
from gicls.models.bundle import condition_files, replace_in_stage
from gicls.training.balance import BalancedSet
from gicls.training.fit import FitResult
from gicls.training.pipeline import ConditionFit, PreparedData

log = get_logger(__name__)

# A fit is tried this many times before the run gives up on it (a dead node, an out-of-memory
# worker or a broken fit all get one more chance).
ATTEMPTS = 2
# How often the driver relays queued epoch lines while no fit has finished.
RELAY_SECONDS = 0.5
# Enough of a Ray node id to tell the nodes of a cluster apart in progress lines.
NODE_ID_CHARS = 12


class ProgressQueue:
    """A Ray actor the tasks post progress events to and the driver takes them from.

    Calls from one task reach it in the order they were made, so a condition's lines stay in
    order; posting does not wait for the driver.
    """

    def __init__(self) -> None:
        self._events: list[tuple[str, dict[str, Any]]] = []

    def post(self, event: str, fields: dict[str, Any]) -> None:
        self._events.append((event, fields))

    def take(self) -> list[tuple[str, dict[str, Any]]]:
        events, self._events = self._events, []
        return events


@dataclass(frozen=True)
class FitOutput:
    """What a fit task hands back: the fit, its manifest entry and its files' bytes by the
    file's path in the bundle."""

    result: FitResult
    entry: dict[str, Any]
    files: dict[str, bytes]


def _fit_task(
    fit: ConditionFit,
    config: GiclsConfig,
    data: PreparedData,
    balanced: BalancedSet,
    label: str,
    attempt: int,
    events: Any,
) -> FitOutput:
    """One condition's fit on a Ray worker; ``events`` is the driver's progress queue.

    The start and end posts wait for the queue: the driver, once it sees the task end (done or
    failed), finds every line the task posted. TensorFlow keeps a thread per core of the node
    (unlike the inference actors): with fewer threads a fit sums in another order and the
    bundle would no longer equal a local run's bit for bit (tests/training/test_ray_fits.py).
    """
    ray = import_ray()
    node = ray.get_runtime_context().get_node_id()[:NODE_ID_CHARS]
    ray.get(
        events.post.remote("fit_started", {"condition": label, "attempt": attempt, "node": node})
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gicls-fit-") as scratch:
        folder = Path(scratch)
        result, entry = fit(
            config,
            data,
            balanced,
            folder,
            label,
            lambda fields: events.post.remote("epoch_done", {**fields, "node": node}),
        )
        files = {
            name: (folder / name).read_bytes()
            for name in condition_files(balanced.class_name)
            if (folder / name).is_file()
        }
    seconds = round(time.perf_counter() - started, 1)
    ray.get(events.post.remote("fit_done", {"condition": label, "node": node, "seconds": seconds}))
    return FitOutput(result, entry, files)


def fit_on_ray(
    config: GiclsConfig,
    data: PreparedData,
    work: Sequence[tuple[BalancedSet, str]],
    staging: Path,
    fit: ConditionFit,
) -> dict[str, tuple[FitResult, dict[str, Any]]]:
    """Run ``fit`` as a Ray task for every (balanced set, progress label) of ``work``; write
    each one's files into ``staging`` and return, by condition, its fit and manifest entry, as
    the local loop does."""
    ray = connect(config.cluster.address)
    cluster = config.cluster
    # Ray's own retries are off: one rule (ours) for every kind of failure, and it is logged.
    task = ray.remote(_fit_task).options(
        num_cpus=cluster.cpus_per_fit, num_gpus=cluster.gpus_per_fit, max_retries=0
    )
    # No CPU reserved: the queue must never wait for a core the fits hold. On the driver's
    # node, so that losing another node loses its fits (retried), not the progress of all.
    beside_driver = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
        ray.get_runtime_context().get_node_id(), soft=True
    )
    events = ray.remote(num_cpus=0, scheduling_strategy=beside_driver)(ProgressQueue).remote()
    data_ref = ray.put(data)  # once, for every task
    condition = {balanced.class_name: (balanced, label) for balanced, label in work}

    def submit(name: str, attempt: int) -> Any:
        return task.remote(fit, config, data_ref, *condition[name], attempt, events)

    pending = {submit(name, 1): (name, 1) for name in condition}
    outputs: dict[str, FitOutput] = {}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=RELAY_SECONDS)
            _relay(ray, events)
            for ref in done:
                name, attempt = pending.pop(ref)
                try:
                    outputs[name] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    reason = _reason(ray, exc)
                    if attempt == ATTEMPTS:
                        raise GiclsError(
                            f"the fit of {name} failed {attempt} times on Ray: {reason}"
                        ) from exc
                    log.warning(
                        "fit_retried", condition=condition[name][1], attempt=attempt, error=reason
                    )
                    pending[submit(name, attempt + 1)] = (name, attempt + 1)
        _relay(ray, events)
    finally:
        for ref in pending:  # a failed run stops the fits it no longer needs
            ray.cancel(ref, force=True)
        ray.kill(events)
    return {name: _into_stage(outputs[name], staging) for name in condition}


def _relay(ray: ModuleType, events: Any) -> None:
    """Log the progress events the tasks posted, in the order they were posted."""
    for event, fields in ray.get(events.take.remote()):
        log.info(event, **fields)


def _reason(ray: ModuleType, exc: Exception) -> str:
    """One line for why a task failed: the fit's own exception when it raised one."""
    cause = exc.cause if isinstance(exc, ray.exceptions.RayTaskError) else exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"


def _into_stage(output: FitOutput, staging: Path) -> tuple[FitResult, dict[str, Any]]:
    for name, content in output.files.items():
        replace_in_stage(staging / name).write_bytes(content)
    return output.result, output.entry
