"""Joining the Ray cluster that the optional ``ray`` backends run on.

Ray is the optional ``cluster`` extra: only this module imports it, and only when a config asks
for a ray backend, so the single-machine product never loads it. Usage statistics are switched
off before the first ``ray.init``: a clinical site's machines must not report to anyone.
"""

from __future__ import annotations

import os
import signal
import threading
from types import ModuleType

from gicls.errors import ConfigError
from gicls.logs import get_logger

log = get_logger(__name__)

# [cluster] address value that starts a private Ray on this machine instead of joining one.
# It is Ray's own word for that: ray.init() without an address would join the latest cluster
# started on this machine (/tmp/ray/ray_current_cluster), whoever started it.
PRIVATE_CLUSTER = "local"


def import_ray() -> ModuleType:
    """The ray module, or a message that says which extra to install."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError(
            "a ray backend is configured but ray is not installed: pip install 'gicls[cluster]'"
        ) from exc
    return ray


def connect(address: str) -> ModuleType:
    """Join the cluster at ``address`` ([cluster] address) once per process; return ray."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # ray.init replaces the main thread's SIGTERM handler by sys.exit: a process with its own
    # (the daemon's orderly stop: batches in flight finish, the index is saved) keeps it.
    own_handler = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level="WARNING",
        )
    except ConnectionError as exc:
        raise ConfigError(f"key 'cluster.address': cannot join Ray at {address!r}: {exc}") from exc
    finally:
        if callable(own_handler) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, own_handler)
    log.info("ray_connected", address=address, nodes=len(ray.nodes()))
    return ray


def limit_tensorflow_threads(cpus: float) -> None:
    """Run this worker's TensorFlow on the CPUs Ray reserved for it, not on every core (the
    inference actors; training tasks keep every core, see gicls.training.ray_fits).

    Without it each task or actor starts as many threads as the machine has cores, and two of
    them on one machine fight over the same cores. Must run before TensorFlow executes
    anything in the process; a worker Ray reuses for a later task already has it (same share).
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(max(1, int(cpus)))
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.debug("threads_already_configured")
