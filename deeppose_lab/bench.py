"""``make bench``: speed figures against this machine's own limits and against a plain-PyTorch peer.

Measured in one run, on the threads torch uses: each dtype's limit (``limits``: the cores' nominal peak at the
clock they run at, or a faster GEMM through the model's own library paths), the training step of the ``paper``
and ``classroom`` networks (images/s and the share of the limit timed beside it, in FLOPs as a direct convolution
executes them: ``executed_flops``), one stage-1 epoch of the package against the same epoch written as the talk
would (PIL crops, a ``DataLoader``, fp32, eager), decoding the whole training set and the in-memory cache it
fills, the data pipeline against the step it feeds (one core), cascade inference against the least time its
FLOPs could take, every widget's redraw, and time to accuracy read from the last ``make demo`` run. This
machine's speed drifts by 2× within minutes, so every ratio is taken between figures timed in turn. Numbers
are printed, never asserted: speed targets live here, not in tests.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .cascade import Cascade
from .crops import PersonCrops, batches, usable_cores
from .datasets import Concat, ImageFiles, PoseDataset, load_lsp, lsp_available
from .distributed import default_device
from .geometry import image_box, spare_channel_base
from .limits import Limit, LimitProbe, flops_per_cycle, limit_probe, share_text
from .model import DeepPoseNet
from .number_format import auto_choice, bf16_kernels, training_step, use_bf16
from .pipeline import cascade_for, train_stage1
from .profiles import Profile, apply_overrides, format_of_bf16_flag, get_profile, without_views
from .rundir import read_run
from .sample import ZERO_BASED_OFFSET
from .skeleton import FLIP
from .splits import load_data
from .synthetic import SyntheticPoses
from .train import pose_loss


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


def timed_with_limit(probe: LimitProbe, fns: Sequence[Callable[[], object]], rounds: int, warmup: int = 1
                     ) -> tuple[Limit, list[float]]:
    """The best times of ``fns`` and the limit timed in the same rounds (``interleaved_best``)."""
    calls = probe.calls()
    times = interleaved_best([*calls, *fns], rounds, warmup)
    return probe.limit(times[:len(calls)]), times[len(calls):]


def limit_figures(limit: Limit, gflop_per_s: float) -> dict:
    """A figure's limit fields: the bound, where it came from, and the share of it reached (at most 1 unless the
    bound is broken, which ``broken_bounds`` reports)."""
    return {"limit_gflop_per_s": limit.gflop_per_s, "bound": limit.bound, "nominal_gflop_per_s": limit.nominal,
            "best_gemm_gflop_per_s": limit.best_gemm, "ghz": limit.ghz,
            "fraction_of_limit": gflop_per_s / limit.gflop_per_s}


def valid_tap_fraction(conv: nn.Conv2d, size: Sequence[int]) -> float:
    """The share of a convolution's kernel taps that fall inside its input (of spatial ``size``), not on padding;
    1 where the padding is computed (not zeros) or named ("same", "valid": left to the counter as it is)."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return 1.0
    fraction = 1.0
    for n, k, stride, pad, dilation in zip(size, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                                           strict=True):
        out = (n + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        where = np.arange(out)[:, None] * stride - pad + np.arange(k)[None, :] * dilation
        fraction *= float(((where >= 0) & (where < n)).mean())
    return fraction


def executed_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn`` as a direct convolution executes them: torch's flop counter, less the multiply-adds with each
    convolution's zero padding, which oneDNN skips (a 3×3 convolution on a 7×7 map touches 82 % of the taps the
    counter counts). Counted so, a convolution measured above the cores' peak would be a broken bound, not
    arithmetic: with the counter's figures one forward convolution here profiled at 101 % of it."""
    skipped = [0.0]

    def padding_flops(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if not isinstance(module, nn.Conv2d):
            return
        x = args[0]
        skipped_once = 2 * out.shape[0] * math.prod(out.shape[2:]) * module.weight.numel() * (
            1 - valid_tap_fraction(module, x.shape[2:]))
        skipped[0] += skipped_once
        if out.requires_grad:  # the backward pass, when it runs: a weight gradient and an input gradient as needed
            passes = int(module.weight.requires_grad) + int(x.requires_grad)
            out.register_hook(lambda _grad: skipped.__setitem__(0, skipped[0] + passes * skipped_once))

    hook = torch.nn.modules.module.register_module_forward_hook(padding_flops)
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        hook.remove()
    return round(counter.get_total_flops() - skipped[0])


def step_flops(model: DeepPoseNet, batch: int) -> int:
    """FLOPs of one training step (forward + backward), ``executed_flops``."""
    x = torch.rand(batch, 3, model.input_size, model.input_size)
    flops = executed_flops(lambda: model(x).sum().backward())
    model.zero_grad(set_to_none=True)
    return flops


def train_step(profile: Profile, batch: int, bf16: bool, channels_last: bool) -> tuple[Callable[[], None], int]:
    """A full optimiser step of stage 1 (``number_format.training_step``, as ``fit`` runs it), and its FLOPs."""
    flops = step_flops(profile.stage1.build_model(pretrained=False).train(), batch)
    return training_step(profile.stage1, batch, bf16, channels_last), flops


def step_figures(profile: Profile, batch: int, bf16: bool, channels_last: bool, seconds: float, flops: int) -> dict:
    return {"profile": profile.name, "batch": batch, "bf16": bf16, "channels_last": channels_last,
            "images_per_s": batch / seconds, "gflop_per_s": flops / seconds / 1e9, "step_gflop": flops / 1e9}


def one_core(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` run on one torch thread and one OpenCV thread: what the data pipeline has on a 2-core machine."""

    def run() -> None:
        threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        try:
            fn()
        finally:
            torch.set_num_threads(threads)
            cv2.setNumThreads(cv_threads)

    return run


def data_pass(profile: Profile, n: int = 256, data: PoseDataset | None = None) -> Callable[[], None]:
    """Crop + augment + collate ``n`` samples of ``data`` (default: synthetic) on ONE core, from images already in
    the in-memory cache, as training reads them after its first epoch: uint8 batches, as the step receives them
    (the step makes them floats, and ``train_step`` times that with it)."""
    if data is None:
        data = SyntheticPoses(n, seed=1)
        data.decode_all()
    source = PersonCrops(data, profile.stage1.input_size, profile.augment, profile.train_box, profile.box_margin)
    chosen = np.random.default_rng(0).choice(len(data), size=min(n, len(data)), replace=False)

    def one_pass() -> None:  # each batch dropped before the next, as the training loop does
        for _ in batches(source, chosen, 64, seed=0):
            pass

    return one_core(one_pass)


# --- the training set at full size ----------------------------------------------------------------------------

def leaves(data: PoseDataset) -> list[PoseDataset]:
    """The data sets that hold the images under ``data`` (through ``Subset`` and ``Concat``), each once."""
    found: dict[int, PoseDataset] = {}
    todo = [data]
    while todo:
        d = todo.pop()
        parts = getattr(d, "parts", None) or ([d.parent] if hasattr(d, "parent") else None)
        if parts:
            todo.extend(parts)
        else:
            found[id(d)] = d
    return list(found.values())


def cache_bytes(data: PoseDataset) -> int:
    """Bytes the in-memory image cache under ``data`` holds (each image with its spare fourth byte)."""
    total = 0
    for leaf in leaves(data):
        for image in leaf._cache.values():
            base = spare_channel_base(image)
            total += (base if base is not None else image).nbytes
    return total


def peak_rss_gib() -> float:
    """This process's peak resident memory so far (GiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def decoded_training_set(profile: Profile, spec: str) -> tuple[PoseDataset, dict]:
    """``spec``'s training set decoded into the cache, timed: with ``lsp``, LSP 1–1000 and every LSP-extended image
    present (11 000 with all of it), each decoded once. Returns the training set and the figures."""
    splits = load_data(spec, profile, lambda _: None)
    images = Concat([*{id(leaf): leaf for leaf in leaves(splits.train) + leaves(splits.dev)}.values()])
    train, name = splits.train, splits.train.name
    rss = peak_rss_gib()
    tic = time.perf_counter()
    images.decode_all()
    seconds = time.perf_counter() - tic
    return train, {"data": name, "images": len(images), "decode_s": seconds,
                   "ms_per_image": 1000 * seconds / len(images), "cache_gib": cache_bytes(images) / 2**30,
                   "peak_rss_gib_before": rss, "peak_rss_gib_after": peak_rss_gib()}


# --- the peer a student would write ---------------------------------------------------------------------------

class StudentCrops(torch.utils.data.Dataset):
    """The talk's way of making a training sample: open the JPEG with PIL, cut the person's box (the joints'
    extremes with a margin, randomly scaled and shifted), resize it to the input size, mirror half of them, and
    hand a float tensor in [0, 1] to the network, which normalises it."""

    def __init__(self, paths: Sequence[Path], joints: np.ndarray, visible: np.ndarray, size: int, margin: float
                 ) -> None:
        self.paths, self.joints, self.visible, self.size, self.margin = list(paths), joints, visible, size, margin

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng()
        image = Image.open(self.paths[i]).convert("RGB")
        joints, visible = self.joints[i], self.visible[i]
        seen = joints[visible] if visible.sum() >= 2 else joints
        (x0, y0), (x1, y1) = seen.min(0), seen.max(0)
        side = max(max(x1 - x0, y1 - y0) * (1 + 2 * self.margin), 1.0) * rng.uniform(0.85, 1.15)
        cx, cy = (x0 + x1) / 2 + rng.uniform(-0.05, 0.05) * side, (y0 + y1) / 2 + rng.uniform(-0.05, 0.05) * side
        left, top = cx - side / 2, cy - side / 2
        crop = image.transform((self.size, self.size), Image.EXTENT, (left, top, left + side, top + side),
                               Image.BILINEAR)  # the box exactly, as the targets below assume
        target = (joints - [left, top]) / side - 0.5
        weight = visible.astype(np.float32)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
            target, weight = target[FLIP] * [-1, 1], weight[FLIP]
        x = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()
        return x, torch.tensor(target, dtype=torch.float32), torch.from_numpy(weight)


def student_epoch(profile: Profile, data: ImageFiles) -> Callable[[], None]:
    """One stage-1 epoch as the talk writes it: ``StudentCrops`` through a ``DataLoader`` with a worker per core,
    the same network in fp32, eager, default memory format, with torch's default (per-tensor) AdamW; on the device
    the package's epoch trains on (``default_device``), so that a GPU host compares GPU with GPU."""
    recipe = profile.stage1

    def epoch() -> None:
        torch.manual_seed(0)
        device = default_device()
        model = recipe.build_model().train().to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        crops = StudentCrops(data.paths, data.joints, data.visible, recipe.input_size, profile.box_margin)
        loader = torch.utils.data.DataLoader(crops, batch_size=recipe.batch_size, shuffle=True,
                                             num_workers=usable_cores())
        for x, y, w in loader:
            x, y, w = x.to(device), y.to(device), w.to(device)
            loss = pose_loss(model(x), y, w, recipe.loss)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    return epoch


def package_epoch(profile: Profile, data: ImageFiles) -> Callable[[], None]:
    """One stage-1 epoch through the package itself (``pipeline.train_stage1``: decoding into the cache, OpenCV
    crops made between steps, the number format ``auto`` takes here, channels_last, fused AdamW, its checkpoint),
    from files not yet decoded."""
    one_epoch = apply_overrides(profile, {"stage1.epochs": 1})

    def epoch() -> None:
        fresh = ImageFiles(data.name, data.paths, data.joints, data.visible, data.file_offset)
        with tempfile.TemporaryDirectory() as out:
            train_stage1(Path(out), one_epoch, fresh, fresh.subset(range(0)), progress=False)

    return epoch


def peer_images(n: int, folder: Path) -> ImageFiles:
    """The peer comparison's images: LSP 1–``n`` where LSP is present, else ``n`` synthetic people written to
    ``folder`` as JPEGs (both sides then decode the same files)."""
    if lsp_available():
        lsp = load_lsp(split="train")
        return ImageFiles(lsp.name, lsp.paths[:n], lsp.joints[:n], lsp.visible[:n], lsp.file_offset)
    people = SyntheticPoses(n, seed=3)
    paths = []
    for i in range(n):
        paths.append(folder / f"person{i:04d}.jpg")
        Image.fromarray(np.ascontiguousarray(people.image(i))).save(paths[-1], quality=90)
    return ImageFiles("synthetic", paths, people.joints, people.visible, ZERO_BASED_OFFSET)


def peer_figures(profile: Profile, n: int, rounds: int) -> dict:
    """Images per second of one epoch, end to end, the package's against the talk's (timed in turn)."""
    with tempfile.TemporaryDirectory() as folder:
        data = peer_images(n, Path(folder))
        ours, theirs = interleaved_best([package_epoch(profile, data), student_epoch(profile, data)], rounds,
                                        warmup=0)
    return {"images": len(data), "data": data.name, "package_images_per_s": len(data) / ours,
            "plain_pytorch_images_per_s": len(data) / theirs, "ratio": theirs / ours}


# --- inference and widgets ------------------------------------------------------------------------------------

def cascade_flops(cascade: Cascade, data: PoseDataset) -> int:
    """FLOPs of predicting every image of ``data`` with ``cascade`` (all stages, flip averaging as set),
    ``executed_flops``."""
    return executed_flops(lambda: cascade.predict(data))


def inference_latencies(profile: Profile, images: int, rounds: int = 5, bf16: bool | None = None) -> dict:
    """Milliseconds per image for the whole cascade (all stages, all joints batched; untrained networks) in fp32,
    in bf16 and in bf16 compiled (without ``bf16``: fp32 and fp32 compiled), timed in alternation (best of
    ``rounds``) with the limit of the faster format, and the least time the cascade's FLOPs could take at that
    limit; plus the compiled cascade's first call (compiling). ``bf16`` None: where oneDNN has bf16 kernels."""
    bf16 = bf16_kernels() if bf16 is None else bf16
    nets = (profile.stage1.build_model().eval(),
            [profile.refiner.build_model().eval() for _ in range(profile.stages - 1)])
    fast = format_of_bf16_flag(bf16)
    fp32, faster = profile.replace(number_format="fp32"), profile.replace(number_format=fast)
    cascades = {"fp32": cascade_for(fp32, *nets)} | ({"bf16": cascade_for(faster, *nets)} if bf16 else {})
    cascades[f"{fast}_compiled"] = cascade_for(faster, *nets, compile=True)
    data = SyntheticPoses(images, seed=2)
    first = {}
    for mode, cascade in cascades.items():
        tic = time.perf_counter()
        cascade.predict(data)
        first[mode] = time.perf_counter() - tic
    flops = cascade_flops(cascades["fp32"], data) / images
    dtype = torch.bfloat16 if bf16 else torch.float32
    limit, best = timed_with_limit(limit_probe(dtype), [lambda c=c: c.predict(data) for c in cascades.values()],
                                   rounds, warmup=0)
    torch._dynamo.reset()  # each profile's graphs are its own; keep dynamo's recompile budget for the next
    ms = {m: 1000 * t / images for m, t in zip(cascades, best, strict=True)}
    fastest_s = min(ms[fast], ms[f"{fast}_compiled"]) / 1000
    return {"ms_per_image": ms, "compiled_first_call_s": first[f"{fast}_compiled"], "gflop_per_image": flops / 1e9,
            "limit_format": fast, "least_ms_at_limit": 1000 * flops / (limit.gflop_per_s * 1e9)
            } | limit_figures(limit, flops / fastest_s / 1e9)


def widget_redraws(profile: Profile, data: PoseDataset, moves: int = 8) -> dict:
    """Milliseconds per redraw (render + PNG, best and median of ``moves`` slider moves) of every widget at
    ``profile``'s sizes, on ``data`` with an untrained cascade's poses (the same work as a trained one's)."""
    from . import widgets  # ipywidgets: only the notebooks and this figure need it

    on_cpu = profile.replace(number_format=format_of_bf16_flag(use_bf16(profile, cpu=True)))  # the nets stay here
    cascade = cascade_for(on_cpu, profile.stage1.build_model().eval(),
                          [profile.refiner.build_model().eval() for _ in range(profile.stages - 1)])
    shown = data.subset(range(min(len(data), 2 * moves)))
    poses = cascade.predict(shown)
    truth = np.stack([s.joints for s in shown])
    photo = np.ascontiguousarray(shown[0].image)
    box = image_box(*photo.shape[:2])
    first = shown.subset([0])

    def pose_in(b: np.ndarray) -> np.ndarray:  # as notebook 07's box picker: the whole cascade in the moved box
        return cascade.predict(first, b[None])[-1, 0]

    viewers = {"sample_browser": (widgets.sample_browser(shown), "index"),
               "crop_explorer": (widgets.crop_explorer(shown, profile.stage1.input_size), "index"),
               "cascade_stepper": (widgets.cascade_stepper(shown, poses, profile.sigma), "index"),
               "error_inspector": (widgets.error_inspector(shown, poses[-1], truth), "rank"),
               "box_picker": (widgets.box_picker(photo, pose_in, box), "x0")}
    out = {}
    for name, (viewer, control) in viewers.items():
        times = []
        for k in range(moves):
            value = k + 1 if control != "x0" else float(box[0] - box[2] / 2 + k)
            tic = time.perf_counter()
            viewer.update(**{control: value})
            times.append(1000 * (time.perf_counter() - tic))
        out[name] = {"best_ms": min(times), "median_ms": float(np.median(times))}
    return out


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


def time_to_accuracy_line(t: dict | None) -> str:
    """``time_to_accuracy``'s figures as one line: each stage's training minutes and the PCP it reached."""
    if not t:
        return "time to accuracy: no finished `make demo` run in runs/demo"
    stages = [f"stage {s} after {sum(list(t['minutes'].values())[:n + 1]):.1f} min: {strict:.3f} strict, "
              f"{loose:.3f} loose" for n, (s, strict, loose) in enumerate(zip(t["minutes"], t["strict_pcp"],
                                                                                t["loose_pcp"], strict=True))]
    return f"time to accuracy ({t['run']}, {t['profile']}, {t['data']}; training minutes): " + "; ".join(stages)


def feeding_batch(profile: Profile, sizes: tuple[int, ...]) -> int:
    """The batch of the step the data pipeline feeds: the profile's own if measured, else the largest measured."""
    return profile.stage1.batch_size if profile.stage1.batch_size in sizes else max(sizes)


MODES = ((False, False), (True, False), (False, True), (True, True))  # (bf16, channels_last)


def step_rows(profile: Profile, sizes: tuple[int, ...], repeats: int, probes: dict[bool, LimitProbe]) -> list[dict]:
    """Every (batch, mode) training step of ``profile`` in the formats ``probes`` has a limit for, each timed in
    turn with its dtype's limit."""
    rows = []
    for batch in sizes:
        for bf16, cl in (mode for mode in MODES if mode[0] in probes):
            step, flops = train_step(profile, batch, bf16, cl)
            limit, (step_s,) = timed_with_limit(probes[bf16], [step], repeats)
            figures = step_figures(profile, batch, bf16, cl, step_s, flops)
            rows.append(figures | limit_figures(limit, figures["gflop_per_s"]))
    return rows


def data_beside_step(profile: Profile, batch: int, repeats: int, data: PoseDataset | None, n: int) -> dict:
    """The one-core data pass over ``data`` against the step it feeds, timed in turn."""
    bf16 = use_bf16(profile, cpu=True)
    fed, _ = train_step(profile, batch, bf16, profile.channels_last)
    n = n if data is None else min(n, len(data))  # data_pass crops that many distinct samples
    data_s, fed_s = interleaved_best([data_pass(profile, n, data), fed], repeats)
    return {"data": "synthetic" if data is None else data.name, "samples_per_s_one_core": n / data_s,
            "step_images_per_s": batch / fed_s, "ratio": n / data_s / (batch / fed_s), "batch": batch,
            "bf16": bf16, "channels_last": profile.channels_last}


def progress(started: float, what: str) -> None:
    """One line on stderr as each figure is measured: a bench cut short, or sent to a file, shows how far it got."""
    print(f"[bench {time.perf_counter() - started:6.0f} s] {what}", file=sys.stderr, flush=True)


def limit_probes(scale: int = 1) -> dict[bool, LimitProbe]:
    """The limit probes of the formats the bench times, keyed by bf16: fp32, and bf16 where oneDNN has bf16 kernels
    (``scale``: smaller GEMMs, for tests)."""
    bf16 = {True: limit_probe(torch.bfloat16, scale)} if bf16_kernels() else {}
    return {False: limit_probe(torch.float32, scale)} | bf16


def run_all(quick: bool, run_dir: Path) -> dict:
    """Every figure; each one timed in turn with the limit or the peer it is compared with. bf16 is measured only
    where oneDNN has bf16 kernels: elsewhere the package never runs in it (``number_format``), and its reference
    loops took more than 20 minutes of the bench on an AVX2 CPU."""
    started = time.perf_counter()
    classroom, paper = get_profile("classroom"), get_profile("paper")
    repeats = 2 if quick else 5
    probes = limit_probes()
    bf16 = True in probes
    cpu = probes[False].cpu
    out: dict = {"threads": torch.get_num_threads(), "cores": probes[False].cores,
                 "cpu": None if cpu is None else {"vendor": cpu.vendor, "family": cpu.family, "model": cpu.model_name,
                                                  "listed_mhz": cpu.listed_mhz},
                 "flops_per_cycle": {format_of_bf16_flag(b): None if cpu is None else flops_per_cycle(cpu, p.dtype)
                                     for b, p in probes.items()},
                 "limits": {format_of_bf16_flag(b): asdict(timed_with_limit(p, [], repeats)[0])
                            for b, p in probes.items()},
                 "number_format": number_format_choice(classroom)}
    progress(started, f"limits and number format: {out['limits']} {out['number_format']}")
    steps, data = [], {}
    for profile, sizes in ((classroom, (32, 64, 128)), (paper, (8, 16) if quick else (16, 32))):
        sizes = sizes[:1] if quick else sizes
        steps += step_rows(profile, sizes, repeats, probes)
        progress(started, f"{profile.name} training steps: " + ", ".join(
            f"batch {s['batch']} bf16 {s['bf16']} channels_last {s['channels_last']} {s['images_per_s']:.1f} images/s"
            for s in steps if s["profile"] == profile.name))
        n = 256 if profile is classroom else 64
        data[profile.name] = data_beside_step(profile, feeding_batch(profile, sizes), repeats, None, n)
        progress(started, f"{profile.name} data pass: {data[profile.name]['ratio']:.1f}× the step it feeds")
    out["train_steps"] = steps
    train, out["training_set"] = decoded_training_set(classroom, "lsp" if lsp_available() else "synthetic")
    progress(started, f"decoded the training set: {out['training_set']}")
    data["classroom, training set"] = data_beside_step(classroom, classroom.stage1.batch_size, repeats, train, 512)
    del train
    out["data_beside_step"] = data
    out["peer_epoch"] = peer_figures(classroom, 200 if quick else 1000, 1 if quick else 2)
    progress(started, f"one epoch against plain PyTorch: {out['peer_epoch']}")
    no_flip = classroom.replace(flip_test=False)  # --no-flip: half the crops, no mirrors, as in the paper
    one_box = without_views(classroom)  # --one-box: every stage on its one box, no views
    out["cascade_inference"] = {}
    for name, p, n in (("classroom", classroom, 8), ("classroom --one-box", one_box, 8),
                       ("classroom --no-flip", no_flip, 8), ("paper", paper, 2)):
        out["cascade_inference"][name] = inference_latencies(p, n, repeats, bf16)
        progress(started, f"cascade inference, {name}: {out['cascade_inference'][name]['ms_per_image']} ms/image")
    out["widget_redraw_ms"] = widget_redraws(classroom, load_lsp(split="test") if lsp_available()
                                             else SyntheticPoses(16, seed=4))
    progress(started, f"widget redraws: {out['widget_redraw_ms']}")
    out["time_to_accuracy"] = time_to_accuracy(run_dir)
    progress(started, time_to_accuracy_line(out["time_to_accuracy"]))
    out["bench_minutes"] = (time.perf_counter() - started) / 60
    return out


def number_format_choice(profile: Profile) -> dict:
    """What ``number_format = "auto"`` takes on this CPU for ``profile``, and the step times it chose by (on a
    GPU host, training's ``auto`` asks the GPU instead)."""
    chosen, seconds = auto_choice(profile, cpu=True)
    return {"profile": profile.name, "batch": profile.stage1.batch_size, "chosen": chosen,
            "step_ms": {fmt: 1000 * s for fmt, s in seconds.items()}}


def broken_bounds(r: dict) -> list[str]:
    """Every figure above its limit: a bound that is not one (the table says so instead of a share above 100 %)."""
    rows = [(f"{s['profile']} batch {s['batch']}", s) for s in r["train_steps"]]
    rows += [(f"inference {name}", c) for name, c in r["cascade_inference"].items()]
    return [name for name, row in rows if row["fraction_of_limit"] > 1]


def share(row: dict) -> str:
    """A row's share of its limit as the table prints it (``limits.share_text``)."""
    return share_text(row["fraction_of_limit"])


def table(r: dict) -> str:
    lim = r["limits"]
    lines = [f"threads {r['threads']} on {r['cores']} cores; FLOPs a cycle a core {r['flops_per_cycle']}; limits "
             "at the start: " + ", ".join(f"{fmt} {v['gflop_per_s']:.0f} GFLOP/s ({v['bound']})"
                                          for fmt, v in lim.items())
             + f"; clock {lim['fp32']['ghz'] or 0:.2f} GHz. "
             "Each figure against the limit timed beside it (nominal: cores × FLOPs a cycle × clock; GEMM: the "
             "fastest of matmul, linear, 1×1 convolution, where that was faster)",
             f"{'profile':10} {'batch':>5} {'mode':18} {'img/s':>8} {'GFLOP/s':>8} {'limit':>7} {'bound':>14} "
             f"{'of limit':>11}"]
    if "bf16" not in lim:
        lines.insert(1, "bf16 not timed: oneDNN has no bf16 kernels on this CPU (it needs AVX-512 at least), so the "
                        "package trains and infers in fp32 here")
    nf = r["number_format"]
    lines.append(f"number_format=auto takes {nf['chosen']} on this CPU for the {nf['profile']} step "
                 f"(batch {nf['batch']}): "
                 + (", ".join(f"{fmt} {ms:.0f} ms" for fmt, ms in nf["step_ms"].items()) or "not timed"))
    for s in r["train_steps"]:
        mode = "+".join(m for m, on in (("bf16", s["bf16"]), ("channels_last", s["channels_last"])) if on) or "fp32"
        lines.append(f"{s['profile']:10} {s['batch']:>5} {mode:18} {s['images_per_s']:8.1f} {s['gflop_per_s']:8.1f} "
                     f"{s['limit_gflop_per_s']:7.0f} {s['bound']:>14} {share(s):>11}")
    t = r["training_set"]
    lines.append(f"decoding the training set ({t['data']}): {t['images']} images in {t['decode_s']:.1f} s "
                 f"({t['ms_per_image']:.2f} ms each, one after another); in-memory cache {t['cache_gib']:.2f} GiB; "
                 f"peak memory {t['peak_rss_gib_after']:.2f} GiB")
    for name, d in r["data_beside_step"].items():
        modes = "".join(m for m, on in ((", bf16", d["bf16"]), (", channels_last", d["channels_last"])) if on)
        lines.append(f"data, one core, {name} ({d['data']}): {d['samples_per_s_one_core']:.0f} samples/s = "
                     f"{d['ratio']:.1f}× the step it feeds ({d['step_images_per_s']:.0f} images/s, batch "
                     f"{d['batch']}{modes})")
    p = r["peer_epoch"]
    lines.append(f"one stage-1 epoch on {p['images']} {p['data']} images, end to end: the package "
                 f"{p['package_images_per_s']:.0f} images/s, plain PyTorch (PIL, DataLoader, fp32, eager) "
                 f"{p['plain_pytorch_images_per_s']:.0f}: {p['ratio']:.1f}×")
    for name, c in r["cascade_inference"].items():
        lines.append(f"cascade inference, {name}, ms/image: " + ", ".join(
            f"{mode} {ms:.1f}" for mode, ms in c["ms_per_image"].items())
            + f"; {c['gflop_per_image']:.2f} GFLOP an image: at least {c['least_ms_at_limit']:.1f} ms at the "
              f"{c['limit_format']} limit ({c['limit_gflop_per_s']:.0f} GFLOP/s, {c['bound']}), reached {share(c)} "
              f"(compiling: {c['compiled_first_call_s']:.0f} s on the first call)")
    lines.append("widget redraw, ms (best / median): " + ", ".join(
        f"{name} {w['best_ms']:.0f} / {w['median_ms']:.0f}" for name, w in r["widget_redraw_ms"].items()))
    t = r["time_to_accuracy"]
    lines.append(time_to_accuracy_line(t))
    if "bench_minutes" in r:
        lines.append(f"the bench took {r['bench_minutes']:.1f} minutes")
    broken = broken_bounds(r)
    if broken:
        lines.append("BROKEN BOUNDS (a figure above its limit: the limit is wrong): " + ", ".join(broken))
    return "\n".join(lines)


# A CPU without oneDNN's bf16 kernels runs convolutions through the slow path: its own op names do the work there.
CONV_FORWARD = ("aten::mkldnn_convolution", "aten::_slow_conv2d_forward")
CONV_BACKWARD = ("aten::convolution_backward", "aten::_slow_conv2d_backward")
STEP_PARTS = {"convolution forward": CONV_FORWARD, "convolution backward": CONV_BACKWARD,
              "linear layers (fc6-fc8)": ("aten::mm", "aten::addmm"),
              "copies (autocast's bf16 casts)": ("aten::copy_",),
              "AdamW (fused)": ("aten::_fused_adamw_",), "dropout": ("aten::bernoulli_", "aten::mul", "aten::div_"),
              "max pooling": ("aten::max_pool2d_with_indices", "aten::max_pool2d_with_indices_backward"),
              "ReLU": ("aten::clamp_min_", "aten::threshold_backward")}


def step_account(profile: Profile, batch: int, steps: int = 10, scale: int = 1) -> str:
    """Where a channels_last training step's time goes (``torch.profiler``), by part, and each convolution's rate:
    the account behind the step's share of its limit (``--profile-step``). In the number format ``profile`` takes
    on this CPU (``use_bf16``): bf16 where it is the faster, fp32 on a CPU without bf16 kernels."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as profiler

    bf16 = use_bf16(profile, cpu=True)
    step, _ = train_step(profile, batch, bf16, True)
    probe = limit_probe(torch.bfloat16 if bf16 else torch.float32, scale)  # scale: smaller GEMMs, for tests
    limit, _ = timed_with_limit(probe, [step], 3)  # in turn with the step, unprofiled
    with profiler(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    fmt = format_of_bf16_flag(bf16)
    lines = [f"{profile.name}, batch {batch}, {fmt} + channels_last: {total / steps / 1000:.1f} ms a step under the "
             f"profiler; {fmt} limit {limit.gflop_per_s:.0f} GFLOP/s ({limit.bound}, {limit.ghz or 0:.2f} GHz)",
             "| part | share of the step |", "|---|---:|"]
    counted = 0.0
    for part, names in STEP_PARTS.items():
        t = sum(e.self_cpu_time_total for e in events if e.key in names)
        counted += t
        lines.append(f"| {part} | {t / total:.1%} |")
    lines += [f"| everything else | {1 - counted / total:.1%} |", "",
              "| convolution (input; weight) | pass | ms a step | GFLOP/s | of limit |", "|---|---|---:|---:|---:|"]
    # Each convolution found by its weight's shape: unique in DeepPoseNet (checked), not in every network.
    convs = {tuple(m.weight.shape): m for m in profile.stage1.build_model().modules() if isinstance(m, nn.Conv2d)}
    if len(convs) != sum(isinstance(m, nn.Conv2d) for m in profile.stage1.build_model().modules()):
        raise ValueError(f"{profile.name}: two convolutions share a weight shape; step_account cannot tell them apart")
    self_us: dict[tuple[bool, tuple, tuple], float] = {}  # (forward, input, weight): self time of every op doing it
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key not in CONV_FORWARD + CONV_BACKWARD:
            continue
        forward = e.key in CONV_FORWARD
        x, w = (e.input_shapes[0], e.input_shapes[1]) if forward else (e.input_shapes[1], e.input_shapes[2])
        key = (forward, tuple(x), tuple(w))
        self_us[key] = self_us.get(key, 0.0) + e.self_cpu_time_total
    for (forward, x, w), us in self_us.items():
        conv = convs[w]
        oh, ow = ((size + 2 * pad - d * (k - 1) - 1) // stride + 1 for size, pad, k, stride, d in
                  zip(x[2:], conv.padding, conv.kernel_size, conv.stride, conv.dilation, strict=True))
        flops = 2 * x[0] * oh * ow * w[0] * w[1] * w[2] * w[3] * valid_tap_fraction(conv, x[2:])  # as executed
        passes = 1 if forward or not conv.weight.requires_grad or x[1] == 3 else 2  # conv1: no input gradient
        ms = us / steps / 1000
        rate = passes * flops / (ms / 1000) / 1e9
        lines.append(f"| {x}; {w} | {'forward' if forward else 'backward'} | {ms:.2f} | {rate:.0f} | "
                     f"{share_text(rate / limit.gflop_per_s)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes and repeats (seconds, for a smoke check)")
    parser.add_argument("--run", default="runs/demo", help="run directory to read time-to-accuracy from")
    parser.add_argument("--json", default=None, help="also write the JSON here")
    parser.add_argument("--profile-step", action="store_true",
                        help="only print where the classroom training step's time goes (torch.profiler), in the "
                             "number format it trains in here")
    args = parser.parse_args()
    if args.profile_step:
        classroom = get_profile("classroom")
        print(step_account(classroom, classroom.stage1.batch_size))
        return
    result = run_all(args.quick, Path(args.run))
    text = json.dumps(result, indent=2)
    print(text)
    print(table(result))
    if args.json:
        Path(args.json).write_text(text)
    if broken_bounds(result):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
