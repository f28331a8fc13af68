"""``deeppose-lab``: demo, train, evaluate, predict, download and profiles, over the library's functions.

Every command takes ``--profile`` (``smoke``, ``classroom``, ``paper``; default ``$DEEPPOSE_PROFILE`` or
``classroom``) and ``--set FIELD=VALUE`` to override single profile fields. Errors a user can fix (a bad
file, an unknown field, a locked run directory) print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import detector
from .errors import ConfigError, DeepPoseError
from .framing import FRAMINGS
from .pipeline import SPLITS
from .profiles import PROFILES, get_profile

# Errors the package raised on purpose (one line, exit 2); anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (DeepPoseError, FileNotFoundError)


# What an interrupted command leaves behind (every file is written atomically, so nothing is half-written).
INTERRUPTED = {
    "train": "finished epochs are checkpointed, run again to resume",
    "demo": "finished epochs are checkpointed, run again to resume",
    "evaluate": "the report was not finished (report.json is written last); run again to evaluate",
    "predict": "the predictions were not finished; run again to predict",
    "download": "no partial archive or folder is kept; run again to download",
}


def parse_sets(pairs: Sequence[str], option: str = "--set") -> dict[str, str]:
    """``FIELD=VALUE`` pairs (``option`` names where they came from in the error) as profile overrides."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{option} expects FIELD=VALUE, got {pair!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


def profile_from(args: argparse.Namespace):
    overrides = parse_sets(args.set or [])
    if getattr(args, "epochs", None) is not None:
        overrides["epochs"] = str(args.epochs)
    return get_profile(args.profile, **overrides)


def parse_box(text: str) -> np.ndarray:
    from .geometry import box_from_corners

    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"--box expects x0,y0,x1,y1 (four numbers), got {text!r}") from None
    if not all(np.isfinite([x0, y0, x1, y1])):
        raise ConfigError(f"--box {text!r}: every corner must be a finite number")
    if x1 <= x0 or y1 <= y0:
        raise ConfigError(f"--box {text!r}: x1 must exceed x0 and y1 must exceed y0")
    return box_from_corners(x0, y0, x1, y1)


def cmd_train(args: argparse.Namespace) -> None:
    from .distributed import is_main
    from .pipeline import train_run

    profile = profile_from(args)
    train_run(args.out, profile, args.data, args.stages, progress=not args.quiet)
    if is_main():
        print(f"trained {args.stages or profile.stages} stage(s) into {args.out}/; "
              f"evaluate with: deeppose-lab evaluate {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from .pipeline import evaluate_run
    from .report import markdown_table

    results = evaluate_run(args.run_dir, args.data, args.out, args.stages, compile=args.compile,
                           flip_test=False if args.no_flip else None, device=args.device, split=args.split,
                           **view_overrides(args))
    print(markdown_table(results, results.get("baseline")))


def cmd_demo(args: argparse.Namespace) -> None:
    """Train and evaluate the whole cascade on the default data (LSP when present, else synthetic)."""
    from .pipeline import evaluate_run, train_run
    from .report import markdown_table

    profile = profile_from(args)
    train_run(args.out, profile, args.data, progress=not args.quiet)
    results = evaluate_run(args.out, args.data)
    print(markdown_table(results, results.get("baseline")))
    print(f"\ndemo finished: checkpoints in {args.out}/, report in {args.out}/report/ "
          "(report.md, pdj.png, best_worst.png, predictions.npz)")


def cmd_predict(args: argparse.Namespace) -> None:
    from .pipeline import predict_images

    box = parse_box(args.box) if args.box else None
    written = predict_images(args.run_dir, args.images, args.out, box, args.stages, args.compile,
                             False if args.no_flip else None, device=args.device,
                             framing="whole" if args.whole_image else args.framing, **view_overrides(args))
    print(f"poses drawn and coordinates written to {written}/ (predictions.json, predictions.npz, *_pose.png)")


def download_detector(args: argparse.Namespace) -> None:
    """``download detector``: the person detector's model out of a mediapipe wheel (pip's, or ``--from`` one on
    disk), or ``--verify`` the one in place; the data-set options have no meaning here and are refused."""
    given = [flag for flag, value in (("--root", args.root), ("--sha256", args.sha256),
                                      ("--stall-timeout", args.stall_timeout), ("--deadline", args.deadline))
             if value is not None]
    sources = args.sources or []
    if given or len(sources) > 1 or any("://" in s for s in sources) or (args.verify and sources):
        raise ConfigError("download detector takes --from with one mediapipe wheel on disk, or --verify; the model "
                          f"goes to $DEEPPOSE_DETECTOR or data/detector/ and is checked by its own SHA-256 (got "
                          f"{' '.join(given + [f'--from {s}' for s in sources])})")
    if args.verify:
        print(detector_checked())
        return
    print(f"the person detector is ready in {detector.download_model(wheel=sources[0] if sources else None)}")


def detector_checked() -> str:
    """The installed detector's model checked against its SHA-256 (an error names it otherwise), as one line."""
    return f"{detector.verify_model()}: the person detector, SHA-256 as published"


def cmd_download(args: argparse.Namespace) -> None:
    """Install a data set (verified before it is renamed into place), or ``--verify`` folders already there."""
    from . import download
    from .datasets import data_root

    root = Path(args.root) if args.root else data_root()
    progress = not args.quiet
    if args.name == "detector":
        download_detector(args)
        return
    if args.verify:
        if args.sources or args.sha256:
            raise ConfigError("--verify checks folders already in place; --from, --mirror and --sha256 are for "
                              "downloads")
        checked = [download.verify_folder(args.name, root, progress)] if args.name else \
            download.verify_root(root, progress)
        for verified in checked:
            print(verified.describe())
        if not args.name and detector.model_path().is_file():
            print(detector_checked())
        return
    if not args.name:
        raise ConfigError("name the data set to download (lsp or lspet), or pass --verify to check folders in place")
    stall = download.STALL_TIMEOUT if args.stall_timeout is None else args.stall_timeout
    folder = download.download_dataset(args.name, root, mirrors=args.sources or None, sha256=args.sha256,
                                       timeout=stall, deadline=args.deadline, progress=progress)
    print(f"{args.name} is ready in {folder}")


def cmd_profiles(args: argparse.Namespace) -> None:
    names = [args.name] if args.name else sorted(PROFILES)
    for name in names:
        print(json.dumps(get_profile(name).to_dict(), indent=2) if args.name else name)


def add_profile_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default=None,
                   help="smoke, classroom, lesson or paper (default $DEEPPOSE_PROFILE or classroom)")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override one profile field (repeatable)")
    p.add_argument("--epochs", type=int, default=None, help="shortcut for --set epochs=N (stage 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


COMPILE_HELP = ("torch.compile the networks with their weights frozen in: 9-13 s of compiling first (needs a C "
                "compiler), then faster inference (bf16 on a Xeon with AMX: classroom 1.4x, paper 1.5x); worth it for "
                "the paper network's test set, not for one image nor the classroom's 1000 (docs/performance.md)")
NO_FLIP_HELP = ("no flip averaging at test time, as in the paper, whatever the run's profile says: half as many crops, "
                "so faster and a little less accurate (measured in docs/performance.md)")

ONE_BOX_HELP = ("every stage on its one test box, as in the paper, without the profile's jittered box views "
                "(view_scale, view_shift, refine_view_scale, refine_view_shift): up to 15 times fewer crops (same as "
                "--views 0,0 --refine-views 0,0)")
VIEWS_HELP = ("stage 1's test-time box views for this command, whatever the run's profile says: its box also scaled "
              "x(1 +- SCALE) and moved +- SHIFT of its side, the median pose of the views (classroom: 0.1,0.06, 15 "
              "boxes; measured in docs/accuracy.md)")
REFINE_VIEWS_HELP = ("the refiners' test-time box views for this command, whatever the run's profile says: each "
                     "joint's box also scaled x(1 +- SCALE) and moved +- SHIFT of its side, the joint moved to the "
                     "median of its views (measured in docs/accuracy.md)")


def parse_views(text: str) -> tuple[float, float]:
    try:
        scale, shift = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SCALE,SHIFT (two numbers), got {text!r}") from None
    if not (0.0 <= scale < 1.0 and 0.0 <= shift < 1.0):
        raise argparse.ArgumentTypeError(f"{text!r}: SCALE and SHIFT are fractions of the box, from 0 to below 1")
    return scale, shift


DEVICE_HELP = "where the networks run: cpu, cuda, cuda:1 (default: the GPU when there is one, as training uses)"


def add_view_options(p: argparse.ArgumentParser) -> None:
    """--views (stage 1's), --refine-views (the refiners') and --one-box (both (0, 0)); unset keeps the run's."""
    views = p.add_mutually_exclusive_group()
    views.add_argument("--views", type=parse_views, default=None, metavar="SCALE,SHIFT", help=VIEWS_HELP)
    views.add_argument("--one-box", action="store_true", help=ONE_BOX_HELP)
    p.add_argument("--refine-views", type=parse_views, default=None, metavar="SCALE,SHIFT", help=REFINE_VIEWS_HELP)
    p.set_defaults(view_parser=p)  # the (sub)command parser whose usage a conflict is reported with


def refuse_conflicting_views(args: argparse.Namespace) -> None:
    """--one-box beside --refine-views: a usage error (exit 2) of the command that has them, as argparse makes
    --one-box beside --views."""
    if getattr(args, "one_box", False) and getattr(args, "refine_views", None) is not None:
        args.view_parser.error("argument --refine-views: not allowed with argument --one-box (it already sets the "
                               "refiners' views to 0,0)")


def view_overrides(args: argparse.Namespace) -> dict[str, tuple[float, float] | None]:
    """``load_cascade``'s ``views`` and ``refine_views`` from the options ``add_view_options`` adds (checked by
    ``refuse_conflicting_views``)."""
    if args.one_box:
        return {"views": (0.0, 0.0), "refine_views": (0.0, 0.0)}
    return {"views": args.views, "refine_views": args.refine_views}


def parse_device(text: str) -> str:
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"not a device: {text!r} (try cpu or cuda)") from None
    if device.type not in ("cpu", "cuda") or (device.type == "cpu" and device.index not in (None, 0)):
        raise argparse.ArgumentTypeError(f"{text!r}: the networks run on cpu or cuda (cuda:N for GPU N)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: no CUDA GPU is available here; use cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text!r}: this machine has {torch.cuda.device_count()} GPU(s), numbered "
                                         "from 0")
    return str(device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deeppose-lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="train and evaluate the whole cascade on the default data")
    add_profile_args(p)
    p.add_argument("--data", default="auto", help="auto (LSP if present, else synthetic), synthetic, lsp, lspet, DIR")
    p.add_argument("--out", default="runs/demo")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train stage 1 and the refinement stages into a run directory")
    add_profile_args(p)
    p.add_argument("--data", default="auto", help="auto, synthetic, lsp, lspet or a folder of your own images")
    p.add_argument("--stages", type=int, default=None, help="number of stages (default: the profile's)")
    p.add_argument("--out", required=True, help="run directory (resumes if it holds an unfinished run)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="PCP/PDJ report of every stage on the test split")
    p.add_argument("run_dir")
    p.add_argument("--data", default=None, help="default: the data the run was trained on")
    p.add_argument("--split", choices=SPLITS, default="auto",
                   help="which images of --data to score: auto (the held-out test split of the data the run trained "
                        "on, every image of data it never saw), test, dev, train or all")
    p.add_argument("--out", default=None, help="report folder (default RUN_DIR/report)")
    p.add_argument("--stages", type=int, default=None)
    p.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    p.add_argument("--no-flip", action="store_true", help=NO_FLIP_HELP)
    add_view_options(p)
    p.add_argument("--device", type=parse_device, default=None, help=DEVICE_HELP)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="run the cascade on your images, draw the pose, write coordinates")
    p.add_argument("run_dir")
    p.add_argument("images", nargs="+", help="image files, folders of images, or globs such as 'photos/*.jpg'")
    p.add_argument("--box", default=None, metavar="X0,Y0,X1,Y1",
                   help="the person's box in pixels, the same for every image (default: found by --framing); "
                        "a corner left of or above the image is negative: write --box=-20,10,300,400")
    p.add_argument("--framing", choices=FRAMINGS, default="auto",
                   help="how the person is found when no --box is given: auto (the pretrained person detector "
                        "where `deeppose-lab download detector` installed it, else HOG's; the whole image re-framed "
                        "by the cascade where neither finds anybody), detector, hog, hog+reframe, reframe, whole")
    p.add_argument("--whole-image", action="store_true",
                   help="the whole image is the person's box, as in LSP's test protocol (same as --framing whole)")
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/predict)")
    p.add_argument("--stages", type=int, default=None)
    p.add_argument("--compile", action="store_true", help=COMPILE_HELP)
    p.add_argument("--no-flip", action="store_true", help=NO_FLIP_HELP)
    add_view_options(p)
    p.add_argument("--device", type=parse_device, default=None, help=DEVICE_HELP)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("download", help="fetch and verify LSP or LSP-extended (or the person detector), or --verify "
                                        "folders in place")
    p.add_argument("name", nargs="?", choices=["lsp", "lspet", "detector"],
                   help="the data set (with --verify: default every one present); detector: the pretrained person "
                        "detector for framing one's own photos, out of the mediapipe wheel pip downloads (or --from "
                        "a wheel), into data/detector/ or $DEEPPOSE_DETECTOR")
    p.add_argument("--root", default=None, help="data root (default $DEEPPOSE_DATA or data/)")
    p.add_argument("--from", dest="sources", action="append", metavar="FILE_OR_URL",
                   help="install from this archive (a local file, used in place, or an http(s) URL) instead of the "
                        "known mirrors (repeatable: tried in turn)")
    p.add_argument("--mirror", dest="sources", action="append", metavar="URL", help="the same as --from")
    p.add_argument("--sha256", default=None, help="expected SHA-256 of the archive (optional: the unpacked files "
                                                  "are always verified)")
    p.add_argument("--stall-timeout", type=float, default=None, metavar="SECONDS",
                   help="give up on a mirror after this long without a byte (default 30)")
    p.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                   help="give up on a mirror still downloading after this long (default 1800 for lsp, 7200 for lspet)")
    p.add_argument("--verify", action="store_true",
                   help="check folders already under --root against the published digests, changing nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("profiles", help="list the profiles, or show one")
    p.add_argument("name", nargs="?", choices=sorted(PROFILES))
    p.set_defaults(func=cmd_profiles)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .distributed import init_from_env, is_main, shutdown
    args = build_parser().parse_args(argv)
    refuse_conflicting_views(args)
    distributed = init_from_env()  # under torchrun: one process per GPU (or CPU shard), rank 0 writes
    if distributed and not is_main():
        args.quiet = True
    try:
        if getattr(args, "stages", None) is not None and args.stages < 1:
            raise ConfigError(f"--stages must be at least 1, got {args.stages}")
        args.func(args)
    except USER_ERRORS as exc:
        print(f"deeppose-lab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the machine's refusal (a full disk, a read-only folder): not a bug, so one line too
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"deeppose-lab {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deeppose-lab {args.command}: interrupted; {INTERRUPTED.get(args.command, 'nothing was changed')}",
              file=sys.stderr)
        return 130
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
