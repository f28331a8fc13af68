"""One recipe trial on the dev split: ``python -m deeppose_lab.study NAME STAGES field=value ...``
(``python -m deeppose_lab.study --table`` prints every trial so far as the table in ``docs/accuracy.md``;
``--score RUN NAME`` adds a finished run, e.g. ``make demo``'s; ``--paper-check`` asks whether the paper's recipe
learns at all in a few CPU minutes).

Trains the classroom profile with the given fields changed on ``--data lsp`` (LSP 1-800 and LSP-extended),
scores every stage on the dev split (LSP 801-1000, framed and scored like LSP test) and appends one JSON line
to ``docs/trials.jsonl``: the numbers behind the table in ``docs/accuracy.md``. LSP test is never touched.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import pipeline, rundir
from .cascade import Cascade
from .cli import parse_sets
from .crops import CropSource
from .errors import ConfigError
from .profiles import VIEW_FIELDS, Profile, get_profile
from .report import evaluate_predictions
from .skeleton import joint_index
from .splits import load_data

TRIALS = Path(__file__).resolve().parents[1] / "docs" / "trials.jsonl"
WRISTS = joint_index("r_wrist", "l_wrist")


def dev_row(stage: dict) -> dict[str, float]:
    """The dev-split numbers a trial row keeps for one stage."""
    strict = stage["pcp"]["strict"]
    return {"strict": strict["mean"], "loose": stage["pcp"]["loose"]["mean"],
            "upper_arm": strict["groups"]["upper_arm"], "lower_arm": strict["groups"]["lower_arm"],
            "pdj01": stage["pdj_mean_at_0.1"], "pdj02": stage["pdj_mean_at_0.2"],
            "wrist_pdj02": float(np.mean([stage["pdj_at_0.2"][j] for j in WRISTS]))}


def trial(name: str, stages: int, overrides: dict[str, str], runs_root: Path = Path("runs/study"),
          profile_name: str = "classroom", data: str = "lsp") -> dict:
    """Train one recipe in ``runs_root/name`` (resuming what is there) and score each stage on the dev split."""
    profile = get_profile(profile_name, **overrides)
    tic = time.perf_counter()
    cascade = pipeline.train_run(runs_root / name, profile, data, stages=stages, progress=False)
    seconds = time.perf_counter() - tic
    return {"name": name, "stages": stages, "overrides": overrides, "wall_seconds": round(seconds),
            "stage_seconds": rundir.read_run(runs_root / name)["stages"],
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
            "dev": dev_rows(cascade, profile, data)}


def dev_rows(cascade: Cascade, profile: Profile, data: str) -> list[dict[str, float]]:
    """Every stage of ``cascade`` scored on the dev split of ``data``."""
    dev = load_data(data, profile, log=lambda m: None).dev
    return [dev_row(st) for st in evaluate_predictions(cascade.predict(dev), dev.joints)["stages"]]


def score_run(run_dir: Path, name: str, views: dict[str, str] | None = None) -> dict:
    """A trial row for a run trained elsewhere (``make demo``): every stage scored on the dev split.

    ``views`` (``view_scale``, ``view_shift``, ``refine_view_scale``, ``refine_view_shift``) sets the test-time box
    views of stage 1 and of the refiners: a trial of how the same networks are run, with nothing trained again."""
    meta = rundir.read_run(run_dir)
    profile = Profile.from_dict(meta["profile"])
    if views:
        unknown = set(views) - set(VIEW_FIELDS)
        if unknown:
            raise ValueError(f"--score takes only {'=, '.join(VIEW_FIELDS)}=, got {sorted(unknown)}")
        profile = profile.replace(**{k: float(v) for k, v in views.items()})  # load_cascade checks them
    default = rundir.flat_fields(get_profile(profile.name).to_dict())
    changed = {k: str(v) for k, v in rundir.flat_fields(profile.to_dict()).items() if v != default[k]}
    cascade = pipeline.load_cascade(run_dir, views=profile.stage1_views, refine_views=profile.refine_views)
    rows = dev_rows(cascade, profile, meta["data"])
    return {"name": name, "stages": len(rows), "overrides": changed or {"(the profile)": profile.name},
            "stage_seconds": meta["stages"], "dev": rows}


def table(path: Path = TRIALS) -> str:
    """The trials as a markdown table, one row per stage of each trial, in the order they were run."""
    lines = ["| trial | changed from classroom | stage | train min | strict | loose | upper arm | lower arm | PDJ@0.1 "
             "| PDJ@0.2 | wrists PDJ@0.2 |", "|" + "---|" * 11]
    for line in path.read_text().splitlines():
        row = json.loads(line)
        changed = " ".join(f"{k}={v}" for k, v in row["overrides"].items())
        minutes = 0.0
        for stage, d in enumerate(row["dev"], start=1):
            minutes += row["stage_seconds"].get(str(stage), {}).get("seconds", 0.0) / 60
            lines.append(f"| {row['name']} | {changed} | {stage} | {minutes:.1f} | {d['strict']:.3f} "
                         f"| {d['loose']:.3f} | {d['upper_arm']:.3f} | {d['lower_arm']:.3f} | {d['pdj01']:.3f} "
                         f"| {d['pdj02']:.3f} | {d['wrist_pdj02']:.3f} |")
    return "\n".join(lines)


def paper_check(images: int = 1600, epochs: int = 3, batch_size: int = 32, overrides: dict | None = None,
                out: Path = Path("runs/study/paper_check"), data: str = "lsp") -> dict:
    """Does the ``paper`` recipe learn? Stage 1 on ``images`` training images (a seeded draw) for ``epochs``,
    its training loss per epoch beside the mean-pose loss on the same un-augmented crops: a network that only
    learned the mean pose sits at that line (the loss counts the paper's way, squared L2). ``final_loss`` is the
    trained network's loss on those crops too, without dropout: the figure to set against that line, since the
    training loss is paid on augmented crops with dropout and sits above it even for a network that learned.
    ``dev_loss`` and ``dev_mean_pose_loss`` are the same two on the dev split (held out, LSP's whole-image box):
    below that line it may only have learned how dev is framed. ``dev_best_constant_loss`` is dev's own mean
    pose on dev, the least any constant pose can score there (for L2): below it, the network learned poses."""
    import shutil

    from .geometry import Augmentation
    from .train import mean_loss

    profile = get_profile("paper", batch_size=batch_size, epochs=epochs, val_every=0, **(overrides or {}))
    splits = load_data(data, profile, log=lambda m: None)
    chosen = np.sort(np.random.default_rng(0).choice(len(splits.train), images, replace=False))
    train = splits.train.subset(chosen, "paper-check")
    shutil.rmtree(out, ignore_errors=True)
    tic = time.perf_counter()
    model, history = pipeline.train_stage1(out, profile, train, splits.dev.subset(range(0)), progress=False)
    settings = pipeline.fit_settings(profile, 1)
    crops = pipeline.stage1_crops(profile, train, Augmentation.none())
    dev = pipeline.stage1_dev_crops(profile, splits.dev)
    mean = mean_target(crops)
    row = {"images": images, "epochs": epochs, "steps": epochs * -(-images // batch_size), "overrides": overrides,
           "optimizer": profile.stage1.optimizer, "lr": profile.stage1.lr, "loss": profile.stage1.loss,
           "train_loss": [round(h["train_loss"], 4) for h in history],
           "mean_pose_loss": round(constant_loss(mean, crops, profile.stage1.loss), 4),
           "final_loss": round(mean_loss(model, crops, settings), 4)}
    if len(dev):
        row["dev_mean_pose_loss"] = round(constant_loss(mean, dev, profile.stage1.loss), 4)
        row["dev_loss"] = round(mean_loss(model, dev, settings), 4)
        row["dev_best_constant_loss"] = round(constant_loss(mean_target(dev), dev, profile.stage1.loss), 4)
    return {**row, "minutes": round((time.perf_counter() - tic) / 60, 1)}


def targets_of(crops: CropSource) -> tuple[torch.Tensor, torch.Tensor]:
    """Every item's normalised target (N, 14, 2) and loss weight (N, 14), without decoding more than needed."""
    from .crops import batches

    targets, weights = zip(*[(b.target, b.weight) for b in batches(crops, np.arange(len(crops)), 256)],
                            strict=True)
    return torch.cat(targets), torch.cat(weights)


def mean_target(crops: CropSource) -> torch.Tensor:
    """The mean pose (14, 2) of ``crops``' targets, each joint over the items that count it."""
    target, weight = targets_of(crops)
    return (target * weight[..., None]).sum(0) / weight.sum(0)[:, None]


def constant_loss(pose: torch.Tensor, crops: CropSource, loss: str) -> float:
    """The loss of predicting ``pose`` for every item of ``crops``: the mean-pose line."""
    from .train import pose_loss

    target, weight = targets_of(crops)
    return float(pose_loss(pose.expand_as(target).reshape(len(target), -1), target, weight, loss))


def print_and_keep(row: dict, path: Path = TRIALS) -> None:
    """Print a row and append it to ``path`` (one JSON object a line)."""
    print(json.dumps(row))
    with path.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


USAGE = ("usage: python -m deeppose_lab.study NAME STAGES [field=value ...] | --table | --score RUN NAME "
         "[view_scale=X view_shift=X refine_view_scale=X refine_view_shift=X] "
         "| --paper-check [images=N epochs=N batch_size=N field=value ...]")


def fields_of(args: list[str]) -> dict[str, str]:
    """``field=value`` arguments read as the command line's ``--set`` reads them; one without ``=`` is refused by
    name with the usage rather than by a traceback."""
    try:
        return parse_sets(args, option="study")
    except ConfigError as err:
        raise SystemExit(f"{err}\n{USAGE}") from None


def whole_number(field: str, value: str) -> int:
    """``value`` as an int, or a usage message that names ``field``."""
    if not value.isdecimal():
        raise SystemExit(f"study: {field} must be a whole number, got {value!r}\n{USAGE}")
    return int(value)


def main(argv: list[str]) -> None:
    if argv[:1] in (["-h"], ["--help"]):
        print((__doc__ or "") + "\n" + USAGE)
    elif argv == ["--table"]:
        print(table())
    elif argv[:1] == ["--score"]:
        if len(argv) < 3:
            raise SystemExit(f"study: --score RUN NAME needs a run directory and a trial name\n{USAGE}")
        print_and_keep(score_run(Path(argv[1]), argv[2], fields_of(argv[3:])))
    elif argv[:1] == ["--paper-check"]:
        fields = fields_of(argv[1:])
        sizes = {k: whole_number(k, fields.pop(k)) for k in ("images", "epochs", "batch_size") if k in fields}
        print_and_keep(paper_check(**sizes, overrides=fields), TRIALS.with_name("paper_check.jsonl"))
    elif len(argv) < 2:
        raise SystemExit(f"study: a trial needs NAME STAGES\n{USAGE}")
    elif argv[0].startswith("-"):
        raise SystemExit(f"study: unknown option {argv[0]!r} (a trial's NAME may not start with -)\n{USAGE}")
    else:
        print_and_keep(trial(argv[0], whole_number("STAGES", argv[1]), fields_of(argv[2:])))


if __name__ == "__main__":
    main(sys.argv[1:])
