"""The bench's limits are bounds: the nominal table, the clock it is multiplied by, and the rule that picks the
larger of nominal and GEMM, tested on their arithmetic (no timing asserted)."""

from __future__ import annotations

import pytest
import torch

from deeppose_lab import limits

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
cpu MHz\t\t: 2596.132
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512dq avx512_bf16 avx512_vnni

processor\t: 1
vendor_id\t: AuthenticAMD
cpu MHz\t\t: 2596.132
"""
SAPPHIRE_RAPIDS = ZEN4.replace("AuthenticAMD", "GenuineIntel").replace("cpu family\t: 25", "cpu family\t: 6").replace(
    "avx512_vnni", "avx512_vnni amx_bf16 amx_tile")


def cpu(text: str, tmp_path, max_khz: str | None = None) -> limits.Cpu:
    path, freq = tmp_path / "cpuinfo", tmp_path / "cpuinfo_max_freq"
    path.write_text(text)
    if max_khz is not None:
        freq.write_text(max_khz)
    found = limits.read_cpu(path, freq)
    assert found is not None
    return found


def test_cpuinfo_is_read_from_the_first_processor(tmp_path):
    zen4 = cpu(ZEN4, tmp_path)
    assert (zen4.vendor, zen4.family, zen4.model_name) == ("AuthenticAMD", 25, "AMD EPYC")
    assert {"avx512f", "avx512_bf16"} <= zen4.flags and zen4.listed_mhz == 2596.132
    assert cpu(ZEN4, tmp_path, max_khz="3700000\n").listed_mhz == 3700.0  # cpufreq's maximum, where stated
    assert limits.read_cpu(tmp_path / "missing") is None


@pytest.mark.parametrize(("text", "fp32", "bf16"), [
    (ZEN4, 32, 64),  # two 256-bit FMA units (measured here: 31.9 and 63.6 FLOPs a cycle, docs/performance.md)
    (SAPPHIRE_RAPIDS, 64, 1024),  # two 512-bit FMA units; AMX: 16×16×32 multiply-adds every 16 cycles
    (ZEN4.replace("AuthenticAMD", "GenuineIntel").replace(" avx512f avx512dq avx512_bf16 avx512_vnni", ""),
     32, 32),  # AVX2 only: bf16 runs on the fp32 units
    (ZEN4.replace("cpu family\t: 25", "cpu family\t: 26"), 64, 128),  # Zen 5: 512-bit units
])
def test_flops_per_cycle_follow_the_isa(tmp_path, text, fp32, bf16):
    c = cpu(text, tmp_path)
    assert limits.flops_per_cycle(c, torch.float32) == fp32
    assert limits.flops_per_cycle(c, torch.bfloat16) == bf16


def test_an_unknown_core_has_no_nominal_peak(tmp_path):
    arm = cpu("processor\t: 0\nflags\t\t: fp asimd evtstrm\n", tmp_path)
    assert limits.flops_per_cycle(arm, torch.float32) is None
    assert limits.nominal_peak(arm, torch.float32, cores=2, ghz=3.0) is None
    assert limits.nominal_peak(None, torch.float32, cores=2, ghz=3.0) is None


def test_nominal_peak_is_cores_times_flops_a_cycle_times_clock(tmp_path):
    assert limits.nominal_peak(cpu(ZEN4, tmp_path), torch.bfloat16, cores=2, ghz=3.6) == pytest.approx(460.8)


def test_the_limit_is_the_larger_bound_and_says_which():
    nominal = limits.limit_of(460.0, {"matmul": 410.0, "conv1x1": 430.0}, 3.6)
    assert (nominal.gflop_per_s, nominal.bound, nominal.best_gemm) == (460.0, "nominal", 430.0)
    gemm = limits.limit_of(300.0, {"matmul": 410.0, "conv1x1": 430.0}, 2.6)  # a clock read too low
    assert (gemm.gflop_per_s, gemm.bound) == (430.0, "GEMM (conv1x1)")
    assert limits.limit_of(None, {"linear": 50.0}, None).bound == "GEMM (linear)"


def test_no_gemm_the_probe_timed_can_exceed_the_limit_it_makes(tmp_path):
    # Whatever the times, the limit bounds every GEMM it was made from, and the clock used is never below the
    # one /proc/cpuinfo lists (a VM lists its base clock; the cores boost above it).
    probe = limits.LimitProbe(torch.float32, cpu(ZEN4, tmp_path), 2, limits.gemms(torch.float32, scale=32),
                              (lambda: None, 16_000_000))
    for seconds in ([1e-3, 1e-4, 1e-5, 1.0], [1.0, 1.0, 1.0, 1e-3], [1e-6, 1.0, 1.0, 10.0]):
        limit = probe.limit(seconds)
        rates = [flops / t / 1e9 for (_, flops), t in zip(probe.gemms.values(), seconds[:3], strict=True)]
        assert limit.gflop_per_s >= max(rates) and limit.ghz >= 2.596132
    with pytest.raises(ValueError, match="3 times for 4 calls"):
        probe.limit([1.0, 1.0, 1.0])


def test_a_share_of_a_limit_never_prints_above_100_percent():
    assert [limits.share_text(f) for f in (0.0, 0.583, 1.0)] == ["0%", "58%", "100%"]
    assert limits.share_text(1.0000001) == limits.share_text(3.0) == "ABOVE LIMIT"


def test_the_clock_loop_runs_sixteen_dependent_adds_an_iteration():
    counter = limits.clock_counter()
    if counter is None:
        pytest.skip("no x86 C compiler here; the bench then multiplies by the listed clock")
    assert counter(1000) == limits.ADDS_PER_LOOP * 1000  # the adds ran (not folded away): cycles = 16 × iterations


def test_every_gemm_of_the_probe_runs_and_counts_its_flops():
    for name, (fn, flops) in limits.gemms(torch.bfloat16, scale=32).items():
        assert fn() is not None and flops > 0, name
