"""This machine's compute limits: the figures ``make bench`` divides by, chosen so that nothing can exceed them.

Two kinds of bound, per dtype. The nominal peak of the cores: cores × FLOPs per cycle (FMA datapath width,
two FLOPs per lane, twice that for AVX-512 BF16 dot products, AMX tiles for bf16) × the clock, read by timing
a chain of dependent adds (one cycle each) because a virtual machine's /proc/cpuinfo shows the base clock, not
the boost clock the cores run at. And the fastest GEMM measured through the paths the model uses (oneDNN's
linear and 1×1 convolution at large shapes, ``torch.matmul``). The limit is the larger of the two: a measured
GEMM above the nominal figure would mean the table or the clock is wrong, and the bench says which bound
applied. A figure above its limit is reported as a broken bound, never as a share above 100 % (``share_text``).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .crops import usable_cores

CPUINFO = Path("/proc/cpuinfo")
CPUFREQ_MAX = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
ADDS_PER_LOOP = 16
# Sixteen dependent register adds a loop iteration: each waits for the one before, one cycle apiece on the x86
# cores of the last fifteen years, while the loop counter runs beside them on another port; so cycles = 16 ×
# iterations. A register operand, not an immediate: some cores fold chains of immediate adds at rename.
CLOCK_SOURCE = r"""
#include <stdint.h>
uint64_t dependent_adds(uint64_t n, uint64_t one) {
  uint64_t x = 0;
  for (uint64_t i = 0; i < n; i++) {
    __asm__ volatile(
      "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
      "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
      "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t"
      "add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\t" : "+r"(x) : "r"(one));
  }
  return x;
}
"""


@dataclass(frozen=True)
class Cpu:
    """What the nominal peak is computed from: /proc/cpuinfo's vendor, family and ISA flags."""

    vendor: str
    family: int
    model_name: str
    flags: frozenset[str]
    listed_mhz: float  # the highest clock /proc/cpuinfo or cpufreq states (a VM's is its base clock)


def read_cpu(cpuinfo: Path = CPUINFO, cpufreq_max: Path = CPUFREQ_MAX) -> Cpu | None:
    """The first processor of /proc/cpuinfo (and cpufreq's maximum clock where a kernel states one), or None where
    there is no /proc/cpuinfo (not Linux)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    fields: dict[str, str] = {}
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    try:
        mhz.append(int(cpufreq_max.read_text()) / 1000)
    except (OSError, ValueError):
        pass
    family = fields.get("cpu family", "0")
    return Cpu(fields.get("vendor_id", "unknown"), int(family) if family.isdigit() else 0,
               fields.get("model name", "unknown"), frozenset(fields.get("flags", "").split()), max(mhz, default=0.0))


def fma_datapath_bits(cpu: Cpu) -> int | None:
    """Bits of floating-point multiply-add a core issues per cycle (its FMA units × their width), or None.

    Upper bounds by design: an Intel core with AVX-512 is counted with two 512-bit units (some have one); AMD's
    Zen 2–4 have two 256-bit units (Zen 4 runs an AVX-512 instruction on both halves), Zen 5 two 512-bit units.
    """
    flags = cpu.flags
    if not flags & {"avx", "avx2", "avx512f", "sse2"}:
        return None  # not an x86 core this table knows
    if cpu.vendor == "AuthenticAMD":
        return 1024 if cpu.family >= 0x1A and "avx512f" in flags else 512
    width = 512 if "avx512f" in flags else 256 if flags & {"avx", "avx2"} else 128
    return 2 * width


def flops_per_cycle(cpu: Cpu, dtype: torch.dtype) -> int | None:
    """Peak FLOPs per cycle of one core: two a lane (multiply and add) over the FMA datapath; for bf16 twice the
    fp32 figure with AVX-512 BF16 (a dot product of two bf16 pairs a lane), 1 024 with AMX (a 16×16×32 tile
    multiply-add, 16 384 FLOPs, every 16 cycles), else the fp32 figure (bf16 is converted and computed in fp32)."""
    bits = fma_datapath_bits(cpu)
    if bits is None:
        return None
    fp32 = bits // 32 * 2
    if dtype == torch.float32:
        return fp32
    if dtype == torch.bfloat16:
        if "amx_bf16" in cpu.flags:
            return 1024
        return 2 * fp32 if "avx512_bf16" in cpu.flags else fp32
    raise ValueError(f"no peak known for {dtype}")


def clock_counter() -> Callable[[int], int] | None:
    """The compiled dependent-add loop (``CLOCK_SOURCE``) as ``counter(iterations)``, or None without an x86 C
    compiler (``$CC``, else ``cc``)."""
    command = shlex.split(os.environ.get("CC", "cc")) or ["cc"]
    if shutil.which(command[0]) is None or platform.machine() not in ("x86_64", "AMD64"):
        return None
    with tempfile.TemporaryDirectory(prefix="deeppose_clock_") as folder:  # the loaded library stays mapped
        source, library = Path(folder) / "clock.c", Path(folder) / "clock.so"
        try:
            source.write_text(CLOCK_SOURCE)
            subprocess.run([*command, "-O2", "-shared", "-fPIC", str(source), "-o", str(library)], check=True,
                           capture_output=True, timeout=60)
            fn = ctypes.CDLL(str(library)).dependent_adds
        except (OSError, subprocess.SubprocessError):
            return None
    fn.argtypes, fn.restype = [ctypes.c_uint64, ctypes.c_uint64], ctypes.c_uint64
    return lambda iterations: fn(iterations, 1)


def clock_probe(counter: Callable[[int], int], seconds: float = 0.02) -> tuple[Callable[[], object], int]:
    """A call of ``counter`` lasting about ``seconds``, and the cycles it takes: cycles / time = the clock."""
    loops = int(seconds * 4e9 / ADDS_PER_LOOP)
    return (lambda: counter(loops)), ADDS_PER_LOOP * loops


def nominal_peak(cpu: Cpu | None, dtype: torch.dtype, cores: int, ghz: float) -> float | None:
    """GFLOP/s of ``cores`` cores at ``ghz``: cores × FLOPs per cycle × GHz (None for an unknown core)."""
    per_cycle = None if cpu is None else flops_per_cycle(cpu, dtype)
    return None if per_cycle is None or ghz <= 0 else cores * per_cycle * ghz


def cores_in_use() -> int:
    """The cores torch's threads can occupy: its thread count, at most the CPUs this process may run on (counting
    hyperthreads as cores: an upper bound where two of them share one core's units)."""
    return min(torch.get_num_threads(), usable_cores())


def gemms(dtype: torch.dtype, scale: int = 1) -> dict[str, tuple[Callable[[], object], int]]:
    """Large GEMMs through the library paths a DeepPose step uses, each with its FLOPs: ``torch.matmul``,
    ``F.linear`` (oneDNN in bf16, MKL in fp32) and a 1×1 convolution in channels_last (oneDNN, as the network's
    convolutions). ``scale`` divides their sizes, for tests."""
    n, c, hw, batch = 2048 // scale, 512 // scale, 28, max(1, 16 // scale)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    x = torch.randn(batch, c, hw, hw, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(c, c, 1, 1, dtype=dtype).contiguous(memory_format=torch.channels_last)
    return {"matmul": (lambda: a @ b, 2 * n**3), "linear": (lambda: F.linear(a, b), 2 * n**3),
            "conv1x1": (lambda: F.conv2d(x, w), 2 * batch * hw * hw * c * c)}


@dataclass(frozen=True)
class Limit:
    """The bound a figure is divided by, and where it came from."""

    gflop_per_s: float
    bound: str  # "nominal" or the GEMM that was faster than the nominal figure
    nominal: float | None
    best_gemm: float
    ghz: float | None


def limit_of(nominal: float | None, gemm_rates: dict[str, float], ghz: float | None) -> Limit:
    """The larger of the nominal peak and the fastest GEMM: a bound is the highest rate known to be possible."""
    best_name = max(gemm_rates, key=gemm_rates.__getitem__)
    best = gemm_rates[best_name]
    if nominal is not None and nominal >= best:
        return Limit(nominal, "nominal", nominal, best, ghz)
    return Limit(best, f"GEMM ({best_name})", nominal, best, ghz)


def share_text(fraction: float) -> str:
    """A figure's share of its limit as a table prints it: at most 100 %; above, the limit is broken and says so."""
    return "ABOVE LIMIT" if fraction > 1 else f"{fraction:.0%}"


@dataclass
class LimitProbe:
    """The calls that establish one dtype's limit, timed beside a figure (``bench.interleaved_best``): the
    GEMMs, then the clock loop where one could be compiled."""

    dtype: torch.dtype
    cpu: Cpu | None
    cores: int
    gemms: dict[str, tuple[Callable[[], object], int]]
    clock: tuple[Callable[[], object], int] | None

    def calls(self) -> list[Callable[[], object]]:
        return [fn for fn, _ in self.gemms.values()] + ([self.clock[0]] if self.clock else [])

    def limit(self, seconds: list[float]) -> Limit:
        """The limit from the best times of ``calls()``, in their order."""
        if len(seconds) != len(self.calls()):
            raise ValueError(f"limit: {len(seconds)} times for {len(self.calls())} calls")
        rates = {name: flops / t / 1e9 for (name, (_, flops)), t in zip(self.gemms.items(), seconds[:len(self.gemms)],
                                                                      strict=True)}
        listed = self.cpu.listed_mhz / 1000 if self.cpu else 0.0
        ghz = max(listed, self.clock[1] / seconds[len(self.gemms)] / 1e9) if self.clock else listed
        return limit_of(nominal_peak(self.cpu, self.dtype, self.cores, ghz), rates, ghz or None)


@functools.cache
def compiled_clock_counter() -> Callable[[int], int] | None:
    """``clock_counter``, compiled once a process."""
    return clock_counter()


def limit_probe(dtype: torch.dtype, scale: int = 1) -> LimitProbe:
    """The probe of ``dtype``'s limit on this machine."""
    counter = compiled_clock_counter()
    return LimitProbe(dtype, read_cpu(), cores_in_use(), gemms(dtype, scale),
                      None if counter is None else clock_probe(counter))
