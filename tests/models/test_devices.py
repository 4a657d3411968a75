"""Which device computes (the GPU lists TensorFlow could give) and which precision "auto"
means, from /proc/cpuinfo text and the device in use."""

from __future__ import annotations

import pytest

from gicls.errors import DeviceError
from gicls.models.devices import (
    choose_precision,
    device_in_use,
    native_bfloat16_flags,
    plan_device,
    use_device,
)

# Two logical processors of a Sapphire Rapids Xeon (flags shortened).
SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile avx512_fp16
bugs\t\t: spectre_v1

processor\t: 1
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile avx512_fp16
bugs\t\t: spectre_v1
"""
# A Cascade Lake Xeon: AVX-512, but no bfloat16 instructions.
CASCADE_LAKE = """processor\t: 0
flags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni
"""
# A Cooper Lake core has AVX512-BF16 only; this text pairs it with one that has neither.
MIXED = """processor\t: 0
flags\t\t: fpu avx512f avx512_bf16
processor\t: 1
flags\t\t: fpu avx512f
"""


def test_native_bfloat16_is_read_from_the_cpu_flags():
    assert native_bfloat16_flags(SAPPHIRE_RAPIDS) == ["avx512_bf16", "amx_bf16"]
    assert native_bfloat16_flags(CASCADE_LAKE) == []
    assert native_bfloat16_flags("flags : fpu avx512_bf16\n") == ["avx512_bf16"]


def test_a_flag_counts_only_when_every_processor_has_it():
    assert native_bfloat16_flags(MIXED) == []


def test_no_cpuinfo_means_no_native_bfloat16():
    # aarch64 lists "Features", and a sandbox may have no /proc at all.
    assert native_bfloat16_flags("") == []
    assert native_bfloat16_flags("processor : 0\nFeatures : fp asimd bf16\n") == []


def test_auto_precision_is_bfloat16_on_a_cpu_with_native_bfloat16_only():
    fast = choose_precision("auto", "cpu", SAPPHIRE_RAPIDS)
    assert (fast.tried, fast.device) == ("bfloat16", "cpu")
    assert "amx_bf16" in fast.reason
    assert choose_precision("auto", "cpu", CASCADE_LAKE).tried == "float32"


def test_auto_precision_is_float16_on_a_gpu_whatever_the_cpu():
    assert choose_precision("auto", "gpu", CASCADE_LAKE).tried == "float16"
    assert choose_precision("auto", "gpu", SAPPHIRE_RAPIDS).tried == "float16"


def test_an_explicit_precision_is_tried_as_asked():
    for asked in ("float32", "bfloat16", "float16"):
        choice = choose_precision(asked, "cpu", CASCADE_LAKE)
        assert (choice.asked, choice.tried) == (asked, asked)


GPUS = ["/physical_device:GPU:0", "/physical_device:GPU:1"]


def test_auto_takes_the_first_gpu_and_leaves_the_others_to_other_processes():
    plan = plan_device("auto", GPUS, "inference.device", "unused")
    assert (plan.kind, plan.gpu, plan.hidden) == ("gpu", GPUS[0], (GPUS[1],))
    assert "memory growth on" in plan.describe() and GPUS[1] in plan.describe()


def test_auto_without_a_gpu_computes_on_the_cpu():
    plan = plan_device("auto", [], "inference.device", "unused")
    assert (plan.kind, plan.gpu, plan.hidden) == ("cpu", None, ())


def test_cpu_hides_every_gpu():
    plan = plan_device("cpu", GPUS, "train.device", "unused")
    assert (plan.kind, plan.gpu, plan.hidden) == ("cpu", None, tuple(GPUS))


def test_a_gpu_asked_for_and_absent_stops_with_the_key_and_the_likely_cause():
    with pytest.raises(DeviceError) as caught:
        plan_device("gpu", [], "train.device", "CUDA_VISIBLE_DEVICES=''")
    message = str(caught.value)
    assert message.startswith("train.device = 'gpu', but TensorFlow sees no GPU")
    assert "CUDA_VISIBLE_DEVICES=''" in message


def test_on_this_machine_tensorflow_sees_no_gpu_so_gpu_is_refused_and_auto_is_the_cpu(
    monkeypatch,
):
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceError, match=r"^inference.device = 'gpu'.*CUDA_VISIBLE_DEVICES=''"):
        use_device("gpu", "inference.device")
    assert use_device("auto", "inference.device").kind == "cpu"
    assert device_in_use() == "cpu"
