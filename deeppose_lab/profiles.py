"""One config object for every command and notebook, with three documented presets.

- ``smoke``: runs every code path in seconds (CI, ``pytest --nbval``); numbers mean nothing.
- ``classroom``: trains every stage on LSP on a 2-core CPU in minutes (narrow net, small input).
- ``paper``: the paper's recipe (220 px, full AlexNet with LRN, AdaGrad at 0.0005, σ = 2, 3 stages,
  40 boxes per joint); GPU days.

What ``classroom`` changes from the paper, and why (each choice measured on the dev split, LSP 801–1000:
``docs/accuracy.md`` has every trial):

- 112 px input and half the channels: a training step 13× cheaper than the paper's network.
- bf16 autocast for training and inference: on this CPU (which has bf16 matrix units) the step is 1.6× as
  fast (batch 64, ``make bench``), for the same accuracy (0.256 bf16 against 0.249 fp32 strict PCP, earlier).
- no LRN: PyTorch's LRN made the narrow network's CPU step about 3× slower (``model.ChannelLRN`` has since
  cut that cost; its accuracy in this profile has not been measured). BatchNorm after each convolution was
  tried and lost 0.07 strict PCP at 10 epochs.
- an L1 loss instead of the paper's squared L2 (+0.06 strict PCP at 10 epochs): the squared loss is paid
  mostly on the joints it cannot place yet, and draws wrists and elbows to their average position.
- training boxes framed as LSP's test images are (``train_box = "auto"``): LSP's own images whole, LSP-extended's
  (2.5× the person, off centre) by the person's box with a margin of 0.16 (1.32× the person, LSP's median);
  and LSP's 800 training images four times an epoch beside LSP-extended's 10 000 (+0.07 strict PCP): LSP's
  labels are cleaner and its poses are the test set's kind, LSP-extended's lean to parkour and gymnastics.
- AdamW (lr 1e-3, weight decay 0.05) with a one-epoch warm-up and a cosine decay: AdaGrad from scratch
  stayed at the mean pose for many epochs; lr 1e-3 beat 5e-4 by 0.015.
- dropout 0.2 rather than the paper's 0.6 and rotations of ±15° (+0.03): at 20 epochs the network underfits.
- flip averaging at test time (``flip_test``) for every stage.
- refinement stages see 112 px crops of the σ·diam box (a finer view than stage 1's whole image), start
  from the previous stage's weights (``refine_init``), and learn from 4 000 of the training images for two
  epochs (``refine_images``): every refiner crops 14 boxes an image, so on all 13 200 it would cost as much
  as 14 epochs of stage 1.

Speed options every profile shares: ``channels_last`` (weights and crops in NHWC order, oneDNN's fast layout;
with it and the fused optimiser the classroom bf16 step went from about 540 to about 1 000 images/s, batch
64), and ``bf16`` where the profile says so. ``make demo`` times the whole classroom cascade (the README has
the numbers).

Loss masking: ``mask_hidden`` drops hidden joints from the loss. LSP labels its occluded joints with
plausible positions, but LSP-extended's unannotated joints can lie anywhere, so every profile masks them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from .geometry import Augmentation


@dataclass(frozen=True)
class Profile:
    name: str = "classroom"
    # stage-1 network and crops
    input_size: int = 112
    width: float = 0.5
    dropout: float = 0.2
    lrn: bool = False
    batchnorm: bool = False  # BatchNorm after every convolution (not in the paper)
    # "image": the test-time box (whole image, squared); "person": joints' extremes widened by box_margin;
    # "auto": "image" for data framed like LSP's test images, "person" for LSP-extended (datasets.framing)
    train_box: str = "auto"
    box_margin: float = 0.16  # 1 + 2 × 0.16 = 1.32: LSP's median image side over the person's extent
    augment: Augmentation = field(default_factory=lambda: Augmentation(shift=0.08, scale=0.2, rotate=15.0,
                                                                        flip=True, colour=0.2))
    mask_hidden: bool = True
    flip_test: bool = True  # average every stage's output with that of its mirrored crop (not in the paper)
    # optimisation
    optimizer: str = "adam"  # "adagrad" (the paper's), "sgd" (momentum 0.9) or "adam" (AdamW)
    loss: str = "l1"  # "l2": the paper's squared error; "l1": absolute error
    lr: float = 1e-3
    weight_decay: float = 0.05
    schedule: str = "cosine"  # "cosine", "step" (×0.1 at 2/3) or "constant"
    batch_size: int = 64
    epochs: int = 20
    val_every: int = 4  # epochs between validation passes (0: never): the dev loss and the dev PCP curve
    val_images: int = 200
    seed: int = 0
    # cascade
    stages: int = 3
    sigma: float = 2.0
    boxes_per_joint: int = 1  # simulated boxes per joint per image per epoch (paper: 40 in all)
    refine_input_size: int = 112
    refine_width: float = 0.5
    refine_epochs: int = 2
    refine_images: int = 4000  # training images the refiners learn from (0: all; else a fixed random subset)
    refine_lr: float = 3e-4
    refine_init: str = "previous"  # "previous": stage s starts from stage s−1's weights; "scratch": random
    # data
    lsp_repeats: int = 4  # with --data lsp: LSP's training images appear this many times an epoch beside LSP-extended
    synthetic_train: int = 2000
    synthetic_test: int = 500
    # speed options (measured in `make bench`)
    bf16: bool = True
    channels_last: bool = True  # weights and crops in NHWC order: oneDNN's faster layout, most of all in bf16
    threads: int = 0  # 0: leave torch's default

    def replace(self, **changes: object) -> Profile:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> Profile:
        """A profile from ``to_dict`` / JSON (a run's run.json), checked like a command-line override."""
        if not isinstance(d, dict):
            raise ValueError(f"a profile must be a mapping of fields, got {type(d).__name__}")
        d = dict(d)
        # Only a dict (from to_dict / JSON) is converted: a missing key keeps the profile's default augmentation
        # and an Augmentation instance is kept as it is; None means no augmentation.
        if isinstance(d.get("augment"), dict):
            try:
                d["augment"] = Augmentation(**d["augment"])
            except TypeError as exc:
                raise ValueError(f"profile field augment: {exc}") from None
        elif "augment" in d and d["augment"] is None:
            d["augment"] = Augmentation.none()
        known = {f.name for f in dataclasses.fields(Profile)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown profile fields {unknown}")
        defaults = Profile()
        for key, value in d.items():  # a hand-edited or foreign run.json: wrong types fail here, not mid-run
            expected = type(getattr(defaults, key))
            if not has_type(value, expected):
                raise ValueError(f"profile field {key} must be a {expected.__name__}, got {value!r}")
        profile = Profile(**d)
        validate(profile)
        return profile


def has_type(value: object, expected: type) -> bool:
    """JSON-level type check: bools are not numbers here, and an int is fine where a float is expected."""
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", input_size=64, width=0.125, dropout=0.0, flip_test=False, batch_size=16, epochs=2, val_every=1,
        val_images=16,
        stages=2, boxes_per_joint=1, refine_input_size=64, refine_width=0.125, refine_epochs=1, bf16=False,
        synthetic_train=64, synthetic_test=16,
    ),
    "classroom": Profile(),
    "paper": Profile(
        name="paper", input_size=220, width=1.0, dropout=0.6, lrn=True, train_box="auto", box_margin=0.16,
        flip_test=False,
        augment=Augmentation(shift=0.05, scale=0.1, rotate=0.0, flip=True, colour=0.1), optimizer="adagrad", lr=5e-4,
        weight_decay=0.0, schedule="constant", batch_size=128, epochs=100, stages=3, sigma=2.0,
        boxes_per_joint=40, refine_input_size=220, refine_width=1.0, refine_epochs=20, refine_lr=5e-4,
        refine_init="scratch", bf16=False, loss="l2", lsp_repeats=1, refine_images=0,
        synthetic_train=10000, synthetic_test=1000,
    ),
}


def get_profile(name: str | None = None, **overrides: object) -> Profile:
    """The named preset (default: ``$DEEPPOSE_PROFILE``, else ``classroom``) with single fields overridden."""
    name = name or os.environ.get("DEEPPOSE_PROFILE", "classroom")
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return apply_overrides(PROFILES[name], overrides)


def apply_overrides(profile: Profile, overrides: dict[str, object]) -> Profile:
    """Replace fields by name, converting strings from the command line to the field's type."""
    fields = {f.name: f for f in dataclasses.fields(Profile)}
    changes: dict[str, object] = {}
    for key, value in overrides.items():
        if key.startswith("augment."):  # one augmentation range, e.g. --set augment.rotate=10
            aug = changes.get("augment", profile.augment)
            name = key.split(".", 1)[1]
            if name not in {f.name for f in dataclasses.fields(Augmentation)}:
                raise ValueError(f"unknown augmentation field {name!r}; fields are "
                                 f"{sorted(f.name for f in dataclasses.fields(Augmentation))}")
            current = getattr(aug, name)
            new = convert(key, value, current) if isinstance(value, str) else value
            changes["augment"] = dataclasses.replace(aug, **{name: new})
            continue
        if key not in fields:
            raise ValueError(f"unknown profile field {key!r}; fields are {sorted(fields)}")
        current = getattr(profile, key)
        changes[key] = convert(key, value, current) if isinstance(value, str) else value
    out = profile.replace(**changes)
    validate(out)
    return out


def convert(key: str, text: str, current: object) -> object:
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{key} must be true or false, got {text!r}")
    if isinstance(current, Augmentation):
        raise ValueError(f"{key} cannot be set from the command line")
    try:
        return type(current)(text)
    except ValueError:
        raise ValueError(f"{key} must be a {type(current).__name__}, got {text!r}") from None


def validate(p: Profile) -> None:
    """Refuse sizes and rates that would only fail later, deep inside a training run."""
    for f in dataclasses.fields(p):  # inf and NaN pass a "> 0" test, then overflow or poison the weights
        value = getattr(p, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"profile field {f.name} must be a finite number, got {value!r}")
    positive = ["lsp_repeats", "input_size", "batch_size", "refine_input_size", "stages", "boxes_per_joint",
                "synthetic_train", "synthetic_test", "lr", "refine_lr", "width", "refine_width", "sigma"]
    for key in positive:
        if not getattr(p, key) > 0:
            raise ValueError(f"profile field {key} must be positive, got {getattr(p, key)!r}")
    for key in ["epochs", "refine_epochs", "refine_images", "val_every", "val_images", "threads", "weight_decay",
                "seed", "box_margin"]:
        if getattr(p, key) < 0:
            raise ValueError(f"profile field {key} must not be negative, got {getattr(p, key)!r}")
    if p.input_size < 48 or p.refine_input_size < 48:
        raise ValueError("input sizes below 48 px leave no feature map for the AlexNet structure")
    if not 0 <= p.dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {p.dropout}")
    if p.optimizer not in ("adagrad", "sgd", "adam"):
        raise ValueError(f"optimizer must be adagrad, sgd or adam, got {p.optimizer!r}")
    if p.schedule not in ("cosine", "step", "constant"):
        raise ValueError(f"schedule must be cosine, step or constant, got {p.schedule!r}")
    if p.refine_init not in ("previous", "scratch"):
        raise ValueError(f"refine_init must be previous or scratch, got {p.refine_init!r}")
    if p.refine_init == "previous" and (p.refine_input_size, p.refine_width) != (p.input_size, p.width):
        raise ValueError(f"refine_init=previous copies stage 1's weights, so refine_input_size and refine_width must "
                         f"equal input_size and width ({p.input_size}, {p.width}), got "
                         f"({p.refine_input_size}, {p.refine_width}); or set refine_init=scratch")
    if p.train_box not in ("image", "person", "auto"):
        raise ValueError(f"train_box must be image, person or auto, got {p.train_box!r}")
    if p.loss not in ("l2", "l1"):
        raise ValueError(f"loss must be l2 or l1, got {p.loss!r}")
