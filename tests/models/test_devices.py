"""Which device computes (the GPU lists TensorFlow could give) and which precision "auto"
means, from /proc/cpuinfo text and the device in use."""

from __future__ import annotations

from gicls.models.devices import choose_precision, native_bfloat16_flags

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
