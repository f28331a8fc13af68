"""A run directory: which data, which profile, every stage's checkpoint, trained and evaluated in order.

Layout of ``RUN_DIR``::

    run.json        profile, data and per-stage timings (rewritten atomically)
    stage1.pt       stage 1 (AlexNet on the person box)
    stage2.pt ...   refinement stages, each with the displacement statistics it was trained on
    report/         written by ``evaluate_run``

Training is resumable per stage: a finished stage is loaded, not retrained; an unfinished one resumes
after its last checkpointed epoch. Two trainings in the same directory are refused (a lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .atomic import write_text
from .cascade import Cascade, DisplacementStats, RefineCrops, diam_floors, displacement_stats
from .checkpoint import CheckpointError, load_checkpoint
from .crops import PersonCrops, inference_box, training_boxes
from .datasets import Concat, PoseDataset, data_root, load_folder, load_lsp, load_lspet, lsp_available, lspet_folder
from .distributed import is_main, mean_over_ranks
from .geometry import Augmentation, denormalise, normalise
from .metrics import pcp
from .model import DeepPoseNet
from .profiles import Profile
from .train import FitSettings, fit

Log = Callable[[str], None]


class RunError(RuntimeError):
    """A run directory is missing, locked, or was made with other settings."""


@dataclass
class Splits:
    """Training images, a dev split of TRAINING images (validation loss, recipe choices) and the test set."""

    name: str
    train: PoseDataset
    test: PoseDataset
    dev: PoseDataset


LSP_DEV = range(800, 1000)  # LSP 801-1000: held out of training, framed and scored like LSP test (1001-2000)


def carve_dev(name: str, train: PoseDataset, test: PoseDataset, limit: int) -> Splits:
    """Splits whose dev set is the last tenth of the training samples (at most ``limit``, at least one)."""
    n_dev = max(1, min(limit, len(train) // 10))
    if len(train) - n_dev < 1:
        raise RunError(f"{name}: need at least 2 training samples to hold out a dev split, found {len(train)}")
    cut = len(train) - n_dev
    return Splits(name, train.subset(range(cut), f"{name}-train"), test, train.subset(range(cut, len(train)),
                                                                                       f"{name}-dev"))


def resolve_data(spec: str) -> str:
    """``auto`` pinned to what it means now, so a run never changes data when LSP appears later."""
    if spec == "auto":
        return "lsp" if lsp_available() else "synthetic"
    return spec


def load_data(spec: str, profile: Profile, log: Log = print) -> Splits:
    """``synthetic``, ``lsp`` (LSP train + LSP-extended when present / LSP test), ``lspet``, ``auto`` or a folder.

    ``auto`` is LSP when it is on disk, else the embedded synthetic people, so every command and notebook
    runs with nothing downloaded.
    """
    spec = resolve_data(spec)
    if spec == "synthetic":
        from .synthetic import synthetic_splits
        train, test = synthetic_splits(profile.synthetic_train, profile.synthetic_test, seed=profile.seed)
        return carve_dev("synthetic", train, test, profile.val_images)
    if spec == "lsp":
        lsp = load_lsp(split="train")
        n_dev = len(LSP_DEV) if len(lsp) == 1000 else 0
        dev = lsp.subset(LSP_DEV, "lsp-dev") if n_dev else None
        train: PoseDataset = lsp.subset(range(len(lsp) - n_dev), "lsp-train")
        extended = lspet_folder()
        if extended is not None:
            more = load_lspet(extended, verbose=False)
            # LSP repeated: its clean labels and test-like poses weigh more than LSP-extended's noisy gymnastics
            train = Concat([train] * profile.lsp_repeats + [more], name="lsp-train+lspet")
            times = f" (x{profile.lsp_repeats} each epoch)" if profile.lsp_repeats > 1 else ""
            log(f"training on LSP 1-{len(lsp) - n_dev}{times} plus {len(more)} LSP-extended images from {extended}; "
                "dev split LSP 801-1000")
        else:
            log(f"training on LSP 1-{len(lsp) - n_dev} only (no LSP-extended under {data_root()}); "
                "dev split LSP 801-1000")
        if dev is None:
            return carve_dev("lsp", train, load_lsp(split="test"), profile.val_images)
        return Splits("lsp", train, load_lsp(split="test"), dev)
    if spec == "lspet":
        folder = lspet_folder()
        if folder is None:
            raise RunError(f"no LSP-extended under {data_root()} (expected lspet/ or lspet400/ with joints.mat)")
        return split_holdout("lspet", load_lspet(folder), profile.val_images)
    folder = Path(spec)
    if folder.is_dir():
        return split_holdout(folder.name, load_folder(folder), profile.val_images)
    raise RunError(f"unknown data {spec!r}: use synthetic, lsp, lspet, auto or a folder with annotations.json/csv")


def split_holdout(name: str, data: PoseDataset, dev_limit: int = 200, test_fraction: float = 0.2) -> Splits:
    """A fixed split for data sets without a standard one: the last 20 % of samples are the test set, and the
    last tenth of the rest the dev split."""
    if len(data) < 3:
        raise RunError(f"{name}: need at least 3 samples to split into train, dev and test, found {len(data)}")
    cut = max(2, min(len(data) - 1, round(len(data) * (1 - test_fraction))))
    return carve_dev(name, data.subset(range(cut), name), data.subset(range(cut, len(data)), f"{name}-test"),
                     dev_limit)


def stage_path(run_dir: Path, stage: int) -> Path:
    return Path(run_dir) / f"stage{stage}.pt"


def settings(profile: Profile, stage: int) -> FitSettings:
    """The optimisation recipe of stage 1 or of a refinement stage, from the profile."""
    first = stage == 1
    return FitSettings(epochs=profile.epochs if first else profile.refine_epochs, loss=profile.loss,
                       lr=profile.lr if first else profile.refine_lr, optimizer=profile.optimizer,
                       weight_decay=profile.weight_decay, schedule=profile.schedule, batch_size=profile.batch_size,
                       seed=profile.seed, val_every=profile.val_every, bf16=profile.bf16,
                       channels_last=profile.channels_last)


def build_stage_model(profile: Profile, stage: int) -> DeepPoseNet:
    if stage == 1:
        return DeepPoseNet(input_size=profile.input_size, width=profile.width, dropout=profile.dropout, lrn=profile.lrn,
                           batchnorm=profile.batchnorm)
    return DeepPoseNet(input_size=profile.refine_input_size, width=profile.refine_width, dropout=profile.dropout,
                       lrn=profile.lrn, batchnorm=profile.batchnorm)


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Refuse a second training in the same directory while the first one runs."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / ".lock", "w")  # noqa: SIM115 - held for the whole with-block
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RunError(f"{run_dir}: another training is using this run directory; wait for it or choose "
                       "another --out") from None
    try:
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def read_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run directory (no run.json); train one with `deeppose-lab train --out`")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: unreadable run file ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("profile"), dict) or not isinstance(meta.get("data"), str):
        raise RunError(f"{path}: not a run description (expected an object with 'profile' and 'data')")
    try:
        Profile.from_dict(meta["profile"])
    except ValueError as exc:
        raise RunError(f"{path}: {exc}") from None
    meta.setdefault("stages", {})
    return meta


def start_run(run_dir: Path, profile: Profile, data: str) -> dict[str, Any]:
    """Create run.json, or check that an existing run was made with the same profile and data."""
    meta = {"profile": profile.to_dict(), "data": data, "stages": {}}
    if (run_dir / "run.json").exists():
        old = read_run(run_dir)
        if old["profile"] != meta["profile"] or old["data"] != data:
            changed = sorted(k for k in meta["profile"] if old["profile"].get(k) != meta["profile"][k])
            raise RunError(f"{run_dir}: this run was made with other settings (data {old['data']!r}, changed "
                           f"fields {changed}); resume with the same ones or choose another --out")
        return old
    write_text(run_dir / "run.json", json.dumps(meta, indent=2))
    return meta


def agreed_start(run_dir: Path, profile: Profile, data: str) -> dict[str, Any]:
    """Rank 0 creates or checks run.json; every rank learns whether that worked before going on."""
    meta, error = None, None
    if is_main():
        try:
            meta = start_run(run_dir, profile, data)
        except RunError as exc:
            error = exc
    if float(mean_over_ranks(torch.tensor(0.0 if error is None else 1.0))) > 0:
        raise error or RunError(f"{run_dir}: rank 0 refused this run directory")
    return meta or read_run(run_dir)


def train_run(run_dir: Path | str, profile: Profile, data: str = "auto", stages: int | None = None,
              progress: bool = True, log: Log = print) -> Cascade:
    """Train stage 1, then each refinement stage in turn, resuming whatever is already in ``run_dir``."""
    run_dir = Path(run_dir)
    stages = stages or profile.stages
    data = resolve_data(data)
    if profile.threads:
        torch.set_num_threads(profile.threads)
    with run_lock(run_dir) if is_main() else contextlib.nullcontext():
        meta = agreed_start(run_dir, profile, data)
        splits = load_data(data, profile, log)
        log(f"data {splits.name}: {len(splits.train)} training, {len(splits.dev)} dev (validation) and "
            f"{len(splits.test)} test images")
        val = splits.dev.subset(range(min(profile.val_images, len(splits.dev))), "val")
        model1, history = train_stage1(run_dir, profile, splits.train, val, progress)
        record_stage(meta, run_dir, 1, history, log)
        # Stage s learns from stage s−1's errors exactly as the cascade will make them at test time: on each
        # training image stage 1 looks where its training crops were framed (LSP-extended: around the person).
        cascade = cascade_for(profile, model1, [])
        if stages == 1:
            return cascade
        refine_train = refiner_images(splits.train, profile)
        boxes = training_boxes(refine_train, profile.train_box, profile.box_margin)
        train_pose, val_pose = cascade.first_pose(refine_train, boxes), cascade.first_pose(val)
        train_floor, val_floor = diam_floors(refine_train, boxes), diam_floors(val)
        for s in range(2, stages + 1):
            model, history = train_refiner(run_dir, profile, s, (cascade.refiners or [model1])[-1], refine_train,
                                           train_pose, train_floor, val, val_pose, val_floor, progress)
            record_stage(meta, run_dir, s, history, log)
            if s < stages:  # the next stage's training poses; after the last stage nothing uses them
                train_pose = cascade.refined(model, refine_train, train_pose, train_floor)
            val_pose = cascade.refined(model, val, val_pose, val_floor)
            cascade.refiners.append(model)
    return cascade


def refiner_images(train: PoseDataset, profile: Profile) -> PoseDataset:
    """The training images the refinement stages learn from: all of them, or ``refine_images`` of them drawn
    once with the run's seed. Each refiner crops 14 boxes an image, and every stage's errors must be measured
    on its images first, so on 11 000 images a refiner's epoch costs about as much as stage 1's 14 epochs."""
    if not profile.refine_images or profile.refine_images >= len(train):
        return train
    chosen = np.random.default_rng([profile.seed, 2]).choice(len(train), profile.refine_images, replace=False)
    return train.subset(np.sort(chosen), f"{train.name}-refine")


def cascade_for(profile: Profile, stage1: nn.Module, refiners: list[nn.Module], compile: bool = False) -> Cascade:
    """The trained networks with the profile's test-time settings (sizes, σ, flip averaging, bf16).

    ``compile`` (``--compile`` on the command line) pays seconds per network up front for faster inference.
    """
    return Cascade(stage1, profile.input_size, refiners, profile.refine_input_size, profile.sigma,
                   profile.flip_test, profile.bf16, compile)


def record_stage(meta: dict, run_dir: Path, stage: int, history: list[dict], log: Log) -> None:
    """Write a stage's training time (the sum over its epochs, so a resumed run counts each epoch once)."""
    seconds = sum(h["seconds"] for h in history)
    if is_main():
        meta["stages"][str(stage)] = {"seconds": round(seconds, 1), "epochs": len(history),
                                      "dev_curve": dev_curve(history)}
        write_text(run_dir / "run.json", json.dumps(meta, indent=2))
    log(f"stage {stage} ready ({seconds:.0f} s of training over {len(history)} epochs)")


def dev_curve(history: list[dict]) -> list[list[float]]:
    """[training seconds so far, dev strict PCP, dev loose PCP] at each validation pass of a stage."""
    curve, elapsed = [], 0.0
    for h in history:
        elapsed += h["seconds"]
        if "dev_strict_pcp" in h:
            curve.append([round(elapsed, 1), round(h["dev_strict_pcp"], 4), round(h["dev_loose_pcp"], 4)])
    return curve


def train_stage1(run_dir: Path, profile: Profile, train: PoseDataset, val: PoseDataset, progress: bool
                 ) -> tuple[DeepPoseNet, list[dict]]:
    torch.manual_seed(profile.seed)
    model = build_stage_model(profile, 1)
    crops = PersonCrops(train, profile.input_size, profile.augment, profile.train_box, profile.box_margin,
                        profile.mask_hidden)
    val_crops = PersonCrops(val, profile.input_size, Augmentation.none(), "image", mask_hidden=profile.mask_hidden)
    score = (lambda m: dev_scores(cascade_for(profile, m, []).first_pose(val), val)) if len(val) else None
    history = fit(model, crops, val_crops, settings(profile, 1), stage_path(run_dir, 1), 1, progress=progress,
                  score=score)
    return model, history


def dev_scores(pred: np.ndarray, dev: PoseDataset) -> dict[str, float]:
    """What a validation pass records besides the loss: strict and loose PCP on the dev split (time to accuracy)."""
    return {f"dev_{mode}_pcp": pcp(pred, dev.joints, mode=mode)["mean"] for mode in ("strict", "loose")}


def refine_augmentation(profile: Profile) -> Augmentation:
    """Stage-s crops are already jittered by the simulated displacement; keep rotation, scale, flip, colour."""
    a = profile.augment
    return Augmentation(shift=0.0, scale=a.scale, rotate=a.rotate, flip=a.flip, colour=a.colour)


def train_refiner(run_dir: Path, profile: Profile, stage: int, previous: DeepPoseNet, train: PoseDataset,
                  train_pose: np.ndarray, train_floor: np.ndarray, val: PoseDataset, val_pose: np.ndarray,
                  val_floor: np.ndarray, progress: bool) -> tuple[DeepPoseNet, list[dict]]:
    """Stage s on stage s−1's training-set poses (``train_pose``); ``*_floor`` are the per-image diam floors.

    With ``refine_init = "previous"`` stage s starts as a copy of stage s−1 (``previous``) and then trains
    its own parameters: on LSP a refiner started from random weights learned too little in minutes to move
    already-good joints closer (PDJ@0.1 fell), while one that starts from features which already find
    limbs improved every measure (see the README).
    """
    stats = displacement_stats(train_pose, train.joints, train.visible, profile.sigma, train_floor)
    torch.manual_seed(profile.seed + stage)
    model = build_stage_model(profile, stage)
    if profile.refine_init == "previous":
        model.load_state_dict(previous.state_dict())
    crops = RefineCrops(train, train_pose, stats, profile.sigma, profile.refine_input_size, profile.boxes_per_joint,
                        refine_augmentation(profile), profile.mask_hidden, min_diam=train_floor)
    val_crops = RefineCrops(val, val_pose, stats, profile.sigma, profile.refine_input_size, 1, Augmentation.none(),
                            profile.mask_hidden, simulate=False, min_diam=val_floor)
    scorer = cascade_for(profile, previous, [])

    def score(m: nn.Module) -> dict[str, float]:
        return dev_scores(scorer.refined(m, val, val_pose, val_floor), val)

    history = fit(model, crops, val_crops, settings(profile, stage), stage_path(run_dir, stage), stage,
                  extra={"displacement": stats.to_payload(), "sigma": profile.sigma}, progress=progress,
                  score=score if len(val) else None)
    return model, history


def load_stage(run_dir: Path, stage: int, input_size: int | None = None) -> tuple[DeepPoseNet, dict[str, Any]]:
    """A finished stage's model (eval mode) and its checkpoint; ``input_size`` is what the run expects."""
    path = stage_path(run_dir, stage)
    ckpt = load_checkpoint(path, stage=stage)
    if not ckpt["complete"]:
        raise CheckpointError(path, f"stage {stage} is unfinished (epoch {ckpt['epoch'] + 1}); "
                                    "run `deeppose-lab train` again with the same --out to finish it")
    config = ckpt["model_config"]
    if input_size is not None and isinstance(config, dict) and config.get("input_size") != input_size:
        raise CheckpointError(path, f"holds a network for input_size {config.get('input_size')} px, but this run's "
                                    f"profile crops stage {stage} at {input_size} px; the file is from another run")
    try:
        model = DeepPoseNet.from_config(config)
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"weights do not fit the recorded model ({str(exc).splitlines()[0]})") from None
    return model.eval(), ckpt


def load_cascade(run_dir: Path | str, stages: int | None = None, compile: bool = False,
                 flip_test: bool | None = None) -> Cascade:
    """Every finished stage in ``run_dir`` (or the first ``stages``), ready to predict.

    ``flip_test`` overrides the run's test-time flip averaging (None keeps it). It is a test-time choice, so
    ``False`` (``--no-flip``) evaluates any run as the paper did, without mirrored crops, from half the crops.
    """
    run_dir = Path(run_dir)
    profile = Profile.from_dict(read_run(run_dir)["profile"])
    if flip_test is not None:
        profile = profile.replace(flip_test=flip_test)
    model1, _ = load_stage(run_dir, 1, profile.input_size)
    refiners = []
    s = 2
    while stage_path(run_dir, s).exists() and (stages is None or s <= stages):
        refiners.append(load_stage(run_dir, s, profile.refine_input_size)[0])
        s += 1
    return cascade_for(profile, model1, refiners, compile)


def stage_stats(run_dir: Path | str, stage: int) -> DisplacementStats:
    """The displacement statistics a refinement stage was trained on (for plots)."""
    _, ckpt = load_stage(Path(run_dir), stage)
    return DisplacementStats.from_payload(ckpt["displacement"])


def mean_pose_baseline(train: PoseDataset, test: PoseDataset, profile: Profile) -> np.ndarray:
    """The mean training pose in box-normalised space, placed in every test image's box (no image seen).

    Each training pose is normalised in the box its stage-1 crop was framed by (``training_boxes``), as the
    network's targets were: LSP-extended poses normalised in their whole images would shrink the mean pose."""
    boxes = training_boxes(train, profile.train_box, profile.box_margin)
    mean = np.mean([normalise(s.joints, boxes[n]) for n, s in enumerate(train)], axis=0)
    return np.stack([denormalise(mean, inference_box(s)) for s in test])


def evaluate_run(run_dir: Path | str, data: str | None = None, out: Path | str | None = None,
                 stages: int | None = None, log: Log = print, compile: bool = False,
                 flip_test: bool | None = None) -> dict[str, Any]:
    """Run every stage on the test split and write the report (JSON, markdown table, PDJ plot, best/worst).

    ``compile`` and ``flip_test`` as in ``load_cascade``; the report records the flip averaging used."""
    from .report import write_report

    run_dir = Path(run_dir)
    meta = read_run(run_dir)
    profile = Profile.from_dict(meta["profile"])
    splits = load_data(data or meta["data"], profile, log)
    cascade = load_cascade(run_dir, stages, compile, flip_test)
    tic = time.perf_counter()
    splits.test.decode_all()  # first, so the inference figure is the cascade's alone
    decoding = time.perf_counter() - tic
    tic = time.perf_counter()
    preds = cascade.predict(splits.test)
    seconds = time.perf_counter() - tic
    baseline = mean_pose_baseline(splits.train, splits.test, profile)
    report_meta = {"run": str(run_dir), "profile": profile.name, "data": splits.name, "stages": cascade.stages,
                   "flip_test": cascade.flip_test, "training_seconds": meta.get("stages", {}),
                   "decoding_ms_per_image": 1000 * decoding / len(preds[0]),
                   "inference_ms_per_image": 1000 * seconds / len(preds[0]),  # with --compile: compiling included
                   "compile": compile}
    out = Path(out) if out is not None else run_dir / "report"
    results = write_report(out, preds, splits.test, report_meta, baseline_preds=baseline)
    log(f"report written to {out}/ (report.md, report.json, pdj.png, best_worst.png, predictions.npz)")
    return results
