"""Which data a run trains, validates and is tested on: the ``--data`` names and the train / dev / test splits.

``lsp`` is the paper's protocol: LSP 1-1000 and (when present) all of LSP-extended train, LSP 1001-2000 test;
LSP 801-1000 are held out of training as the dev split that every recipe choice is made on. Data sets without a
standard split (synthetic people, LSP-extended alone, your own folder) hold out fixed fractions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .datasets import Concat, PoseDataset, data_root, load_folder, load_lsp, load_lspet, lsp_available, lspet_folder
from .errors import RunError
from .profiles import Profile

Log = Callable[[str], None]


@dataclass
class Splits:
    """Training images, a dev split of TRAINING images (validation loss, recipe choices) and the test set."""

    name: str
    train: PoseDataset
    test: PoseDataset
    dev: PoseDataset


NAMED_DATA = ("synthetic", "lsp", "lspet", "auto")
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
    """The ``--data`` a run records: ``auto`` pinned to what it means now (a run never changes data when LSP appears
    later), a folder as its absolute path (evaluating from another directory still finds it, and never a
    different folder that happens to have the same relative name)."""
    if spec == "auto":
        return "lsp" if lsp_available() else "synthetic"
    if spec and spec not in NAMED_DATA and Path(spec).is_dir():
        return str(Path(spec).resolve())
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
    if spec and folder.is_dir():
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
