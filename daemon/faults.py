"""Fault injection for crash tests: die abruptly at a named pipeline step.

``GICLS_FAULT=step[:n]`` makes the daemon ``os._exit(137)`` (the exit status of SIGKILL) the
n-th time (default: first) the pipeline reaches ``step``. ``os._exit`` skips every cleanup,
flush and ``finally``, which is what a kill -9 or a power cut leaves behind. Unset, it costs a
dictionary lookup per step. A daemon that kills itself on purpose must never run by accident
(a variable left in a unit's environment): ``GICLS_FAULT`` is refused at start-up unless
``GICLS_TEST_FAULTS=1`` is set as well, which only the test harness does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gicls.errors import DaemonError

FAULT_ENV = "GICLS_FAULT"
TEST_FAULTS_ENV = "GICLS_TEST_FAULTS"
KILLED_EXIT_STATUS = 137

# In pipeline order; "per file" steps are reached once for each file of a batch.
STEPS = (
    "claim_journaled",  # claim records fsynced, files still in the inbox
    "claimed",  # files renamed into the work folder
    "decoded",  # files read, hashed and decoded
    "predicted",  # the ensemble has scored the batch
    "route_journaled",  # audit rows and destinations fsynced in the journal
    "linked",  # per file: linked into its destination, still in the work folder
    "unlinked",  # per file: removed from the work folder
    "audit_written",  # per file: audit row written, not yet fsynced
    "audited",  # audit log fsynced
    "done",  # journal entries closed
)


# Reached only by videos (video_runner.py), so not among the steps every file passes.
VIDEO_STEPS = ("video_batch",)  # per batch of a video: scored, staged, nothing journaled


class Faults:
    """Counts arrivals at each step and exits at the configured one."""

    def __init__(self, step: str | None = None, nth: int = 1) -> None:
        if step is not None and step not in STEPS + VIDEO_STEPS:
            allowed = ", ".join(STEPS + VIDEO_STEPS)
            raise DaemonError(f"{FAULT_ENV}: unknown step {step!r}; allowed: {allowed}")
        self._step = step
        self._remaining = nth

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Faults:
        spec = environ.get(FAULT_ENV, "")
        if not spec:
            return cls()
        if environ.get(TEST_FAULTS_ENV) != "1":
            raise DaemonError(
                f"{FAULT_ENV}={spec!r} is set: it makes the daemon kill itself and is for tests "
                f"only (they also set {TEST_FAULTS_ENV}=1); unset {FAULT_ENV}"
            )
        step, _, count = spec.partition(":")
        try:
            nth = int(count) if count else 1
        except ValueError:
            raise DaemonError(
                f"{FAULT_ENV}={spec!r}: the count after ':' must be an integer"
            ) from None
        return cls(step, max(1, nth))

    def reached(self, step: str) -> None:
        if step != self._step:
            return
        self._remaining -= 1
        if self._remaining == 0:
            os._exit(KILLED_EXIT_STATUS)
