"""Where the CPU went between two moments: one process by thread name, and the machine.

Read from Linux's /proc: a process's threads (``/proc/<pid>/task/*/stat``, named by their
``comm``) and the machine's ``cpu`` line of ``/proc/stat`` (busy, idle, and *steal*: time a
virtual machine's cores were runnable but the host ran something else). With these a benchmark
can say, beside a rate, whether the process was short of CPU (others busy, steal) or used the
CPU it had less well (more CPU per frame).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# /proc/stat's cpu line: user nice system idle iowait irq softirq steal (guest time is already
# inside user and nice).
_BUSY_FIELDS = (0, 1, 2, 5, 6)
_IDLE_FIELDS = (3, 4)
_STEAL_FIELD = 7
SHOWN_THREADS = 6  # the busiest threads a description names


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float  # time.monotonic()
    process: float  # CPU seconds of the whole process, threads that ended included
    # CPU seconds of each live thread, by "name/tid": TensorFlow's and Python's threads all
    # carry the process's name, so only the thread id tells them apart
    threads: dict[str, float]
    machine_busy: float  # CPU seconds, all cores, every process and the kernel
    machine_idle: float
    machine_steal: float


@dataclass(frozen=True)
class CpuUse:
    """The difference of two snapshots of one process."""

    wall_seconds: float
    process: float
    threads: dict[str, float]  # by "name/tid", as in CpuSnapshot
    others: float  # machine busy time not spent by the process (other processes, the kernel)
    idle: float
    steal: float

    def __add__(self, other: CpuUse) -> CpuUse:
        """Two intervals taken together (e.g. the timed parts of a pass)."""
        names = self.threads.keys() | other.threads.keys()
        return CpuUse(
            wall_seconds=self.wall_seconds + other.wall_seconds,
            process=self.process + other.process,
            threads={n: self.threads.get(n, 0.0) + other.threads.get(n, 0.0) for n in names},
            others=self.others + other.others,
            idle=self.idle + other.idle,
            steal=self.steal + other.steal,
        )

    def cores(self, seconds: float) -> float:
        """``seconds`` of CPU as cores busy on average over the interval."""
        return seconds / self.wall_seconds if self.wall_seconds > 0 else float("nan")

    def describe(self, frames: int) -> str:
        per_frame = 1000 / frames if frames else float("nan")
        busiest = sorted(self.threads.items(), key=lambda item: -item[1])[:SHOWN_THREADS]
        by_thread = ", ".join(f"{name} {seconds * per_frame:.1f}" for name, seconds in busiest)
        return (
            f"{frames} frames in {self.wall_seconds:.1f} s: the process "
            f"{self.process * per_frame:.2f} CPU ms a frame ({by_thread}); cores busy with it "
            f"{self.cores(self.process):.2f}, with anything else {self.cores(self.others):.2f}, "
            f"idle {self.cores(self.idle):.2f}, stolen by the host {self.cores(self.steal):.2f}"
        )

    def as_dict(self, frames: int) -> dict[str, object]:
        per_frame = 1000 / frames if frames else float("nan")
        return {
            "frames": frames,
            "wall_seconds": self.wall_seconds,
            "process_cpu_ms_per_frame": self.process * per_frame,
            "threads_cpu_ms_per_frame": {
                name: seconds * per_frame for name, seconds in self.threads.items()
            },
            "cores_process": self.cores(self.process),
            "cores_others": self.cores(self.others),
            "cores_idle": self.cores(self.idle),
            "cores_steal": self.cores(self.steal),
        }


def snapshot(pid: int) -> CpuSnapshot:
    """CPU times of process ``pid`` and of the machine, now."""
    machine = [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    threads: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            threads[f"{name}/{task.name}"] = _cpu_seconds((task / "stat").read_text())
        except OSError:  # the thread ended between listing and reading
            continue
    return CpuSnapshot(
        wall=time.monotonic(),
        process=_cpu_seconds(Path(f"/proc/{pid}/stat").read_text()),
        threads=threads,
        machine_busy=sum(machine[i] for i in _BUSY_FIELDS) / TICKS_PER_SECOND,
        machine_idle=sum(machine[i] for i in _IDLE_FIELDS) / TICKS_PER_SECOND,
        machine_steal=machine[_STEAL_FIELD] / TICKS_PER_SECOND,
    )


def between(before: CpuSnapshot, after: CpuSnapshot) -> CpuUse:
    process = after.process - before.process
    return CpuUse(
        wall_seconds=after.wall - before.wall,
        process=process,
        # A thread that started in between counts from zero; one that ended is left out.
        threads={
            name: seconds - before.threads.get(name, 0.0) for name, seconds in after.threads.items()
        },
        others=max(0.0, after.machine_busy - before.machine_busy - process),
        idle=after.machine_idle - before.machine_idle,
        steal=after.machine_steal - before.machine_steal,
    )


def _cpu_seconds(stat_line: str) -> float:
    # utime and stime are fields 14 and 15; the name (field 2) may hold spaces, so count from
    # its closing parenthesis.
    fields = stat_line[stat_line.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_SECOND
