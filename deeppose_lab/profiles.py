"""One config object for every command and notebook, with four documented presets.

- ``smoke``: runs every code path in seconds (CI, ``pytest --nbval``); numbers mean nothing.
- ``classroom``: trains every stage on LSP on a 2-core CPU in minutes (narrow net, small input).
- ``lesson``: the classroom recipe cut to fit a lesson where the CPU has no fast bf16 (fewer epochs).
- ``paper``: the paper's recipe (220 px, full AlexNet with LRN, AdaGrad at 0.0005, σ = 2, 3 stages,
  40 boxes per joint); GPU days.

A profile holds two ``StageRecipe``s, a network and its optimisation each: ``stage1`` and ``refiner`` (every
stage s ≥ 2), beside what the whole run shares (data, augmentation, σ, seed, number formats). On the command
line ``--set stage1.lr=…`` / ``--set refiner.epochs=…`` set one recipe field; the flat names of earlier
versions (``lr``, ``refine_lr``, ``dropout``) keep their old meaning (``apply_overrides``).

What ``classroom`` changes from the paper, and why. Each choice was made on the dev split (LSP 801–1000), and
its numbers are in ``docs/accuracy.md`` (accuracy) and ``docs/performance.md`` (speed):

- a 112 px input and half the channels: a far cheaper training step.
- ``number_format = "auto"``: bf16 autocast for training and inference where a few timed steps show it faster on
  this machine, else fp32 (``number_format.py``): the classroom step ran 2.2–3.1× faster in bf16 on an Intel Xeon with
  AMX, 1.5× on an AMD Zen 4, but 1.66× slower on an Intel Xeon with AVX-512 BF16 and no AMX.
- no LRN: PyTorch's LRN made the narrow network's CPU step several times slower (``model.ChannelLRN`` has
  since cut that cost; its accuracy in this profile has not been measured). BatchNorm was tried and lost PCP.
- an L1 loss instead of the paper's squared L2: the squared loss is paid mostly on the joints it cannot place
  yet, and draws wrists and elbows to their average position.
- training boxes framed as LSP's test images are (``train_box = "auto"``): LSP's own images whole, LSP-extended's
  (2.5× the person, off centre) by the person's box with a margin of 0.16 (1.32× the person, LSP's median);
  and LSP's 800 training images sixteen times an epoch beside LSP-extended's 10 000: LSP's labels are cleaner and
  its poses are the test set's kind, LSP-extended's lean to parkour and gymnastics (dev split: four times gained
  +0.07 strict over once on stage 1, trial E; eight +0.025 over four at stage 2, trial T; sixteen for 14 epochs,
  the same crops as eight for 20, +0.028 and +0.013 strict at stage 3 on two seeds, trial AJ).
- AdamW with a one-epoch warm-up and a cosine decay: AdaGrad from scratch was seen at the mean pose for many
  epochs in an early run on LSP alone. (The paper network with AdaGrad leaves it in its eighth epoch, steps 351–400,
  and ends 600 steps where AdamW ends: ``study --paper-check``; not compared on the classroom network.)
- no dropout (the paper has 0.6) and rotations of ±15°: at 14–20 epochs the network underfits. Dev split: 0.2
  rather than 0.5 gained +0.03 strict (trial F); the refiner without it, stage 2 0.369 against 0.363 (trial Q);
  stage 1 without it, stage 2 level on strict (0.398 against 0.399) with loose 0.511 against 0.500, ``PDJ@0.1``
  0.219 against 0.206, wrists 0.237 against 0.228, upper arms 0.328 against 0.355 (trial U).
- flip averaging at test time (``flip_test``) for every stage.
- stage 1 at test time through 15 views of its box (``view_scale`` 0.1, ``view_shift`` 0.06: sides ×0.9, 1, 1.1,
  each centred on the box and moved 6 % of its side left, right, up and down), the median pose of the views, then
  the refiners as usual. On the dev split, paired on the same networks (two cascades, a ``make demo``'s and trial
  AH's), stage 3 gained +0.009 / +0.013 strict, +0.015 / +0.008 wrists' ``PDJ@0.2``; on LSP test (the demo's)
  +0.008 strict, +0.002 wrists. It costs 28 more stage-1 crops an image (30 instead of 2 with flip averaging).
- each refiner through one box per joint at test time (``refine_view_scale`` / ``refine_view_shift`` 0). Views of
  the refiners' boxes as stage 1 has them (three sizes ×0.9, 1, 1.1, the median of where they put the joint) gained
  +0.007 strict and +0.010 wrists' ``PDJ@0.2`` on the dev split of one cascade (less than two seeds differ), were
  level on LSP test (0.396 against 0.395, wrists 0.282 against 0.283) and cost 2.3× the inference time: not kept.
- three stages, as the paper has, each refiner trained for 4 epochs. With the refiners of 2026-12-01 a third
  stage lost strict PCP; with σ = 1, eight LSP repeats and no dropout it gains on every measure (dev split, trial
  V: stage 3 0.404 strict against 0.398, lower arms 0.158 against 0.130, ``PDJ@0.1`` 0.255 against 0.219, wrists
  0.277 against 0.237). A fourth stage moved the wrists further (0.297) but lost strict PCP (0.396) and would pass
  the classroom's 25 minutes; refiners of 5 epochs were level (trial W).
- σ = 1 rather than the paper's 2: the refiner's box is half the side, so its 112 px crop sees the joint at
  twice the detail; on the dev split stage 2 gained 0.364 strict against 0.343 (σ = 1.5: 0.361, 0.75: 0.358),
  lower arms 0.112 against 0.073, wrists' ``PDJ@0.2`` 0.195 against 0.135.
- the refiner sees 112 px crops of the σ·diam box (a finer view than stage 1's whole image), starts from
  stage 1's weights (``refine_init``), and learns from 2 000 of the training images (``refine_images``), two
  simulated boxes per joint each (``boxes_per_joint``): every refiner crops 14 boxes an image, so one box per
  joint on every image of stage 1's epoch would make a refiner's epoch cost 14 of stage 1's. Against 4 000 images
  with one box each (the same crops), on the dev split (trial R): stage 2 0.374 strict against 0.369, loose 0.479
  against 0.473, wrists' ``PDJ@0.2`` 0.203 against 0.185, ``PDJ@0.1`` 0.178 against 0.186.
- the refiner's loss counts, beside the joint its box was drawn for, every other visible joint the crop shows at
  weight 0.3 (``refine_others``; the paper: that joint alone). The same crops, more of their labels: on the dev
  split (trial AB) stage 3 lifted wrists' ``PDJ@0.2`` to 0.312 against 0.277 and lower arms to 0.175 against 0.158,
  strict level (0.403 against 0.404); weight 1 (trial AA) gained the arms too but lost 0.013 strict.
- stage 1's loss weighs every joint alike (``arm_weight`` 1). Elbows and wrists at 2 (trial AF) gave a stage 1
  better at the arms (dev wrists' ``PDJ@0.2`` 0.152 against 0.117) but a third stage no better (0.310, strict −0.012).

Speed options every profile shares: ``channels_last`` (weights and crops in NHWC order, oneDNN's fast layout)
and ``number_format`` (``auto``, ``bf16`` or ``fp32``). ``make demo`` times the whole classroom cascade (the README
has the numbers).

Loss masking: ``mask_hidden`` drops hidden joints from the loss. LSP labels its occluded joints with
plausible positions, but LSP-extended's unannotated joints can lie anywhere, so every profile masks them.

ImageNet start: every preset starts from random weights; ``--profile paper --set stage1.init=imagenet --set
stage1.lrn=false`` starts stage 1 from torchvision's ImageNet AlexNet instead (``StageRecipe`` says what it
changes and what it should buy).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .geometry import Augmentation
from .model import TORCHVISION_LAYOUT, TORCHVISION_MIN_INPUT, DeepPoseNet, pretrained_alexnet, weights_file
from .number_format import FORMATS


@dataclass(frozen=True)
class StageRecipe:
    """What one stage trains: its network and its optimisation. A profile holds two, ``stage1`` and ``refiner``
    (every stage s ≥ 2 uses the same recipe, with its own weights).

    ``init`` is where the weights start. ``"random"`` (every preset): ``model.init_weights``. ``"imagenet"``:
    torchvision's ImageNet AlexNet, read from torch hub's cache (``$TORCH_HOME/hub/checkpoints/``, by default
    ``~/.cache/torch/hub/checkpoints/alexnet-owt-7be5be79.pth``) and downloaded there, hash-checked, when absent
    (``model.imagenet_weights_file``); or the path of that file. Its conv and hidden F weights load by name, the
    output layer starts fresh. Those weights have torchvision's layout (64-192-384-256-256 channels, floor pooling,
    a 6×6 average pool, no LRN: ``model.torchvision_layout``), not the paper's 96-256-384-384-256 with LRN, so
    ``network()`` describes that layout and the recipe must be full width (1.0) without LRN or BatchNorm. So it fits
    the ``paper`` profile's stage 1 (``--profile paper --set stage1.init=imagenet --set stage1.lrn=false``), not
    the classroom's half-width CPU network. What it should buy: asanakoy/deeppose_tf reports stage-1 strict PCP on
    LSP (person crops) of 0.30 from random weights and 0.45 from ImageNet's; this package has not measured it.
    """

    # network
    input_size: int = 112
    width: float = 0.5
    dropout: float = 0.0  # the classroom's, stage 1 and the refiners: it underfits at 14-20 epochs (trials F, Q, U)
    lrn: bool = False
    batchnorm: bool = False  # BatchNorm after every convolution (not in the paper)
    init: str = "random"  # "random", "imagenet" or a torchvision AlexNet .pth file: torchvision's layout (see above)
    # optimisation
    optimizer: str = "adam"  # "adagrad" (the paper's), "sgd" (momentum 0.9) or "adam" (AdamW)
    loss: str = "l1"  # "l2": the paper's squared error; "l1": absolute error
    lr: float = 1e-3
    weight_decay: float = 0.05
    schedule: str = "cosine"  # "cosine", "step" (×0.1 at 2/3) or "constant"
    batch_size: int = 64
    epochs: int = 14  # the classroom's stage 1 (LSP sixteen times an epoch, trial AJ); the refiners set theirs

    @property
    def layout(self) -> str:
        """"torchvision" when the weights start from torchvision's AlexNet (``init``), else "paper"."""
        return "paper" if self.init == "random" else "torchvision"

    def network(self) -> dict[str, Any]:
        """The ``DeepPoseNet`` arguments of this recipe: with a pretrained ``init``, torchvision's layout."""
        args = {name: getattr(self, name) for name in NETWORK_FIELDS}
        if self.layout == "paper":
            return args
        check_init_network("", self)  # never a network other than the recipe says
        return {**args, **TORCHVISION_LAYOUT}

    def model_config(self) -> dict[str, Any]:
        """The ``DeepPoseNet.config`` a network built from this recipe has (what its checkpoint records)."""
        defaults = {name: p.default for name, p in inspect.signature(DeepPoseNet).parameters.items()}
        return {**defaults, "channels": tuple(defaults["channels"]), **self.network()}

    def build_model(self, pretrained: bool = True) -> DeepPoseNet:
        """The network this stage trains, initialised as ``init`` says (the ONE place a profile becomes a network).

        ``pretrained=False``: the same network with random weights, for a stage whose weights are replaced anyway
        (a refiner with ``refine_init=previous``): no file to read or download."""
        if self.init == "random" or not pretrained:
            return DeepPoseNet(**self.network())
        return pretrained_alexnet(weights_file(self.init), self.model_config())


NETWORK_FIELDS = ("input_size", "width", "dropout", "lrn", "batchnorm")
RECIPES = ("stage1", "refiner")
# Run files written before per-stage recipes had one flat profile: these fields belonged to stage 1 alone, these
# to the refiner (renamed), and the rest of a recipe's fields were shared by every stage. Loading and ``--set``
# still accept them with that meaning.
STAGE1_ONLY = ("input_size", "width", "lr", "epochs")
REFINER_ONLY = {"refine_input_size": "input_size", "refine_width": "width", "refine_lr": "lr",
                "refine_epochs": "epochs"}


def legacy_targets(key: str) -> list[str] | None:
    """The recipe fields a flat (old) profile field sets, e.g. ``refine_lr`` → ``["refiner.lr"]``; None if not one."""
    if key in REFINER_ONLY:
        return [f"refiner.{REFINER_ONLY[key]}"]
    if key in STAGE1_ONLY:
        return [f"stage1.{key}"]
    if key in {f.name for f in dataclasses.fields(StageRecipe)}:
        return [f"{r}.{key}" for r in RECIPES]
    return None


@dataclass(frozen=True)
class Profile:
    name: str = "classroom"
    stage1: StageRecipe = field(default_factory=StageRecipe)
    refiner: StageRecipe = field(default_factory=lambda: StageRecipe(epochs=4, lr=3e-4))
    # "image": the test-time box (whole image, squared); "person": joints' extremes widened by box_margin;
    # "auto": "image" for data framed like LSP's test images, "person" for LSP-extended (datasets.framing)
    train_box: str = "auto"
    box_margin: float = 0.16  # 1 + 2 × 0.16 = 1.32: LSP's median image side over the person's extent
    augment: Augmentation = field(default_factory=lambda: Augmentation(shift=0.08, scale=0.2, rotate=15.0,
                                                                        flip=True, colour=0.2))
    mask_hidden: bool = True
    arm_weight: float = 1.0  # stage 1's loss weight of the elbows and wrists (the other joints 1; the paper: 1);
    # not renormalised, so above 1 it also raises the total loss and with it the step those joints get
    flip_test: bool = True  # average every stage's output with that of its mirrored crop (not in the paper)
    # stage 1 at test time also through its box scaled ×(1 ± view_scale) and moved ± view_shift of its side, the
    # per-coordinate median of the 15 views (crops.box_views; not in the paper): 0 and 0 look through the one box
    view_scale: float = 0.1
    view_shift: float = 0.06
    # the same for every refiner's σ·diam box at test time, each joint moved to the median of its views (measured,
    # not kept: see above)
    refine_view_scale: float = 0.0
    refine_view_shift: float = 0.0
    val_every: int = 4  # epochs between validation passes (0: never): the dev loss and the dev PCP curve
    val_images: int = 200
    seed: int = 0
    # cascade
    stages: int = 3  # trial V
    sigma: float = 1.0  # the refiner's box: σ × the pose's diameter (paper: 2; dev-split trials M, N, O)
    boxes_per_joint: int = 2  # simulated boxes per joint per image per epoch (paper: 40 in all; trial R)
    refine_images: int = 2000  # training images the refiners learn from (0: all; else a fixed random subset)
    refine_init: str = "previous"  # "previous": stage s starts from stage s−1's weights; "scratch": random
    # the loss weight of the other visible joints a refiner's crop shows, beside the joint its box was drawn for
    # (weight 1): 0 counts that joint alone, as the paper does; 0.3 is trial AB (docs/accuracy.md)
    refine_others: float = 0.3
    # data
    lsp_repeats: int = 16  # with --data lsp: LSP's training images so many times an epoch beside LSP-extended; AJ
    synthetic_train: int = 2000
    synthetic_test: int = 500
    # speed options (measured in `make bench`)
    number_format: str = "auto"  # "bf16" (autocast), "fp32", or "auto": the faster here (number_format.py)
    channels_last: bool = True  # weights and crops in NHWC order: oneDNN's faster layout, most of all in bf16
    threads: int = 0  # 0: leave torch's default

    def recipe(self, stage: int) -> StageRecipe:
        """Stage 1's recipe, or the refiners' for any stage s ≥ 2."""
        return self.stage1 if stage == 1 else self.refiner

    @property
    def stage1_views(self) -> tuple[float, float]:
        """(scale, shift) of stage 1's test-time box views, as ``Cascade.stage1_views`` takes them."""
        return self.view_scale, self.view_shift

    @property
    def refine_views(self) -> tuple[float, float]:
        """(scale, shift) of the refiners' test-time box views, as ``Cascade.refine_views`` takes them."""
        return self.refine_view_scale, self.refine_view_shift

    def replace(self, **changes: object) -> Profile:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> Profile:
        """A profile from ``to_dict`` / JSON (a run's run.json), checked like a command-line override.

        A flat profile from before per-stage recipes (``input_size``, ``refine_lr``, …) loads with its old meaning,
        one from before ``refine_others`` with 0 (its refiners learned from the box's own joint alone), one from
        before ``lsp_repeats`` with 1 (each LSP image once an epoch), and one from before ``view_scale`` /
        ``view_shift`` with 0: it evaluates through its one box, as it did.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"a profile must be a mapping of fields, got {type(d).__name__}")
        d = {"refine_others": 0.0, "lsp_repeats": 1, "view_scale": 0.0, "view_shift": 0.0, **d}
        d = legacy_number_format(nest_legacy_fields(d))
        # Only a dict (from to_dict / JSON) is converted: a missing key keeps the profile's default augmentation
        # and an Augmentation instance is kept as it is; None means no augmentation.
        if isinstance(d.get("augment"), dict):
            try:
                d["augment"] = Augmentation(**d["augment"])
            except TypeError as exc:
                raise ConfigError(f"profile field augment: {exc}") from None
        elif "augment" in d and d["augment"] is None:
            d["augment"] = Augmentation.none()
        defaults = Profile()
        for recipe in RECIPES:
            if isinstance(d.get(recipe), dict):
                d[recipe] = recipe_from_dict(recipe, d[recipe], getattr(defaults, recipe))
        check_fields(d, defaults)
        profile = Profile(**d)
        validate(profile, stored=True)
        return profile


def nest_legacy_fields(d: dict) -> dict:
    """A flat profile's recipe fields moved into ``stage1`` / ``refiner`` (a copy; a nested one is unchanged)."""
    out, nested = {}, {r: dict(d[r]) if isinstance(d.get(r), dict) else d.get(r) for r in RECIPES}
    for key, value in d.items():
        targets = legacy_targets(key) if key not in RECIPES else None
        if targets is None:
            out[key] = value
            continue
        if any(r in d for r in RECIPES):  # one of them would be silently ignored
            raise ConfigError(f"profile field {key} is the old flat form of {' and '.join(targets)}, but this profile "
                              "also has per-stage recipes; keep one form")
        for target in targets:
            recipe, name = target.split(".")
            if not isinstance(nested[recipe], dict):
                nested[recipe] = {}
            nested[recipe].setdefault(name, value)
    out.update({r: v for r, v in nested.items() if v is not None})
    return out


def legacy_number_format(d: dict) -> dict:
    """A run.json from before ``number_format`` stored ``bf16: true/false``: the same choice, named (a copy)."""
    if "bf16" not in d:
        return d
    out = {k: v for k, v in d.items() if k != "bf16"}
    if not isinstance(d["bf16"], bool):
        raise ConfigError(f"profile field bf16 (now number_format) must be true or false, got {d['bf16']!r}")
    out.setdefault("number_format", format_of_bf16_flag(d["bf16"]))
    return out


def format_of_bf16_flag(flag: bool) -> str:
    """The ``number_format`` the old ``bf16`` flag meant (run.json and ``--set bf16=…`` both still take it)."""
    return "bf16" if flag else "fp32"


def recipe_from_dict(name: str, d: dict, default: StageRecipe) -> StageRecipe:
    """One recipe from JSON, every field type-checked; missing fields keep ``default``'s values."""
    check_fields(d, default, f"{name}.")
    return dataclasses.replace(default, **d)


def check_fields(d: dict, default: object, prefix: str = "") -> None:
    """Every key of ``d`` a field of ``default``'s dataclass, of that field's type: a hand-edited or foreign
    run.json fails here, not mid-run."""
    known = {f.name for f in dataclasses.fields(default)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown profile fields {[prefix + k for k in unknown]}")
    for key, value in d.items():
        expected = type(getattr(default, key))
        if not has_type(value, expected):
            raise ConfigError(f"profile field {prefix}{key} must be a {expected.__name__}, got {value!r}")


def has_type(value: object, expected: type) -> bool:
    """JSON-level type check: bools are not numbers here, and an int is fine where a float is expected."""
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


# How the stages look at their boxes at test time, not how anything is trained: a run is resumed whatever they now
# say, and keeps the ones it recorded (``evaluate --views`` / ``--refine-views`` override them).
VIEW_FIELDS = ("view_scale", "view_shift", "refine_view_scale", "refine_view_shift")


def without_views(p: Profile) -> Profile:
    """``p`` looking through the one box: how the refiners' training poses are made, as in every measured recipe."""
    return p.replace(**dict.fromkeys(VIEW_FIELDS, 0.0))


SMOKE_NET = {"input_size": 64, "width": 0.125, "dropout": 0.0, "batch_size": 16}
PAPER_NET = {"input_size": 220, "width": 1.0, "dropout": 0.6, "lrn": True, "optimizer": "adagrad", "lr": 5e-4,
             "weight_decay": 0.0, "schedule": "constant", "batch_size": 128, "loss": "l2"}
CLASSROOM = Profile()
PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", stage1=StageRecipe(**SMOKE_NET, epochs=2), refiner=StageRecipe(**SMOKE_NET, epochs=1, lr=3e-4),
        flip_test=False, **dict.fromkeys(VIEW_FIELDS, 0.0),
        val_every=1, val_images=16, stages=2, boxes_per_joint=1,
        number_format="fp32", lsp_repeats=4, synthetic_train=64, synthetic_test=16,
    ),
    "classroom": CLASSROOM,
    # the classroom's network and recipe, cut to fit a lesson on a 2-core CPU without fast bf16: stage 1 for 6 epochs
    # instead of 14, its two refiners for 1 epoch instead of 4 (trial AP; one refiner of 2 epochs, trial AO, had the
    # same training time and strict PCP, wrists' PDJ@0.2 0.207 against 0.265 on the dev split)
    "lesson": CLASSROOM.replace(name="lesson", stage1=dataclasses.replace(CLASSROOM.stage1, epochs=6),
                                refiner=dataclasses.replace(CLASSROOM.refiner, epochs=1)),
    "paper": Profile(
        name="paper", stage1=StageRecipe(**PAPER_NET, epochs=100), refiner=StageRecipe(**PAPER_NET, epochs=20),
        train_box="auto", box_margin=0.16, flip_test=False,
        **dict.fromkeys(VIEW_FIELDS, 0.0),
        augment=Augmentation(shift=0.05, scale=0.1, rotate=0.0, flip=True, colour=0.1),
        stages=3, sigma=2.0, boxes_per_joint=40, refine_init="scratch", number_format="fp32", lsp_repeats=1,
        refine_images=0, refine_others=0.0,
        synthetic_train=10000, synthetic_test=1000,
    ),
}


def get_profile(name: str | None = None, **overrides: object) -> Profile:
    """The named preset (default: ``$DEEPPOSE_PROFILE``, else ``classroom``) with single fields overridden."""
    name = name or os.environ.get("DEEPPOSE_PROFILE", "classroom")
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return apply_overrides(PROFILES[name], overrides)


def apply_overrides(profile: Profile, overrides: dict[str, object]) -> Profile:
    """Replace fields by name, converting strings from the command line to the field's type.

    A dotted name sets one field of a group: ``augment.rotate``, ``stage1.lr``, ``refiner.epochs``. The flat names
    of earlier versions keep their meaning: ``lr`` and ``epochs`` are stage 1's, ``refine_lr`` the refiner's, and a
    field both recipes have (``dropout``, ``batch_size``, …) sets both."""
    fields = {f.name for f in dataclasses.fields(Profile)}
    groups = {f.name for f in dataclasses.fields(Profile) if dataclasses.is_dataclass(getattr(profile, f.name))}
    changes: dict[str, object] = {}
    for key, value in overrides.items():
        if key == "bf16":  # before number_format: --set bf16=yes / no
            value = convert(key, value, True) if isinstance(value, str) else value
            key, value = "number_format", format_of_bf16_flag(bool(value))
        for target in legacy_targets(key) or [key]:
            group, dot, name = target.partition(".")
            if not dot and group in groups and not isinstance(value, str):  # a whole Augmentation / StageRecipe
                changes[group] = value
                continue
            if not dot and group in fields and group not in groups:
                current = getattr(profile, group)
                changes[group] = convert(key, value, current) if isinstance(value, str) else value
                continue
            if not dot and group in groups:
                raise ConfigError(f"{key} cannot be set from the command line as a whole; set one of its fields, "
                                  f"e.g. {key}.{dataclasses.fields(getattr(profile, group))[0].name}=...")
            if not dot or group not in groups:
                raise ConfigError(f"unknown profile field {key!r}; fields are {sorted(fields - groups)}, and "
                                  f"{', '.join(f'{g}.NAME' for g in sorted(groups))}")
            part = changes.get(group, getattr(profile, group))
            names = sorted(f.name for f in dataclasses.fields(part))
            if name not in names:
                label = "augmentation" if group == "augment" else group
                raise ConfigError(f"unknown {label} field {name!r}; fields are {names}")
            current = getattr(part, name)
            new = convert(key, value, current) if isinstance(value, str) else value
            changes[group] = dataclasses.replace(part, **{name: new})
    out = profile.replace(**changes)
    validate(out)
    return out


def convert(key: str, text: str, current: object) -> object:
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {text!r}")
    if isinstance(current, Augmentation):
        raise ConfigError(f"{key} cannot be set from the command line")
    try:
        return type(current)(text)
    except ValueError:
        raise ConfigError(f"{key} must be a {type(current).__name__}, got {text!r}") from None


def validate(p: Profile, stored: bool = False) -> None:
    """Refuse sizes and rates that would only fail later, deep inside a training run.

    ``stored``: a profile read from a run.json, which may come from a version that allowed 0 epochs; it still loads
    (its stages are already trained or not), but a new command cannot ask for 0 epochs."""
    values = {f.name: getattr(p, f.name) for f in dataclasses.fields(p)}
    for recipe in RECIPES:
        values.update({f"{recipe}.{k}": v for k, v in dataclasses.asdict(values.pop(recipe)).items()})
    for key, value in values.items():  # inf and NaN pass a "> 0" test, then overflow or poison the weights
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"profile field {key} must be a finite number, got {value!r}")
    per_recipe = [f"{r}.{k}" for r in RECIPES for k in ("input_size", "batch_size", "lr", "width")]
    for key in ["lsp_repeats", "stages", "boxes_per_joint", "synthetic_train", "synthetic_test", "sigma", *per_recipe]:
        if not values[key] > 0:
            raise ConfigError(f"profile field {key} must be positive, got {values[key]!r}")
    for key in [f"{r}.epochs" for r in RECIPES]:
        if values[key] < (0 if stored else 1):  # 0: that stage untrained, the next stages trained on top of it
            raise ConfigError(f"profile field {key} must be at least 1 (a stage trained for 0 epochs is an "
                              f"untrained network), got {values[key]!r}")
    per_recipe = [f"{r}.weight_decay" for r in RECIPES]
    for key in ["refine_images", "val_every", "val_images", "threads", "seed", "box_margin", *per_recipe]:
        if values[key] < 0:
            raise ConfigError(f"profile field {key} must not be negative, got {values[key]!r}")
    for recipe in RECIPES:
        check_recipe(recipe, getattr(p, recipe), stored)
    if p.refine_init not in ("previous", "scratch"):
        raise ConfigError(f"refine_init must be previous or scratch, got {p.refine_init!r}")
    if p.refine_init == "previous":
        check_refiner_fits_stage1(p)
    if not p.arm_weight > 0:
        raise ConfigError(f"arm_weight is stage 1's loss weight of elbows and wrists, above 0, got {p.arm_weight!r}")
    if not 0.0 <= p.refine_others <= 1.0:
        raise ConfigError(f"refine_others is a loss weight from 0 to 1, got {p.refine_others!r}")
    for key in VIEW_FIELDS:
        if not 0.0 <= getattr(p, key) < 1.0:
            raise ConfigError(f"{key} is a fraction of a test-time box, from 0 (off) to below 1, "
                              f"got {getattr(p, key)!r}")
    if p.number_format not in FORMATS:
        raise ConfigError(f"number_format must be one of {', '.join(FORMATS)}, got {p.number_format!r}")
    if p.train_box not in ("image", "person", "auto"):
        raise ConfigError(f"train_box must be image, person or auto, got {p.train_box!r}")
    if not 0.0 <= p.augment.surround <= 1.0:
        raise ConfigError(f"augment.surround is a probability (0 to 1), got {p.augment.surround!r}")


def check_refiner_fits_stage1(p: Profile) -> None:
    """With ``refine_init=previous`` the refiner starts as a copy of stage 1, so its weights must have their shapes.

    The input size may differ where the last feature map keeps its size (stage 1 at 112 px, refiners at 96)."""
    shape = ("input_size", "width", "lrn", "batchnorm", "layout")  # what decides the weights' shapes
    same_size = p.stage1.input_size == p.refiner.input_size
    if all(getattr(p.stage1, k) == getattr(p.refiner, k) for k in shape[1:]) and (
            same_size or weight_shapes(p.stage1) == weight_shapes(p.refiner)):  # built only when sizes differ
        return
    mine = {k: getattr(p.refiner, k) for k in shape}
    theirs = {k: getattr(p.stage1, k) for k in shape}
    hint = ""
    if p.stage1.layout != p.refiner.layout:
        hint = (f" (stage1.init={p.stage1.init!r}, refiner.init={p.refiner.init!r}: only an init other than random "
                f"gives torchvision's layout; give the refiner stage 1's init, whose ImageNet weights are then "
                f"replaced by stage 1's)")
    raise ConfigError(f"refine_init=previous copies stage 1's weights, so the refiner's network must have stage "
                      f"1's shape {theirs}, got {mine}{hint}; or set refine_init=scratch")


def weight_shapes(r: StageRecipe) -> dict[str, tuple[int, ...]]:
    """The shape of every weight of the network ``r`` builds (random weights: nothing is read)."""
    return {k: tuple(v.shape) for k, v in r.build_model(pretrained=False).state_dict().items()}


def check_init_network(name: str, r: StageRecipe) -> None:
    """A pretrained ``init`` brings torchvision's full-width layout: refuse recipe fields it cannot have, by name."""
    prefix = f"{name}." if name else ""
    wrong = {"width": (r.width != 1.0, "1.0"), "lrn": (r.lrn, "false"), "batchnorm": (r.batchnorm, "false")}
    conflicts = [k for k, (bad, _) in wrong.items() if bad]
    if conflicts:
        have = ", ".join(f"{prefix}{k}={getattr(r, k)}" for k in conflicts)
        fix = " ".join(f"{prefix}{k}={wrong[k][1]}" for k in conflicts)
        raise ConfigError(f"{prefix}init={r.init} starts from torchvision's AlexNet weights, whose layout is full "
                          f"width (64-192-384-256-256) without LRN or BatchNorm, but this recipe has {have}; set "
                          f"{fix}, or {prefix}init=random (it fits the paper profile: --profile paper --set "
                          "stage1.init=imagenet --set stage1.lrn=false)")


def check_init(name: str, r: StageRecipe, stored: bool) -> None:
    """``init``: random, imagenet or an existing file (a stored run.json's file may have moved since: not checked)."""
    if r.init == "random":
        return
    check_init_network(name, r)
    if r.init != "imagenet" and not stored and not Path(r.init).expanduser().is_file():
        raise ConfigError(f"{name}.init must be random, imagenet or the path of torchvision's AlexNet weights file "
                          f"(alexnet-owt-7be5be79.pth), got {r.init!r}, which is no file")
    if r.input_size < TORCHVISION_MIN_INPUT:
        raise ConfigError(f"{name}.input_size {r.input_size}: torchvision's AlexNet layout ({name}.init={r.init}) "
                          f"needs at least {TORCHVISION_MIN_INPUT} px (its floor pooling leaves no feature map "
                          "below); the paper profile's 220 fits")


def check_recipe(name: str, r: StageRecipe, stored: bool = False) -> None:
    if r.input_size < 48:
        raise ConfigError(f"{name}.input_size {r.input_size}: input sizes below 48 px leave no feature map for the "
                          "AlexNet structure")
    if not 0 <= r.dropout < 1:
        raise ConfigError(f"{name}.dropout must be in [0, 1), got {r.dropout}")
    if r.optimizer not in ("adagrad", "sgd", "adam"):
        raise ConfigError(f"{name}.optimizer must be adagrad, sgd or adam, got {r.optimizer!r}")
    if r.schedule not in ("cosine", "step", "constant"):
        raise ConfigError(f"{name}.schedule must be cosine, step or constant, got {r.schedule!r}")
    if r.loss not in ("l2", "l1"):
        raise ConfigError(f"{name}.loss must be l2 or l1, got {r.loss!r}")
    check_init(name, r, stored)
