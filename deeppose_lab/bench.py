"""``make bench``: speed figures against this machine's own limit, printed as JSON and a short table.

Measured in one run, on the threads torch uses: the matrix-multiply limit (fp32 and bf16 GFLOP/s), the
training step of the ``paper`` and ``classroom`` networks (images/s and the fraction of the limit it
reaches, FLOPs counted by ``torch.utils.flop_counter``), the data pipeline feeding it (samples/s on one
core), cascade inference latency (eager and compiled), and time to accuracy read from the last ``make demo``
run. This machine's speed drifts by 2× within minutes, so every ratio is taken between figures measured side
by side. Numbers are printed, never asserted: speed targets live here, not in tests.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .crops import PersonCrops, batches
from .model import DeepPoseNet
from .pipeline import cascade_for
from .profiles import Profile, get_profile
from .rundir import read_run
from .skeleton import NUM_JOINTS
from .synthetic import SyntheticPoses
from .train import autocast, make_optimizer, pose_loss


def best_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """The fastest of ``repeats`` timed calls (seconds): the least disturbed by whatever else runs."""
    return interleaved_best([fn], repeats, warmup)[0]


def interleaved_best(fns: Sequence[Callable[[], object]], rounds: int, warmup: int = 1) -> list[float]:
    """The fastest time (seconds) of each function over ``rounds`` rounds that call them in turn.

    A figure and the limit it is divided by are timed this way, so a fast or slow spell of the machine falls on
    both: timed one after the other, the fp32 limit beside a step ranged from 194 to 431 GFLOP/s in one run.
    """
    for fn in fns:
        for _ in range(warmup):
            fn()
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for k, fn in enumerate(fns):
            tic = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - tic)
    return best


def matmul(dtype: torch.dtype, n: int = 2048) -> tuple[Callable[[], object], int]:
    """An n×n by n×n matrix multiply and its FLOPs: the ceiling any network step is measured against."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return (lambda: a @ b), 2 * n**3


def matmul_limit(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of ``matmul``."""
    fn, flops = matmul(dtype, n)
    return flops / best_time(fn, repeats) / 1e9


def step_flops(model: DeepPoseNet, batch: int) -> int:
    """FLOPs of one training step (forward + backward) counted by torch's flop counter."""
    x = torch.rand(batch, 3, model.input_size, model.input_size)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def train_step(profile: Profile, batch: int, bf16: bool, channels_last: bool) -> tuple[Callable[[], None], int]:
    """A full optimiser step (forward, loss, backward, update) on random crops, and its FLOPs."""
    torch.manual_seed(0)
    model = profile.stage1.build_model().train()
    flops = step_flops(model, batch)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = make_optimizer(model, profile.stage1)
    x = torch.rand(batch, 3, model.input_size, model.input_size).contiguous(memory_format=fmt)
    y, w = torch.rand(batch, NUM_JOINTS, 2) - 0.5, torch.ones(batch, NUM_JOINTS)

    def step() -> None:
        with autocast(bf16):
            loss = pose_loss(model(x), y, w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, flops


def step_figures(profile: Profile, batch: int, bf16: bool, channels_last: bool, seconds: float, flops: int) -> dict:
    return {"profile": profile.name, "batch": batch, "bf16": bf16, "channels_last": channels_last,
            "images_per_s": batch / seconds, "gflop_per_s": flops / seconds / 1e9, "step_gflop": flops / 1e9}


def data_pass(profile: Profile, n: int = 256) -> Callable[[], None]:
    """Crop + augment + collate ``n`` samples on ONE core, from images cached in memory as LSP's are in training."""
    data = SyntheticPoses(n, seed=1)
    data.decode_all()
    source = PersonCrops(data, profile.stage1.input_size, profile.augment)

    def one_pass() -> None:  # each batch dropped before the next, as the training loop does
        threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        try:
            for _ in batches(source, np.arange(n), 64, seed=0):
                pass
        finally:
            torch.set_num_threads(threads)
            cv2.setNumThreads(cv_threads)

    return one_pass


def inference_latencies(profile: Profile, images: int, rounds: int = 5) -> dict:
    """Milliseconds per image for the whole cascade (all stages, all joints batched; untrained networks) in fp32,
    in bf16 and in bf16 compiled, timed in alternation (best of ``rounds``) so that a change in the machine's
    speed between them does not pass for a difference; plus the compiled cascade's first call (compiling) and
    the bf16 matrix-multiply limit timed in the same rounds (its best moment: a short multiply can catch a fast
    spell that a whole cascade does not)."""
    nets = (profile.stage1.build_model().eval(),
            [profile.refiner.build_model().eval() for _ in range(profile.stages - 1)])
    cascades = {"fp32": cascade_for(profile.replace(bf16=False), *nets),
                "bf16": cascade_for(profile.replace(bf16=True), *nets),
                "bf16_compiled": cascade_for(profile.replace(bf16=True), *nets, compile=True)}
    data = SyntheticPoses(images, seed=2)
    first = {}
    for mode, cascade in cascades.items():
        tic = time.perf_counter()
        cascade.predict(data)
        first[mode] = time.perf_counter() - tic
    mm, mm_flops = matmul(torch.bfloat16)
    *best, mm_s = interleaved_best([*(lambda c=c: c.predict(data) for c in cascades.values()), mm], rounds, warmup=0)
    torch._dynamo.reset()  # each profile's graphs are its own; keep dynamo's recompile budget for the next
    return {"ms_per_image": {m: 1000 * t / images for m, t in zip(cascades, best, strict=True)},
            "compiled_first_call_s": first["bf16_compiled"], "bf16_matmul_limit_beside": mm_flops / mm_s / 1e9}


def time_to_accuracy(run_dir: Path) -> dict | None:
    """Minutes per stage and PCP after each, from a finished ``make demo`` run (None when there is none)."""
    report = run_dir / "report" / "report.json"
    if not report.is_file():
        return None
    results = json.loads(report.read_text())
    run = read_run(run_dir)
    return {"run": str(run_dir), "data": results["dataset"]["name"], "profile": run["profile"]["name"],
            "minutes": {s: round(v["seconds"] / 60, 2) for s, v in run["stages"].items()},
            "strict_pcp": [st["pcp"]["strict"]["mean"] for st in results["stages"]],
            "loose_pcp": [st["pcp"]["loose"]["mean"] for st in results["stages"]]}


def feeding_batch(profile: Profile, sizes: tuple[int, ...]) -> int:
    """The batch of the step the data pipeline feeds: the profile's own if measured, else the largest measured."""
    return profile.stage1.batch_size if profile.stage1.batch_size in sizes else max(sizes)


def run_all(quick: bool, run_dir: Path) -> dict:
    """Every figure. The matrix-multiply limit is timed in turn with each step and data with the step it feeds
    (``interleaved_best``): this machine's speed drifts by 2× within minutes, so only figures taken together are
    compared."""
    classroom, paper = get_profile("classroom"), get_profile("paper")
    repeats = 2 if quick else 5
    out: dict = {"threads": torch.get_num_threads(),
                 "matmul_gflop_per_s": {"fp32": matmul_limit(torch.float32), "bf16": matmul_limit(torch.bfloat16)}}
    steps, data = [], {}
    for profile, sizes in ((classroom, (32, 64, 128)), (paper, (8, 16) if quick else (16, 32))):
        sizes = sizes[:1] if quick else sizes
        for batch in sizes:
            for bf16, cl in ((False, False), (True, False), (False, True), (True, True)):
                mm, mm_flops = matmul(torch.bfloat16 if bf16 else torch.float32)
                step, flops = train_step(profile, batch, bf16, cl)
                mm_s, step_s = interleaved_best([mm, step], repeats)
                figures = step_figures(profile, batch, bf16, cl, step_s, flops)
                limit = mm_flops / mm_s / 1e9
                steps.append(figures | {"matmul_limit_beside": limit,
                                        "fraction_of_matmul_limit": figures["gflop_per_s"] / limit})
        batch = feeding_batch(profile, sizes)
        n = 256 if profile is classroom else 64
        fed, _ = train_step(profile, batch, profile.bf16, profile.channels_last)
        data_s, fed_s = interleaved_best([data_pass(profile, n), fed], repeats)
        data[profile.name] = {"samples_per_s_one_core": n / data_s, "step_images_per_s": batch / fed_s,
                              "ratio": n / data_s / (batch / fed_s), "batch": batch, "bf16": profile.bf16,
                              "channels_last": profile.channels_last}
    out["train_steps"] = steps
    out["data_beside_step"] = data
    no_flip = classroom.replace(flip_test=False)  # --no-flip: half the crops, no mirrors, as in the paper
    out["cascade_inference"] = {name: inference_latencies(p, n) for name, p, n in (
        ("classroom", classroom, 8), ("classroom --no-flip", no_flip, 8), ("paper", paper, 2))}
    out["time_to_accuracy"] = time_to_accuracy(run_dir)
    return out


def table(r: dict) -> str:
    lines = [f"threads {r['threads']}; matmul limit at the start fp32 {r['matmul_gflop_per_s']['fp32']:.1f} GFLOP/s, "
             f"bf16 {r['matmul_gflop_per_s']['bf16']:.1f} GFLOP/s; each step against the limit measured beside it",
             f"{'profile':10} {'batch':>5} {'mode':18} {'img/s':>8} {'GFLOP/s':>8} {'limit':>7} {'of limit':>8}"]
    for s in r["train_steps"]:
        mode = "+".join(m for m, on in (("bf16", s["bf16"]), ("channels_last", s["channels_last"])) if on) or "fp32"
        lines.append(f"{s['profile']:10} {s['batch']:>5} {mode:18} {s['images_per_s']:8.1f} {s['gflop_per_s']:8.1f} "
                     f"{s['matmul_limit_beside']:7.0f} {s['fraction_of_matmul_limit']:8.0%}")
    for name, d in r["data_beside_step"].items():
        modes = "".join(m for m, on in ((", bf16", d["bf16"]), (", channels_last", d["channels_last"])) if on)
        lines.append(f"data, one core, {name}: {d['samples_per_s_one_core']:.0f} samples/s = {d['ratio']:.1f}× the "
                     f"step it feeds ({d['step_images_per_s']:.0f} images/s, batch {d['batch']}{modes})")
    for name, c in r["cascade_inference"].items():
        lines.append(f"cascade inference, {name}, ms/image: " + ", ".join(
            f"{mode} {ms:.1f}" for mode, ms in c["ms_per_image"].items())
            + f" (compiling: {c['compiled_first_call_s']:.0f} s on the first call; bf16 limit meanwhile "
              f"{c['bf16_matmul_limit_beside']:.0f} GFLOP/s)")
    t = r["time_to_accuracy"]
    lines.append("time to accuracy: " + (json.dumps(t) if t else "no finished `make demo` run in runs/demo"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats (seconds, for a smoke check)")
    parser.add_argument("--run", default="runs/demo", help="run directory to read time-to-accuracy from")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    args = parser.parse_args()
    result = run_all(args.quick, Path(args.run))
    text = json.dumps(result, indent=2)
    print(text)
    print(table(result))
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
