"""The training loop every stage shares: one function, ``fit``, over any ``CropSource``.

What a researcher needs from it: the paper's loss, a choice of optimiser, repeatable runs, a checkpoint
after every epoch that a killed run resumes from and ends with the same weights as an uninterrupted run,
and a loud stop (keeping the last good checkpoint) when the loss turns NaN. What a student needs: a
progress bar and a loss history to plot. Nothing else lives here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .crops import CropSource, batches, epoch_order, helper_has_a_core, prefetched
from .distributed import barrier, default_device, mean_over_ranks, rank_and_world
from .errors import ConfigError, DeepPoseError
from .model import DeepPoseNet
from .profiles import StageRecipe

LOG_EVERY = 20  # optimizer steps between reads of the loss (the progress bar's figure and the NaN check)


class TrainingDiverged(DeepPoseError, RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass(frozen=True)
class FitSettings:
    """How ``fit`` trains one stage: the stage's recipe (its optimisation; the network is already built) and the
    run-wide seed, validation interval and number formats (``pipeline.fit_settings``)."""

    recipe: StageRecipe
    seed: int = 0
    val_every: int = 1
    bf16: bool = False
    channels_last: bool = False


def pose_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """The paper's loss: squared L2 between predicted and true normalised joints, summed over joints.

    ``kind="l1"`` sums absolute differences instead (not the paper's): a squared loss pays most for the
    far-off joints it cannot place and pulls uncertain ones (wrists, elbows) to their average; L1 pulls them to
    the median (see docs/accuracy.md for what it did here).

    ``weight`` (B, 14) is 0 for joints the loss ignores (hidden ones when masking, all but joint i in a
    cascade crop). Averaged over the batch so the learning rate does not depend on the batch size.

    Introduced in ``notebooks/03_model.ipynb``.
    """
    diff = pred.float().view_as(target) - target
    per_joint = diff.abs().sum(dim=-1) if kind == "l1" else diff.pow(2).sum(dim=-1)
    return (per_joint * weight).sum(dim=-1).mean()


def make_optimizer(model: nn.Module, s: StageRecipe) -> torch.optim.Optimizer:
    """AdaGrad (the paper's), momentum SGD or Adam (decoupled weight decay).

    ``fused``: one kernel updates every parameter. The default on a CPU is one small op per tensor and per
    formula term, a noticeable share of a small network's step (docs/performance.md).
    """
    params = model.parameters()
    if s.optimizer == "adagrad":
        return torch.optim.Adagrad(params, lr=s.lr, weight_decay=s.weight_decay, fused=True)
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=0.9, weight_decay=s.weight_decay, fused=True)
    if s.optimizer == "adam":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay, fused=True)
    raise ValueError(f"unknown optimizer {s.optimizer!r}; choose adagrad, sgd or adam")


def lr_factor(schedule: str, step: int, total: int, warmup: int = 0) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total`` optimizer steps.

    A linear warm-up over the first ``warmup`` steps keeps the first Adam/AdaGrad steps, which move every
    weight by about the full learning rate, from blowing up the un-normalised AlexNet.
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = step / max(total, 1)
    if schedule == "cosine":
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return 0.1 if progress >= 2.0 / 3.0 else 1.0
    return 1.0


def autocast(enabled: bool, device: torch.device | None = None) -> contextlib.AbstractContextManager:
    """bf16 autocast on the model's device type (CPU or CUDA), or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type if device is not None else "cpu", dtype=torch.bfloat16)


def epoch_seed(seed: int, stage: int, epoch: int) -> int:
    """The torch seed of one epoch (dropout): resuming at an epoch boundary replays the same randomness."""
    return int(np.random.SeedSequence([seed, stage, epoch]).generate_state(1)[0])


@torch.no_grad()
def mean_loss(model: nn.Module, source: CropSource, s: FitSettings, limit: int | None = None) -> float:
    """The loss on ``source`` without augmentation or dropout (validation)."""
    model.eval()
    device = next(model.parameters()).device
    n = len(source) if limit is None else min(limit, len(source))
    total, count = 0.0, 0
    for batch in batches(source, np.arange(n), s.recipe.batch_size):
        crops, target, weight = batch.inputs(device), batch.target.to(device), batch.weight.to(device)
        with autocast(s.bf16, device):
            pred = model(prepare(crops, s))
        total += float(pose_loss(pred, target, weight, s.recipe.loss)) * len(crops)
        count += len(crops)
    return total / max(count, 1)


def prepare(crops: torch.Tensor, s: FitSettings) -> torch.Tensor:
    return crops.contiguous(memory_format=torch.channels_last) if s.channels_last else crops


def resume_state(path: Path, stage: int, model: nn.Module, optimizer: torch.optim.Optimizer
                 ) -> tuple[int, list[dict], bool]:
    """(first epoch to run, history so far, already complete) from an earlier checkpoint of this stage."""
    if not path.exists():
        return 0, [], False
    ckpt = load_checkpoint(path, stage=stage)
    if ckpt["model_config"] != model.config:
        raise CheckpointError(path, f"was trained with model {ckpt['model_config']}, this run asks for "
                                    f"{model.config}; use another run directory or the same settings")
    model.load_state_dict(ckpt["model"])
    if "optimizer" in ckpt:
        optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["epoch"]) + 1, list(ckpt.get("history", [])), bool(ckpt["complete"])


def fit(model: DeepPoseNet, train: CropSource, val: CropSource | None, s: FitSettings, checkpoint: Path | str,
        stage: int = 1, extra: dict[str, Any] | None = None, progress: bool = True,
        score: Callable[[nn.Module], dict[str, float]] | None = None) -> list[dict]:
    """Train ``model`` on ``train`` for ``s.recipe.epochs``, checkpointing to ``checkpoint`` after every epoch.

    If ``checkpoint`` already holds part of this stage, training resumes after its last epoch; if it holds
    the finished stage, nothing is trained. ``extra`` (tensors, numbers, lists) is stored in every checkpoint
    (the cascade keeps its displacement statistics there). ``score(model)``, at every validation pass, adds its
    numbers to that epoch's record (the dev split's PCP: the time-to-accuracy curve). Returns the per-epoch history.
    """
    checkpoint = Path(checkpoint)
    device = default_device()
    model.to(device, memory_format=torch.channels_last if s.channels_last else torch.preserve_format)
    optimizer = make_optimizer(model, s.recipe)
    start, history, complete = resume_state(checkpoint, stage, model, optimizer)
    rank, world = rank_and_world()
    if s.recipe.batch_size % world:
        raise ConfigError(f"batch_size {s.recipe.batch_size} must be divisible by the {world} processes")
    trained = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) \
        if world > 1 else model
    steps_per_epoch = math.ceil(len(train) / s.recipe.batch_size)
    # One bar for the whole stage: a notebook keeps a single line per stage, not one per epoch.
    remaining = 0 if complete else max(s.recipe.epochs - start, 0)
    bar = tqdm(total=remaining * (len(train) - len(train) % world), desc=f"stage {stage}", unit="crop",
               disable=not (progress and rank == 0 and remaining))
    for epoch in range(start, 0 if complete else s.recipe.epochs):
        tic = time.perf_counter()
        bar.set_description(f"stage {stage} epoch {epoch + 1}/{s.recipe.epochs}")
        train_loss = run_epoch(trained, optimizer, train, s, stage, epoch, steps_per_epoch, checkpoint, bar)
        record = {"epoch": epoch + 1, "train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"],
                  "seconds": time.perf_counter() - tic}
        last = epoch + 1 == s.recipe.epochs
        if val is not None and s.val_every and ((epoch + 1) % s.val_every == 0 or last):
            record["val_loss"] = mean_loss(model, val, s)
            if score is not None and rank == 0:
                record.update(score(model))
                model.eval()
        history.append(record)
        if rank == 0:
            save_checkpoint(checkpoint, {"stage": stage, "model_config": model.config, "model": model.state_dict(),
                                         "optimizer": optimizer.state_dict(), "epoch": epoch, "complete": last,
                                         "history": history, "settings": asdict(s), **(extra or {})})
        barrier()
    bar.close()
    model.eval()
    return history


def run_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, train: CropSource, s: FitSettings, stage: int,
              epoch: int, steps_per_epoch: int, checkpoint: Path, bar: tqdm) -> float:
    """One pass over ``train`` in this epoch's order; returns the mean training loss."""
    model.train()
    rank, world = rank_and_world()
    device = next(model.parameters()).device
    torch.manual_seed(epoch_seed(s.seed, stage, epoch) + rank)
    # Rank r takes every world-th item, so each step's items across ranks are exactly one process's batch.
    # Every rank must take the same number of steps (DDP syncs each one), so a remainder of fewer than
    # `world` items is left out of this epoch; the shuffle changes which ones.
    order = epoch_order(len(train), s.seed + 1000 * stage, epoch, shuffle=True)
    order = order[: len(order) - len(order) % world][rank::world]
    made = batches(train, order, s.recipe.batch_size // world, s.seed + 1000 * stage, epoch)
    local_batches = prefetched(made) if helper_has_a_core(device) else made  # the same batches either way
    last_step = math.ceil(len(order) / (s.recipe.batch_size // world)) - 1
    # The loss stays on the device between checks: reading it (.item(), isfinite) waits for the GPU every time.
    running = torch.zeros((), dtype=torch.float64, device=device)
    total, count, first = 0.0, 0, 0
    for step, batch in enumerate(local_batches):
        # The crops arrive uint8 and become floats here, on torch's threads (or the GPU) where the step runs
        crops = batch.inputs(device)
        target, weight = (t.to(device, non_blocking=True) for t in (batch.target, batch.weight))
        for group in optimizer.param_groups:
            group["lr"] = s.recipe.lr * lr_factor(s.recipe.schedule, epoch * steps_per_epoch + step,
                                                  s.recipe.epochs * steps_per_epoch, warmup=steps_per_epoch)
        with autocast(s.bf16, device):
            pred = model(prepare(crops, s))
        loss = pose_loss(pred, target, weight, s.recipe.loss)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running += loss.detach().double() * len(crops)
        count += len(crops)
        bar.update(len(crops) * world)
        if (step + 1) % LOG_EVERY == 0 or step == last_step:  # every rank reaches the same steps (DDP)
            check_finite(mean_over_ranks(running), stage, epoch, first, step, checkpoint)
            total += float(running)
            running.zero_()
            first = step + 1
            bar.set_postfix(loss=f"{total / count:.4f}")
    return float(mean_over_ranks(torch.tensor(total / max(count, 1))))


def check_finite(loss: torch.Tensor, stage: int, epoch: int, first: int, step: int, checkpoint: Path) -> None:
    """Stop loudly when the summed loss of batches ``first``..``step`` (0-based) is NaN or infinite.

    The model in memory may have taken those steps on a bad loss; the checkpoint on disk is the last good epoch's."""
    if not torch.isfinite(loss):
        kept = f"the last good checkpoint {checkpoint} is kept" if checkpoint.exists() else "no checkpoint was written"
        where = f"batch {step + 1}" if first == step else f"batches {first + 1}-{step + 1}"
        raise TrainingDiverged(f"stage {stage}, epoch {epoch + 1}, {where}: the loss is {loss.item()}; "
                               f"training stopped and {kept}. Try a lower learning rate (--set "
                               f"{'stage1' if stage == 1 else 'refiner'}.lr=...).")
