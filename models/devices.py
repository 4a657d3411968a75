"""Where the models compute (``[inference] device``, ``[train] device``) and in which precision
(``[inference] precision``).

A device is chosen once at start-up, before TensorFlow runs anything: "cpu" hides every GPU,
"gpu" takes one and fails (never falls back) when there is none, "auto" takes a GPU when
TensorFlow sees one. One process uses one GPU: the first one TensorFlow lists (so an explicit
``CUDA_VISIBLE_DEVICES`` picks it); the others are hidden from this process, which would
otherwise reserve memory on all of them, and are left to other processes (one daemon per
GPU). The chosen GPU grows its memory as needed instead of reserving it all up front.

"auto" precision is what is fast where the ensemble runs: float16 on a GPU, bfloat16 on a CPU
with native bfloat16 arithmetic (AVX512-BF16 or AMX; without it bfloat16 is emulated and
slower than float32), float32 otherwise. Whatever is chosen, a reduced precision is still only
served when the guard accepts it (gicls.models.guard).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gicls.errors import DeviceError
from gicls.logs import get_logger

log = get_logger(__name__)

CPUINFO = Path("/proc/cpuinfo")
# /proc/cpuinfo flags of the x86 instructions that compute in bfloat16 natively.
NATIVE_BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")


def native_bfloat16_flags(cpuinfo: str) -> list[str]:
    """The ``NATIVE_BFLOAT16_FLAGS`` that every processor listed in ``cpuinfo`` (the text of
    /proc/cpuinfo) has: a flag missing on one core would make a thread on it emulate."""
    flag_sets = [
        set(value.split())
        for name, _, value in (line.partition(":") for line in cpuinfo.splitlines())
        if name.strip() == "flags"
    ]
    if not flag_sets:
        return []
    common = set.intersection(*flag_sets)
    return [flag for flag in NATIVE_BFLOAT16_FLAGS if flag in common]


def read_cpuinfo() -> str:
    """This machine's /proc/cpuinfo ("" where there is none: no native bfloat16 assumed)."""
    try:
        return CPUINFO.read_text(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class DevicePlan:
    """The device a process computes on."""

    kind: str  # "cpu" | "gpu"
    gpu: str | None  # the physical GPU used (TensorFlow's name), None on the CPU
    hidden: tuple[str, ...]  # GPUs hidden from this process
    reason: str  # why, in words

    def describe(self) -> str:
        if self.gpu is None:
            return f"cpu ({self.reason})"
        text = f"gpu {self.gpu}, memory growth on ({self.reason})"
        if self.hidden:
            text += (
                f"; {', '.join(self.hidden)} left to other processes (one process per GPU: "
                "start one per GPU with CUDA_VISIBLE_DEVICES)"
            )
        return text


def plan_device(asked: str, gpus: Sequence[str], key: str, why_no_gpu: str) -> DevicePlan:
    """The device for ``asked`` ("auto" | "cpu" | "gpu", the value of config ``key``) given the
    GPUs TensorFlow lists; DeviceError naming ``key`` when a GPU is asked for and there is none
    (``why_no_gpu`` says what may be missing)."""
    if asked == "cpu":
        return DevicePlan("cpu", None, tuple(gpus), f"{key} = 'cpu'")
    if not gpus:
        if asked == "gpu":
            raise DeviceError(
                f"{key} = 'gpu', but TensorFlow sees no GPU ({why_no_gpu}); set {key} = "
                "'cpu' or 'auto' to compute on the CPU"
            )
        return DevicePlan("cpu", None, (), f"{key} = 'auto' and TensorFlow sees no GPU")
    return DevicePlan("gpu", gpus[0], tuple(gpus[1:]), f"{key} = {asked!r}")


def _why_no_gpu(built_with_cuda: bool) -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not built_with_cuda:
        return "this TensorFlow is built without CUDA: install tensorflow[and-cuda]"
    if visible is not None:
        return f"CUDA_VISIBLE_DEVICES={visible!r}"
    return "no NVIDIA driver or device found; under systemd, see gicls.service.d/gpu.conf.example"


def use_device(asked: str, key: str) -> DevicePlan:
    """Choose the device for ``asked`` and make TensorFlow use only it (call at start-up)."""
    import tensorflow as tf

    physical = tf.config.list_physical_devices("GPU")
    plan = plan_device(
        asked, [d.name for d in physical], key, _why_no_gpu(tf.test.is_built_with_cuda())
    )
    if physical:  # with no GPU there is nothing to hide or to configure
        kept = [d for d in physical if d.name == plan.gpu]
        try:
            # Only what differs is set: once TensorFlow is initialised a second call in the
            # same process may repeat the plan, but not change it.
            if tf.config.get_visible_devices("GPU") != kept:
                tf.config.set_visible_devices(kept, "GPU")
            for device in kept:
                if not tf.config.experimental.get_memory_growth(device):
                    tf.config.experimental.set_memory_growth(device, True)
        except RuntimeError as exc:
            raise DeviceError(f"{key}: cannot choose the device any more ({exc})") from None
    log.info("device_selected", key=key, device=plan.kind, gpu=plan.gpu, hidden=list(plan.hidden))
    return plan


def device_in_use() -> str:
    """ "gpu" when this process sees a GPU (after ``use_device``), else "cpu"."""
    import tensorflow as tf

    return "gpu" if tf.config.get_visible_devices("GPU") else "cpu"


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision to try for an ``[inference] precision`` value (the guard decides)."""

    asked: str  # "auto" | "float32" | "bfloat16" | "float16"
    tried: str  # "float32" | "bfloat16" | "float16"
    device: str  # "cpu" | "gpu"
    reason: str


def choose_precision(asked: str, device: str, cpuinfo: str) -> PrecisionChoice:
    """The precision ``asked`` means on ``device`` ("cpu" | "gpu") of a machine whose
    /proc/cpuinfo is ``cpuinfo``."""
    if asked != "auto":
        return PrecisionChoice(asked, asked, device, f"inference.precision = {asked!r}")
    if device == "gpu":
        return PrecisionChoice(asked, "float16", device, "auto on a GPU")
    flags = native_bfloat16_flags(cpuinfo)
    if flags:
        reason = f"auto on a CPU with native bfloat16 ({', '.join(flags)})"
        return PrecisionChoice(asked, "bfloat16", device, reason)
    return PrecisionChoice(asked, "float32", device, "auto on a CPU without native bfloat16")


def resolve_precision(asked: str) -> PrecisionChoice:
    """``choose_precision`` for this process: the device it uses and this machine's CPU."""
    return choose_precision(asked, device_in_use(), read_cpuinfo())
