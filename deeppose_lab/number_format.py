"""bf16 or fp32: the number format a run trains and infers in, chosen by timing this machine.

bf16 autocast pays only where oneDNN has bf16 dot-product or matrix units to run it on; elsewhere it adds casts
and emulation to every layer. The classroom step (batch 64, 112 px) measured both ways (docs/performance.md):
an Intel Xeon with AMX runs it 2.2–3.1× faster in bf16, an AMD EPYC (Zen 4, AVX-512 BF16) 1.5× faster, an Intel Xeon
(model 207, AVX-512 BF16 exposed but no AMX) 1.66× slower, and a laptop CPU without AVX-512 has no bf16
arithmetic at all. So ``number_format = "auto"`` (the classroom's) times a few training steps of stage 1's network
in each format and takes bf16 only where it is faster by ``BF16_MARGIN``; the run records the format it took in
run.json, so a resumed run and its evaluation use the same one (``pipeline.settled_number_format``).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from .crops import model_input
from .skeleton import NUM_JOINTS

if TYPE_CHECKING:
    from .profiles import Profile, StageRecipe

FORMATS = ("auto", "bf16", "fp32")
BF16_MARGIN = 1.1  # bf16 must train this much faster: near a tie, fp32's extra precision is worth more


def use_bf16(profile: Profile, cpu: bool = False) -> bool:
    """Whether ``profile`` trains and infers in bf16; ``"auto"`` measures (once per network, machine and device).

    ``cpu=True`` asks about this machine's CPU even where a GPU is present (``make bench`` times CPU steps: the
    GPU's bf16 support says nothing about the CPU's kernels)."""
    if profile.number_format == "auto":
        return auto_choice(profile, cpu)[0] == "bf16"
    return profile.number_format == "bf16"


def chosen_format(profile: Profile, cpu: bool = False) -> str:
    """``"bf16"`` or ``"fp32"``: what ``"auto"`` takes for this profile's stage-1 network on this machine; on the
    GPU where there is one, unless ``cpu``."""
    return auto_choice(profile, cpu)[0]


def auto_choice(profile: Profile, cpu: bool = False) -> tuple[str, dict[str, float]]:
    """``measured_choice`` for ``profile``'s stage 1, its layout and the threads torch uses now; on the GPU when
    there is one, unless ``cpu``."""
    gpu = torch.cuda.is_available() and not cpu
    return measured_choice(profile.stage1, profile.channels_last, torch.get_num_threads(), gpu)


@functools.cache
def measured_choice(recipe: StageRecipe, channels_last: bool, threads: int, gpu: bool = False
                    ) -> tuple[str, dict[str, float]]:
    """The faster format of one training step of ``recipe``'s network, and the seconds a step took in each.

    On a GPU (``gpu``): bf16 where the GPU supports it (no timing). On a CPU whose oneDNN has no bf16 kernels:
    fp32. Otherwise both are timed on the CPU."""
    if gpu:
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp32"), {}
    if not bf16_kernels():
        return "fp32", {}
    seconds = step_seconds(recipe, channels_last)
    faster = seconds["fp32"] / seconds["bf16"] >= BF16_MARGIN
    return ("bf16" if faster else "fp32"), seconds


def bf16_kernels() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (torch's own test; a CPU without AVX-512 has none). Without them
    bf16 runs on torch's reference loops: a 512² bf16 ``matmul`` measured 1.3 GFLOP/s on an AVX2 EPYC whose fp32
    GEMMs reach 150 (docs/performance.md)."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def step_seconds(recipe: StageRecipe, channels_last: bool, rounds: int = 3) -> dict[str, float]:
    """Best seconds of one optimiser step in each format, alternated (this machine's speed drifts)."""
    with torch.random.fork_rng():  # the run's own seeds must not depend on whether it measured
        steps = {fmt: training_step(recipe, recipe.batch_size, fmt == "bf16", channels_last)
                 for fmt in ("fp32", "bf16")}
        for step in steps.values():
            step()  # oneDNN picks and caches its kernels on the first call
        best = dict.fromkeys(steps, float("inf"))
        for _ in range(rounds):
            for fmt, step in steps.items():
                tic = time.perf_counter()
                step()
                best[fmt] = min(best[fmt], time.perf_counter() - tic)
    return best


def training_step(recipe: StageRecipe, batch: int, bf16: bool, channels_last: bool) -> Callable[[], None]:
    """One full optimiser step (input, forward, loss, backward, update) of ``recipe``'s network on random crops, as
    ``train.fit`` runs it: the uint8 crops with colour noise made into the float input (``crops.model_input``), then
    the step. The timing ``measured_choice`` and ``make bench`` rest on. Without ``channels_last`` the input is
    copied into the default layout too, as a pipeline in that layout would hand it over (``fit`` does not)."""
    from .train import autocast, make_optimizer, pose_loss  # train imports profiles, which imports this module

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = recipe.build_model(pretrained=False).train().to(memory_format=fmt)
    opt = make_optimizer(model, recipe)
    size = model.input_size
    pixels = torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)
    colour = torch.tensor([[1.1, 0.9, 1.0, 5.0]]).repeat(batch, 1)  # gains and a brightness shift, as augmented
    y, w = torch.rand(batch, NUM_JOINTS, 2) - 0.5, torch.ones(batch, NUM_JOINTS)

    def step() -> None:
        x = model_input(pixels, colour).contiguous(memory_format=fmt)
        with autocast(bf16):
            loss = pose_loss(model(x), y, w, recipe.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step
