"""The pipeline: train a run's stages in order, load them back, evaluate them, predict with them.

Every stage is trained by ``train.fit`` from the profile's recipe for it (``Profile.recipe``); what stage s
learns from is stage s−1 run on the training images, exactly as the cascade will run at test time. Loading,
evaluation and prediction take a ``device`` (default: the GPU when there is one, as training uses).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .atomic import writable_folder, write_text
from .cascade import Cascade, DisplacementStats, RefineCrops, diam_floors, displacement_stats
from .checkpoint import CheckpointError, load_checkpoint
from .crops import PersonCrops, inference_box, training_boxes, view_count
from .datasets import Concat, ImageFiles, PoseDataset
from .distributed import default_device, is_main
from .drawing import draw_pose, save_png
from .errors import ConfigError, DeepPoseError, RunError
from .geometry import Augmentation, cascade_boxes, denormalise, normalise
from .geometry import box_corners as geometry_corners
from .images import image_paths
from .metrics import pcp
from .model import DeepPoseNet
from .number_format import auto_choice, use_bf16
from .profiles import VIEW_FIELDS, Profile, validate, without_views
from .rundir import (
    Log,
    agreed_start,
    read_run,
    record_stage,
    run_lock,
    run_profile,
    stage_complete,
    stage_path,
    stage_seconds,
)
from .sample import to_file_units
from .skeleton import JOINT_NAMES
from .splits import Splits, load_data, resolve_data
from .train import FitSettings, fit

Device = torch.device | str | None


def fit_settings(profile: Profile, stage: int) -> FitSettings:
    """How ``fit`` trains ``stage``: its recipe plus the run-wide seed, validation interval and number formats."""
    return FitSettings(profile.recipe(stage), seed=profile.seed, val_every=profile.val_every, bf16=use_bf16(profile),
                       channels_last=profile.channels_last)


def train_run(run_dir: Path | str, profile: Profile, data: str = "auto", stages: int | None = None,
              progress: bool = True, log: Log = print) -> Cascade:
    """Train stage 1, then each refinement stage in turn, resuming whatever is already in ``run_dir``.

    Introduced in ``notebooks/04_stage1.ipynb``.
    """
    run_dir = Path(run_dir)
    stages = stages or profile.stages
    data = resolve_data(data)
    if profile.threads:
        torch.set_num_threads(profile.threads)
    with run_lock(run_dir) if is_main() else contextlib.nullcontext():
        splits = load_data(data, profile, log)  # first: a typo in --data must not leave a run.json behind
        check_trainable(splits, profile)
        meta = agreed_start(run_dir, settled_number_format(run_dir, profile, log), data)
        # rank 0's choice, on every rank (from run.json: an old one names it as a bf16 flag), and the box views the
        # run recorded (a resumed run keeps its own; start_run does not compare them)
        recorded = Profile.from_dict(meta["profile"])
        profile = profile.replace(number_format=recorded.number_format,
                                  **{key: getattr(recorded, key) for key in VIEW_FIELDS})
        log(f"data {splits.name}: {len(splits.train)} training, {len(splits.dev)} dev (validation) and "
            f"{len(splits.test)} test images")
        if all(stage_complete(run_dir, s) for s in range(1, stages + 1)):
            # nothing to train: stage s's training poses are only needed to train stage s + 1
            took = ", ".join(f"{seconds:.0f} s" for s, seconds in sorted(stage_seconds(run_dir).items()) if s <= stages)
            log(f"{run_dir}: stages 1-{stages} are all trained ({took} of training, as run.json records); "
                "loaded them, nothing recomputed")
            return load_cascade(run_dir, stages)
        val = splits.dev.subset(range(min(profile.val_images, len(splits.dev))), "val")
        model1, history = train_stage1(run_dir, profile, splits.train, val, progress)
        record_stage(meta, run_dir, 1, history, log)
        # Stage s learns from stage s−1's errors exactly as the cascade will make them at test time: on each
        # training image stage 1 looks where its training crops were framed (LSP-extended: around the person),
        # through that one box: the test-time views were measured on refiners trained so.
        cascade = cascade_for(without_views(profile), model1, [])
        if stages == 1:
            return cascade_for(profile, model1, [])
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
    return cascade_for(profile, model1, cascade.refiners)  # with the profile's test-time views


def settled_number_format(run_dir: Path, profile: Profile, log: Log) -> Profile:
    """``profile`` with ``number_format="auto"`` made bf16 or fp32 (on rank 0, which writes run.json): the format
    a run already started with, else the faster of a few timed steps here. run.json keeps the choice, so a
    resumed run, its evaluation and a notebook on another machine run the networks as they were trained."""
    if profile.number_format != "auto" or not is_main():
        return profile
    try:
        stored = run_profile(run_dir).number_format if (run_dir / "run.json").is_file() else "auto"
    except DeepPoseError:
        stored = "auto"  # start_run says what is wrong with it, or starts over where nothing was trained
    if stored != "auto":
        log(f"number format: {stored}, as this run started")
        return profile.replace(number_format=stored)
    chosen, seconds = auto_choice(profile)
    timed = f" (a stage-1 training step here: {', '.join(f'{f} {1000 * s:.0f} ms' for f, s in seconds.items())})"
    log(f"number format: {chosen}{timed if seconds else ''}")
    return profile.replace(number_format=chosen)


def check_trainable(splits: Splits, profile: Profile) -> None:
    """Refuse data that would train nothing (every joint hidden: a loss of 0 every epoch) or test nothing."""
    if profile.mask_hidden and not splits.train.visible.any():
        raise RunError(f"{splits.name}: no visible joint in any of the {len(splits.train)} training images, so the "
                       "loss would be 0 and nothing would be learned; check the 'visible' flags of the annotations")
    if len(splits.test) == 0:
        raise RunError(f"{splits.name}: no test images, so the run could not be evaluated")


def refiner_images(train: PoseDataset, profile: Profile) -> PoseDataset:
    """The training images the refinement stages learn from: all of them, or ``refine_images`` of them drawn
    once with the run's seed. Each refiner crops 14 boxes an image, and every stage's errors must be measured
    on its images first, so on 11 000 images a refiner's epoch costs about as much as stage 1's 14 epochs."""
    if not profile.refine_images or profile.refine_images >= len(train):
        return train
    chosen = np.random.default_rng([profile.seed, 2]).choice(len(train), profile.refine_images, replace=False)
    return train.subset(np.sort(chosen), f"{train.name}-refine")


def cascade_for(profile: Profile, stage1: nn.Module, refiners: list[nn.Module], compile: bool = False) -> Cascade:
    """The trained networks with the profile's test-time settings (sizes, σ, flip averaging, bf16, box views).

    ``compile`` (``--compile`` on the command line) pays seconds per network up front for faster inference.
    """
    return Cascade(stage1, profile.stage1.input_size, refiners, profile.refiner.input_size, profile.sigma,
                   profile.flip_test, use_bf16(profile), compile, profile.stage1_views, profile.refine_views)


def stage1_crops(profile: Profile, train: PoseDataset, augment: Augmentation) -> PersonCrops:
    """Stage 1's training crops of ``train`` as ``profile`` makes them: its boxes, masking and joint weights."""
    return PersonCrops(train, profile.stage1.input_size, augment, profile.train_box, profile.box_margin,
                       profile.mask_hidden, profile.arm_weight)


def stage1_dev_crops(profile: Profile, dev: PoseDataset) -> PersonCrops:
    """Stage 1's crops of held-out images: the whole image, as LSP's test protocol frames them; no augmentation."""
    return PersonCrops(dev, profile.stage1.input_size, Augmentation.none(), "image", mask_hidden=profile.mask_hidden,
                       arm_weight=profile.arm_weight)


def train_stage1(run_dir: Path, profile: Profile, train: PoseDataset, val: PoseDataset, progress: bool
                 ) -> tuple[DeepPoseNet, list[dict]]:
    """Stage 1 on person crops of the training images, scored on the dev split ``val`` at every validation pass."""
    torch.manual_seed(profile.seed)
    model = profile.stage1.build_model()
    crops, val_crops = stage1_crops(profile, train, profile.augment), stage1_dev_crops(profile, val)
    score = (lambda m: dev_scores(cascade_for(profile, m, []).first_pose(val), val)) if len(val) else None
    history = fit(model, crops, val_crops, fit_settings(profile, 1), stage_path(run_dir, 1), 1, progress=progress,
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
    model = profile.refiner.build_model(pretrained=profile.refine_init != "previous")  # weights replaced below
    if profile.refine_init == "previous":
        model.load_state_dict(previous.state_dict())
    size = profile.refiner.input_size
    crops = RefineCrops(train, train_pose, stats, profile.sigma, size, profile.boxes_per_joint,
                        refine_augmentation(profile), profile.mask_hidden, min_diam=train_floor,
                        others=profile.refine_others)
    val_crops = RefineCrops(val, val_pose, stats, profile.sigma, size, 1, Augmentation.none(), profile.mask_hidden,
                            simulate=False, min_diam=val_floor)
    scorer = cascade_for(without_views(profile), previous, [])  # through one box, as val_pose was made

    def score(m: nn.Module) -> dict[str, float]:
        return dev_scores(scorer.refined(m, val, val_pose, val_floor), val)

    history = fit(model, crops, val_crops, fit_settings(profile, stage), stage_path(run_dir, stage), stage,
                  extra={"displacement": stats.to_payload(), "sigma": profile.sigma}, progress=progress,
                  score=score if len(val) else None)
    return model, history


def load_stage(run_dir: Path, stage: int, profile: Profile | None = None, device: Device = None
               ) -> tuple[DeepPoseNet, dict[str, Any]]:
    """A finished stage's model (eval mode, on ``device``; default: the GPU when present) and its checkpoint.

    The checkpoint must hold the network the run's profile (default: its run.json) describes, and a refiner
    the σ it was trained for: a stage file copied in from another run is refused, never scored as this run's.

    Introduced in ``notebooks/04_stage1.ipynb``.
    """
    run_dir = Path(run_dir)
    profile = profile or run_profile(run_dir)
    path = stage_path(run_dir, stage)
    ckpt = load_checkpoint(path, stage=stage)
    if not ckpt["complete"]:
        raise CheckpointError(path, f"stage {stage} is unfinished (epoch {ckpt['epoch'] + 1}); "
                                    "run `deeppose-lab train` again with the same --out to finish it")
    check_stage_matches_run(path, ckpt, profile, stage)
    try:
        model = DeepPoseNet.from_config(ckpt["model_config"])
        model.load_state_dict(ckpt["model"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(path, f"weights do not fit the recorded model ({str(exc).splitlines()[0]})") from None
    return model.to(device or default_device()).eval(), ckpt


def check_stage_matches_run(path: Path, ckpt: dict[str, Any], profile: Profile, stage: int) -> None:
    """Refuse a stage file whose network or σ differs from what the run's profile says that stage is."""
    config, recipe = ckpt["model_config"], "stage1" if stage == 1 else "refiner"
    if not isinstance(config, dict):
        raise CheckpointError(path, "has no model description (model_config); the file is from another program")
    expected = profile.recipe(stage).model_config()
    config = {**config, "channels": tuple(config["channels"]) if isinstance(config.get("channels"), list | tuple)
              else config.get("channels")}
    unknown = sorted(set(config) - set(expected))
    wrong = [f"unknown model settings {unknown}"] if unknown else []
    wrong += [f"{k} {config.get(k)!r} where this run's {recipe} network has {v!r}" for k, v in expected.items()
              if config.get(k, False if k == "batchnorm" else None) != v]  # batchnorm: absent in older files
    if stage > 1 and "sigma" in ckpt and float(ckpt["sigma"]) != profile.sigma:
        wrong.append(f"sigma {float(ckpt['sigma'])!r} where this run's sigma is {profile.sigma!r}")
    if wrong:
        raise CheckpointError(path, f"holds a stage {stage} network with {'; '.join(wrong)}: the file is from another "
                                    "run; put this run's own file back, or train again with the same --out")


def load_cascade(run_dir: Path | str, stages: int | None = None, compile: bool = False,
                 flip_test: bool | None = None, device: Device = None,
                 views: tuple[float, float] | None = None, refine_views: tuple[float, float] | None = None) -> Cascade:
    """Every finished stage in ``run_dir`` (or the first ``stages``), ready to predict on ``device``.

    ``flip_test`` overrides the run's test-time flip averaging (None keeps it). It is a test-time choice, so
    ``False`` (``--no-flip``) evaluates any run as the paper did, without mirrored crops, from half the crops.
    ``views`` (``--views SCALE,SHIFT``) likewise overrides stage 1's test-time box views (``view_scale``,
    ``view_shift``); (0, 0) (``--one-box``) runs stage 1 on its one test box, as the paper did. ``refine_views``
    (``--refine-views``) does the same for the refiners' σ·diam boxes (``refine_view_scale``, ``refine_view_shift``).

    Introduced in ``notebooks/07_your_own_image.ipynb``.
    """
    run_dir = Path(run_dir)
    profile = run_profile(run_dir)
    if flip_test is not None:
        profile = profile.replace(flip_test=flip_test)
    if views is not None:
        profile = profile.replace(view_scale=float(views[0]), view_shift=float(views[1]))
    if refine_views is not None:
        profile = profile.replace(refine_view_scale=float(refine_views[0]), refine_view_shift=float(refine_views[1]))
    if views is not None or refine_views is not None:
        validate(profile, stored=True)
    model1, _ = load_stage(run_dir, 1, profile, device)
    refiners = []
    s = 2
    while stage_path(run_dir, s).exists() and (stages is None or s <= stages):
        refiners.append(load_stage(run_dir, s, profile, device)[0])
        s += 1
    if stages is not None and stages > 1 + len(refiners):
        n = 1 + len(refiners)
        raise RunError(f"{run_dir}: --stages {stages}, but this run has {n} finished stage{'s' if n > 1 else ''}; "
                       f"ask for at most {n}, or train more with `deeppose-lab train --stages {stages}`")
    return cascade_for(profile, model1, refiners, compile)


def stage_stats(run_dir: Path | str, stage: int) -> DisplacementStats:
    """The displacement statistics a refinement stage was trained on (for plots).

    Introduced in ``notebooks/05_cascade.ipynb``.
    """
    _, ckpt = load_stage(Path(run_dir), stage, device="cpu")
    return DisplacementStats.from_payload(ckpt["displacement"])


def mean_pose_baseline(train: PoseDataset, test: PoseDataset, profile: Profile) -> np.ndarray:
    """The mean training pose in box-normalised space, placed in every test image's box (no image seen).

    Each training pose is normalised in the box its stage-1 crop was framed by (``training_boxes``), as the
    network's targets were: LSP-extended poses normalised in their whole images would shrink the mean pose."""
    boxes = training_boxes(train, profile.train_box, profile.box_margin)
    mean = np.mean([normalise(s.joints, boxes[n]) for n, s in enumerate(train)], axis=0)
    return np.stack([denormalise(mean, inference_box(s)) for s in test])


SPLITS = ("auto", "test", "dev", "train", "all")


def resolved_split(split: str, trained_on: bool) -> str:
    """``auto`` made concrete: the held-out test split of the data a run trained on, all of data it never saw."""
    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    return ("test" if trained_on else "all") if split == "auto" else split


def scored_images(splits: Splits, split: str, trained_on: bool) -> tuple[PoseDataset, str]:
    """The images ``evaluate`` scores and a sentence that says which: ``auto`` is the held-out test split of the
    data the run trained on, and every image of data it never saw (a 305-image folder is scored on 305, not 61)."""
    split = resolved_split(split, trained_on)
    parts = {"test": [splits.test], "dev": [splits.dev], "train": [splits.train],
             "all": [splits.train, splits.dev, splits.test]}[split]
    images = parts[0] if len(parts) == 1 else Concat(parts, name=f"{splits.name}-all")
    seen = "data this run trained on" if trained_on else "data this run never trained on"
    what = {"test": "the held-out test split", "dev": "the dev split (held out of training, used for choices)",
            "train": "the training split (images the run learned from)", "all": "every image"}[split]
    return images, f"{what} of {splits.name}: {len(images)} images, {seen}"


def evaluate_run(run_dir: Path | str, data: str | None = None, out: Path | str | None = None,
                 stages: int | None = None, log: Log = print, compile: bool = False,
                 flip_test: bool | None = None, device: Device = None, split: str = "auto", reuse: bool = False,
                 views: tuple[float, float] | None = None, refine_views: tuple[float, float] | None = None
                 ) -> dict[str, Any]:
    """Run every stage on the images ``split`` names (``scored_images``) and write the report (JSON, markdown
    table, PDJ plot, best/worst); the mean-pose row is always the run's own training poses.

    ``reuse`` (the notebooks): a report already in ``out`` made from the same stage files, images, settings and
    library code (``report_key``) is returned as it is, instead of computed again.

    ``compile``, ``flip_test``, ``views``, ``refine_views`` and ``device`` as in ``load_cascade``; the report
    records the flip averaging and the box views used.

    Introduced in ``notebooks/06_evaluation.ipynb``.
    """
    from .report import write_report

    run_dir = Path(run_dir)
    meta = read_run(run_dir)
    profile = Profile.from_dict(meta["profile"])
    cascade = load_cascade(run_dir, stages, compile, flip_test, device, views, refine_views)
    out = writable_folder(out if out is not None else run_dir / "report", "report folder")  # before any inference
    data = resolve_data(data or meta["data"])
    splits = load_data(data, profile, log)
    trained_on = data == resolve_data(meta["data"])
    split = resolved_split(split, trained_on)
    once = splits  # scoring training images: each once, however often an epoch showed it (lsp_repeats)
    if split in ("train", "all") and profile.lsp_repeats > 1:
        once = load_data(data, profile.replace(lsp_repeats=1), lambda _: None)
    images, scored = scored_images(once, split, trained_on)
    log(f"scoring {scored}")
    key = report_key(run_dir, cascade, data, images)
    if reuse and (kept := kept_report(out, key)) is not None:
        log(f"{out}/ already holds this report (same stage files, images, settings and code: key {key[:12]}); "
            "reused it, nothing recomputed")
        return kept
    tic = time.perf_counter()
    images.decode_all()  # first, so the inference figure is the cascade's alone
    decoding = time.perf_counter() - tic
    tic = time.perf_counter()
    preds = cascade.predict(images)
    seconds = time.perf_counter() - tic
    own = splits if trained_on else load_data(meta["data"], profile, lambda _: None)
    baseline = mean_pose_baseline(own.train, images, profile)  # the training poses as training weighed them
    report_meta = {"run": str(run_dir), "profile": profile.name, "data": splits.name, "scored": scored,
                   "stages": cascade.stages, "flip_test": cascade.flip_test,
                   "stage1_views": view_count(*cascade.stage1_views), "view_scale_shift": list(cascade.stage1_views),
                   "refine_views": view_count(*cascade.refine_views),
                   "refine_view_scale_shift": list(cascade.refine_views),
                   "training_seconds": meta.get("stages", {}),
                   "decoding_ms_per_image": 1000 * decoding / len(preds[0]),
                   "inference_ms_per_image": 1000 * seconds / len(preds[0]),  # with --compile: compiling included
                   "compile": compile, "key": key}
    results = write_report(out, preds, images, report_meta, baseline_preds=baseline)
    log(f"report written to {out}/ (report.md, report.json, pdj.png, best_worst.png, time_to_accuracy.png, "
        "predictions.npz)")
    return results


def report_key(run_dir: Path, cascade: Cascade, data: str, images: PoseDataset) -> str:
    """A digest of everything a report is made from: the stage files it loaded, the images it scores (data, ids
    and labels: a corrected annotation must be scored again), the test-time settings, and the library's source code
    (a changed metric must not be served stale)."""
    digest = hashlib.sha256()
    for s in range(1, cascade.stages + 1):
        digest.update(hashlib.sha256(stage_path(run_dir, s).read_bytes()).digest())
    digest.update(json.dumps([data, images.name, images.ids, cascade.flip_test, cascade.bf16,
                              list(cascade.stage1_views), list(cascade.refine_views)]).encode())
    digest.update(np.ascontiguousarray(images.joints).tobytes() + np.ascontiguousarray(images.visible).tobytes())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def kept_report(out: Path, key: str) -> dict[str, Any] | None:
    """The report in ``out`` when every one of its files is there and it was made with ``key``, else None."""
    from .report import REPORT_FILES

    if not all((out / name).is_file() for name in REPORT_FILES):
        return None
    try:
        results = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return None
    return results if isinstance(results, dict) and results.get("meta", {}).get("key") == key else None


def predict_images(run_dir: Path | str, paths: Sequence[Path | str], out: Path | str | None = None,
                   box: np.ndarray | None = None, stages: int | None = None, compile: bool = False,
                   flip_test: bool | None = None, device: Device = None, framing: str = "auto",
                   views: tuple[float, float] | None = None, refine_views: tuple[float, float] | None = None) -> Path:
    """Predict every image, draw and export; returns the folder. ``paths`` may name files, folders and globs.

    The stage-1 box is ``box`` [cx, cy, w, h] when given (it must overlap every image), else found by ``framing``
    (``framing.find_people``: ``auto`` the person detector's box, or HOG's where it is not installed or finds nobody;
    ``whole`` the whole image as LSP's protocol has it).
    Coordinates are written as the your-own-images annotation format has them (pixel centres at integers,
    top-left pixel (0, 0), as image viewers and OpenCV report them), so a prediction can be corrected by hand and
    fed back as training data; so is each image's box and how it was found. ``compile``, ``flip_test``, ``views``,
    ``refine_views`` and ``device`` as in ``load_cascade``.

    Introduced in ``notebooks/07_your_own_image.ipynb``.
    """
    from .framing import find_people, given_boxes
    from .report import export_predictions

    read_run(Path(run_dir))  # a folder that is not a run is named as such, before anything is made in it
    images = ImageFiles.unlabelled(image_paths(list(paths)))
    images.decode_all()  # now, so a bad file is named before any work is done
    if box is not None:
        check_box_overlaps(box, images)
    out = writable_folder(out if out is not None else Path(run_dir) / "predict")
    cascade = load_cascade(run_dir, stages, compile, flip_test, device, views, refine_views)
    found = (given_boxes(np.tile(box, (len(images), 1))) if box is not None
             else find_people(cascade, images, run_profile(Path(run_dir)).box_margin, framing))
    poses = cascade.predict(images, found.boxes)  # (S, N, 14, 2) internal pixels
    floors = diam_floors(images, found.boxes)  # the boxes the last stage cropped
    records = []
    for n, path in enumerate(images.paths):
        boxes_n = cascade_boxes(poses[-2, n], cascade.sigma, float(floors[n])) if cascade.stages > 1 else None
        image = images.image(n)
        scale = 2 if max(image.shape[:2]) <= 600 else 1  # small images drawn larger; a phone photo as it is
        save_png(out / f"{images.ids[n]}_pose.png", draw_pose(image, poses[-1, n], scale=scale, boxes=boxes_n))
        file_units = to_file_units(poses[:, n], images.file_offset)
        records.append({"image": str(path), "joint_names": list(JOINT_NAMES),
                        "joints": file_units[-1].round(2).tolist(),
                        "stages": file_units.round(2).tolist(),
                        "box": box_corners(found.boxes[n]), "framing": found.methods[n]})
    convention = ("joints: pixel centres at integers, (0, 0) top-left; box: x0, y0, x1, y1 of the stage-1 box, "
                  "as --box takes it")
    write_text(out / "predictions.json", json.dumps({"convention": convention, "predictions": records}, indent=1))
    export_predictions(out / "predictions.npz", images.ids, poses, images.file_offset)
    return out


def check_box_overlaps(box: np.ndarray, images: ImageFiles) -> None:
    """Refuse a user box that misses an image entirely: stage 1 would see only padding and still draw a pose."""
    x0, y0, x1, y1 = geometry_corners(box)
    for n, path in enumerate(images.paths):
        h, w = images.image(n).shape[:2]
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            raise ConfigError(f"{path}: the box {x0:g},{y0:g},{x1:g},{y1:g} lies entirely outside this {w}x{h} "
                              "image; give corners inside it (x0,y0 top-left, x1,y1 bottom-right, in pixels)")


def box_corners(box: np.ndarray) -> list[float]:
    """[x0, y0, x1, y1] of a box as ``--box`` takes it: pixel edges, (0, 0) the image's top-left corner.

    Introduced in ``notebooks/07_your_own_image.ipynb``.
    """
    return geometry_corners(box).round(2).tolist()
