"""The regressor ψ of DeepPose: the paper's AlexNet, narrow classroom variants, and ImageNet weights.

At the defaults ``DeepPoseNet()`` is the paper's network, layer for layer::

    220×220×3 → C(55×55×96) − LRN − P − C(27×27×256) − LRN − P − C(13×13×384) − C(13×13×384) − C(13×13×256) − P
              − F(4096) − F(4096) − F(2k)

ReLU follows every C and hidden F, dropout follows the two hidden F layers, and the last F has NO activation:
the targets are normalised coordinates in about [−0.5, 0.5] and can fall outside (a joint outside its box),
so a ReLU or a clamp there is one of the classic DeepPose bugs (tests/test_model.py checks there is none).

Choices the paper leaves open, made here and why:

- conv1 padding 4: the only padding (with 5) that gives 220 → 55; then 55 → 27 → 13 → 6 and 256·6·6 = 9216.
- max pooling rounds up (``ceil_mode``), as AlexNet's original Caffe/cuda-convnet code did; at 220 px every
  pooling divides exactly, so the paper's sizes are unchanged, and small classroom inputs (down to 48 px)
  keep all three poolings instead of pooling a 2×2 map away to nothing.
- LRN uses AlexNet's constants (n = 5, α = 1e-4, β = 0.75, k = 2); PyTorch divides α by n, so it gets 5e-4.
- No grouped convolutions (AlexNet split conv2/4/5 over two GPUs); with k = 14 this gives ≈ 58.4 M parameters,
  almost all of them in F(4096) − F(4096).
- The model takes float RGB in [0, 1] (or uint8 RGB in 0–255) and normalises with ImageNet's mean/std itself
  (non-persistent buffers, so state dicts hold only learned weights), which also makes torchvision's ImageNet
  weights drop in.

ImageNet start: ``pretrained_alexnet`` loads torchvision's AlexNet file by key name into ``torchvision_layout``
(a recipe's ``init``, ``profiles.StageRecipe``); ``imagenet_weights_file`` finds that file in torch hub's cache or
downloads it there with torch hub's own hash check, all without importing torchvision.

Output layout: (B, 2k) as x0, y0, x1, y1, …; ``to_joints`` reshapes it to (B, k, 2).
"""

from __future__ import annotations

import copy
import dataclasses
import http.client
import inspect
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from .images import DataError

PAPER_CHANNELS = (96, 256, 384, 384, 256)
TORCHVISION_CHANNELS = (64, 192, 384, 256, 256)
KERNELS = (11, 5, 3, 3, 3)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_WIDTH = 8  # narrowest layer a width multiplier may produce
OUTPUT_INIT_GAIN = 0.01  # output weights ~ N(0, gain²/fan_in): untrained predictions sit ~0.01 from the box centre


def scaled(n: int, width: float) -> int:
    """A layer width times the multiplier, rounded, never below ``MIN_WIDTH``."""
    return max(MIN_WIDTH, round(n * width))


class ChannelLRN(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` with the same numbers (tested), cheaper on the CPU.

    PyTorch's version sums the window with ``avg_pool3d`` and raises to β with ``pow``. Here the window is
    five shifted slices added, and for AlexNet's β = 0.75 the power is rsqrt(v)·sqrt(rsqrt(v)) = v^−0.75:
    fewer passes over memory, forward and backward (docs/performance.md).
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            return super().forward(x)
        channels = x.shape[1]
        padded = nn.functional.pad(x * x, (0, 0, 0, 0, self.size // 2, (self.size - 1) // 2))
        window = padded[:, :channels]
        for shift in range(1, self.size):
            window = window + padded[:, shift:shift + channels]
        v = window * (self.alpha / self.size) + self.k
        if self.beta == 0.75:
            r = torch.rsqrt(v)
            return x * (r * torch.sqrt(r))
        return x / v.pow(self.beta)


def make_features(channels: Sequence[int], lrn: bool, conv1_padding: int, ceil_pool: bool,
                  adaptive_pool: int | None, batchnorm: bool = False) -> nn.Sequential:
    """conv1..conv5 with ReLUs, LRN after conv1/conv2 (optional), max pooling after conv1, conv2 and conv5.

    ``batchnorm`` puts a BatchNorm between every convolution and its ReLU (not in the paper, which predates it);
    off in every profile: on the dev split it lost strict PCP at the classroom budget (docs/accuracy.md)."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    c_in = 3
    for i, (c_out, k) in enumerate(zip(channels, KERNELS, strict=True), start=1):
        stride, pad = (4, conv1_padding) if i == 1 else (1, k // 2)
        layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, k, stride=stride, padding=pad)
        if batchnorm:
            layers[f"bn{i}"] = nn.BatchNorm2d(c_out)
        layers[f"relu{i}"] = nn.ReLU(inplace=True)
        if lrn and i in (1, 2):
            layers[f"lrn{i}"] = ChannelLRN(size=5, alpha=5e-4, beta=0.75, k=2.0)
        if i in (1, 2, 5):
            layers[f"pool{i}"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=ceil_pool)
        c_in = c_out
    if adaptive_pool is not None:
        layers["avgpool"] = nn.AdaptiveAvgPool2d(adaptive_pool)
    return nn.Sequential(layers)


def make_head(in_features: int, hidden: int, outputs: int, dropout: float) -> nn.Sequential:
    """F(hidden) − F(hidden) − F(outputs); ReLU and dropout after the hidden ones, nothing after the last."""
    return nn.Sequential(OrderedDict([
        ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(in_features, hidden)), ("relu6", nn.ReLU(inplace=True)), ("drop6", nn.Dropout(dropout)),
        ("fc7", nn.Linear(hidden, hidden)), ("relu7", nn.ReLU(inplace=True)), ("drop7", nn.Dropout(dropout)),
        ("fc8", nn.Linear(hidden, outputs)),
    ]))


def dry_feature_shape(input_size: int, **feature_args: object) -> tuple[int, int, int]:
    """(C, H, W) after the conv trunk, from a forward on the meta device: no memory, no arithmetic to keep in sync."""
    with torch.device("meta"):
        probe = make_features(**feature_args)  # type: ignore[arg-type]
        try:
            out = probe(torch.empty(1, 3, input_size, input_size))
        except RuntimeError as err:
            raise ValueError(f"input_size {input_size} is too small for the AlexNet structure: {err}") from None
    return tuple(out.shape[1:])  # type: ignore[return-value]


def init_weights(model: nn.Module, output: nn.Linear) -> None:
    """Kaiming for the ReLU layers; a tiny output layer with zero bias so an untrained net predicts the box centre."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    nn.init.normal_(output.weight, std=OUTPUT_INIT_GAIN / output.in_features**0.5)
    nn.init.zeros_(output.bias)


class DeepPoseNet(nn.Module):
    """AlexNet regressing k joints as normalised (x, y) pairs; the paper's network at the defaults.

    ``width`` scales every conv channel count and the hidden F width (rounded, at least 8); ``input_size`` may
    be as small as 48 px with the same 13-layer structure. The keyword-only arguments exist for torchvision's
    layout (``torchvision_layout``). ``self.config`` holds every argument, so ``from_config`` rebuilds the net.

    Introduced in ``notebooks/03_model.ipynb``.
    """

    def __init__(self, num_joints: int = 14, input_size: int = 220, width: float = 1.0, dropout: float = 0.6,
                 lrn: bool = True, channels: Sequence[int] = PAPER_CHANNELS, hidden: int = 4096, *,
                 conv1_padding: int = 4, ceil_pool: bool = True, adaptive_pool: int | None = None,
                 batchnorm: bool = False) -> None:
        super().__init__()
        check_args(num_joints, width, dropout, channels)
        self.config: dict[str, object] = dict(
            num_joints=num_joints, input_size=input_size, width=width, dropout=dropout, lrn=lrn,
            channels=tuple(channels), hidden=hidden, conv1_padding=conv1_padding, ceil_pool=ceil_pool,
            adaptive_pool=adaptive_pool, batchnorm=batchnorm,
        )
        self.num_joints = num_joints
        self.input_size = input_size
        feature_args = dict(channels=[scaled(c, width) for c in channels], lrn=lrn, conv1_padding=conv1_padding,
                            ceil_pool=ceil_pool, adaptive_pool=adaptive_pool, batchnorm=batchnorm)
        c, h, w = dry_feature_shape(input_size, **feature_args)
        self.features = make_features(**feature_args)  # type: ignore[arg-type]
        self.head = make_head(c * h * w, scaled(hidden, width), 2 * num_joints, dropout)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        init_weights(self, self.head.fc8)

    @classmethod
    def from_config(cls, config: Mapping[str, object]) -> DeepPoseNet:
        """Rebuild from ``model.config`` (e.g. out of a checkpoint); unknown keys are an error, not ignored."""
        known = set(inspect.signature(cls).parameters)
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown DeepPoseNet config keys {unknown}; known keys are {sorted(known)}")
        return cls(**config)  # type: ignore[arg-type]

    def forward(self, x: Tensor) -> Tensor:
        """Float RGB (B, 3, S, S) in [0, 1], or uint8 in 0–255 → (B, 2k) normalised coordinates x0, y0, x1, y1, …

        Inference passes the uint8 crops themselves: they are converted and normalised in place and handed to
        the first convolution in its weights' dtype (bf16 for ``Cascade``'s bf16 copies, so autocast has no
        cast left to make), with one allocation of the batch fewer than converting them outside.
        """
        check_input(x, self.input_size)
        return self.head(self.features(normalise_input(x, self.mean, self.std, self.features.conv1.weight.dtype)))

    def predict_normalised(self, x: Tensor) -> Tensor:
        """(B, k, 2) joints in box-normalised coordinates; leaves train/eval and grad mode to the caller."""
        return to_joints(self(x))


def normalise_input(x: Tensor, mean: Tensor, std: Tensor, uint8_to: torch.dtype = torch.float32) -> Tensor:
    """(x − mean) / std per channel, as ONE pass: x · (1/std) − mean/std (a second pass over the batch costs a
    visible part of a small network's inference); float32 out, autocast casts it where it is on.

    uint8 input (0–255, what inference feeds) is cast and divided by 255 in place first, the numbers a float
    crop would have, and comes out as ``uint8_to``: the batch is allocated once in float32 and once in
    ``uint8_to``, not three times (measured: ``cascade.uint8_input``).

    Channels_last input (what training and the crops feed) is (r, g, b) × W along each memory row, and a
    3-vector broadcast over that innermost dimension is several times slower than a whole-row one: so there the
    constants are tiled to a whole row first (docs/performance.md). Same numbers, same layout out.
    """
    scale, shift = 1.0 / std, -mean / std
    from_uint8 = x.dtype == torch.uint8
    if from_uint8:
        x = x.to(torch.float32).div_(255.0)  # keeps the strides: channels_last stays channels_last
    b, c, h, w = x.shape
    if c == 3 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        rows = x.permute(0, 2, 3, 1).reshape(b, h, w * c)  # a view of the NHWC memory
        out = torch.addcmul(shift.reshape(c).repeat(w), rows, scale.reshape(c).repeat(w),
                            out=rows if from_uint8 else None).view(b, h, w, c).permute(0, 3, 1, 2)
    else:
        out = torch.addcmul(shift, x, scale, out=x if from_uint8 else None)
    return out.to(uint8_to) if from_uint8 else out


def check_args(num_joints: int, width: float, dropout: float, channels: Sequence[int]) -> None:
    if num_joints < 1:
        raise ValueError(f"num_joints must be at least 1, got {num_joints}")
    if not width > 0:
        raise ValueError(f"width must be positive, got {width}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if len(channels) != len(KERNELS):
        raise ValueError(f"channels needs {len(KERNELS)} conv widths, got {tuple(channels)}")


def check_input(x: Tensor, size: int) -> None:
    """Fail with the likely cause: integer crops of another type, channels last, or the wrong crop size."""
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        raise TypeError(f"DeepPoseNet expects float input in [0, 1] or uint8 in 0–255, got {x.dtype}")
    if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
        raise ValueError(f"DeepPoseNet expects (B, 3, {size}, {size}) input, got {tuple(x.shape)}")


def to_joints(y: Tensor) -> Tensor:
    """(B, 2k) network output → (B, k, 2), using the x0, y0, x1, y1, … layout.

    Introduced in ``notebooks/03_model.ipynb``.
    """
    return y.reshape(y.shape[0], -1, 2)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``model`` (only those with ``requires_grad`` when ``trainable_only``).

    Introduced in ``notebooks/03_model.ipynb``.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy with every BatchNorm folded into the convolution before it (the same function, one layer
    fewer): inference runs the copy in bf16, where a BatchNorm's fp32 running statistics would not mix."""
    folded = copy.deepcopy(model).eval()
    layers = getattr(folded, "features", None)
    if not isinstance(layers, nn.Sequential):
        return folded
    names = list(layers._modules)
    for prev, name in zip(names, names[1:], strict=False):
        bn = layers._modules[name]
        if isinstance(bn, nn.BatchNorm2d):
            conv = layers._modules[prev]
            assert isinstance(conv, nn.Conv2d), prev
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
            layers._modules[name] = nn.Identity()
    return folded


# ---------------------------------------------------------------------------------------------------- layer table


@dataclass(frozen=True)
class LayerRow:
    """One row of the layer table; ``output_shape`` is per sample, in PyTorch order (C, H, W) or (F,)."""

    name: str
    kind: str  # "C", "LRN", "P", "AP" (adaptive average pool) or "F", as in the paper's notation
    output_shape: tuple[int, ...]
    params: int
    detail: str  # kernel/stride/padding or in → out, plus the ReLU/dropout that follow


@dataclass(frozen=True)
class PaperLayer:
    """A layer of the paper's list; the paper states the C and F sizes, the LRN and P sizes follow from them."""

    kind: str
    output_shape: tuple[int, ...]  # PyTorch order, (C, H, W) or (F,)

    @property
    def label(self) -> str:
        """The paper's notation, e.g. C(55×55×96), F(4096), LRN, P."""
        if self.kind == "C":
            c, h, w = self.output_shape
            return f"C({h}×{w}×{c})"
        return f"F({self.output_shape[0]})" if self.kind == "F" else self.kind


def paper_layers(num_joints: int = 14) -> tuple[PaperLayer, ...]:
    """The paper's network as data: 220×220×3 in, 2k numbers out."""
    spec = [("C", (96, 55, 55)), ("LRN", (96, 55, 55)), ("P", (96, 27, 27)),
            ("C", (256, 27, 27)), ("LRN", (256, 27, 27)), ("P", (256, 13, 13)),
            ("C", (384, 13, 13)), ("C", (384, 13, 13)), ("C", (256, 13, 13)), ("P", (256, 6, 6)),
            ("F", (4096,)), ("F", (4096,)), ("F", (2 * num_joints,))]
    return tuple(PaperLayer(kind, shape) for kind, shape in spec)


PAPER_LAYERS = paper_layers(14)
KINDS: dict[type[nn.Module], str] = {nn.Conv2d: "C", ChannelLRN: "LRN", nn.LocalResponseNorm: "LRN", nn.MaxPool2d: "P",
                                     nn.AdaptiveAvgPool2d: "AP", nn.Linear: "F", nn.BatchNorm2d: "BN"}


def describe(m: nn.Module) -> str:
    """Short text for a layer's hyper-parameters."""
    if isinstance(m, nn.Conv2d):
        return f"{m.kernel_size[0]}×{m.kernel_size[1]} /{m.stride[0]} pad {m.padding[0]}"  # type: ignore[index]
    if isinstance(m, nn.LocalResponseNorm):
        return f"n {m.size}, α/n {m.alpha / m.size:g}, β {m.beta:g}, k {m.k:g}"
    if isinstance(m, nn.MaxPool2d):
        return f"max {m.kernel_size}×{m.kernel_size} /{m.stride}" + (" ceil" if m.ceil_mode else "")
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return f"adaptive avg → {m.output_size}"
    if isinstance(m, nn.Linear):
        return f"{m.in_features} → {m.out_features}"
    if isinstance(m, nn.Dropout):
        return f"dropout {m.p:g}"
    return type(m).__name__


def layer_table(model: DeepPoseNet) -> list[LayerRow]:
    """Per-layer output shapes and parameter counts, measured by hooks on one dummy forward (batch 1, eval mode).

    Introduced in ``notebooks/03_model.ipynb``.
    """
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children()) and not isinstance(m, nn.Flatten)]
    shapes: dict[str, tuple[int, ...]] = {}

    def hook_for(name: str) -> Callable[..., None]:
        return lambda _m, _i, out: shapes.__setitem__(name, tuple(out.shape[1:]))

    hooks = [m.register_forward_hook(hook_for(n)) for n, m in leaves if type(m) in KINDS]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            p = next(model.parameters())
            model(torch.zeros(1, 3, model.input_size, model.input_size, dtype=p.dtype, device=p.device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    rows: list[LayerRow] = []
    for name, m in leaves:
        if type(m) in KINDS:
            params = sum(q.numel() for q in m.parameters(recurse=False))
            rows.append(LayerRow(name, KINDS[type(m)], shapes[name], params, describe(m)))
        elif rows:  # ReLU / dropout: noted on the layer they follow
            rows[-1] = dataclasses.replace(rows[-1], detail=f"{rows[-1].detail} + {describe(m)}")
    return rows


def format_layer_table(rows: Sequence[LayerRow]) -> str:
    """Fixed-width text table with a total row, for notebooks and the command line.

    Introduced in ``notebooks/03_model.ipynb``.
    """
    header = ("layer", "kind", "output (C×H×W)", "params", "detail")
    body = [(r.name, r.kind, "×".join(map(str, r.output_shape)), f"{r.params:,}", r.detail) for r in rows]
    total = ("total", "", "", f"{sum(r.params for r in rows):,}", "")
    widths = [max(len(line[i]) for line in [header, *body, total]) for i in range(len(header))]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [c.rjust(w) if i == 3 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(fmt(header))
    return "\n".join([fmt(header), rule, *map(fmt, body), rule, fmt(total)])


# --------------------------------------------------------------------------------------- torchvision ImageNet weights

# torchvision.models.alexnet: features = [conv 64 k11 s4 p2, ReLU, maxpool 3/2, conv 192 k5 p2, ReLU, maxpool,
# conv 384 k3 p1, ReLU, conv 256 k3 p1, ReLU, conv 256 k3 p1, ReLU, maxpool]; avgpool = AdaptiveAvgPool2d(6);
# classifier = [Dropout, Linear(9216, 4096), ReLU, Dropout, Linear(4096, 4096), ReLU, Linear(4096, 1000)].
TORCHVISION_NAMES = {
    "features.0": "features.conv1", "features.3": "features.conv2", "features.6": "features.conv3",
    "features.8": "features.conv4", "features.10": "features.conv5",
    "classifier.1": "head.fc6", "classifier.4": "head.fc7",
}
TORCHVISION_DROPPED = ("classifier.6.weight", "classifier.6.bias")  # the 1000-class layer, replaced by fc8


TORCHVISION_LAYOUT: dict[str, object] = dict(  # the DeepPoseNet arguments of torchvision's AlexNet, but for the head
    width=1.0, lrn=False, channels=TORCHVISION_CHANNELS, hidden=4096, conv1_padding=2, ceil_pool=False,
    adaptive_pool=6, batchnorm=False,
)
# torchvision's AlexNet_Weights.IMAGENET1K_V1; "7be5be79" is the start of the file's SHA-256, which torch hub checks
IMAGENET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
IMAGENET_URL_ENV = "DEEPPOSE_IMAGENET_URL"  # another address for the same file (a mirror; the tests' local server)
TORCHVISION_MIN_INPUT = 63  # floor pooling: 63 px → 15 → 7 → 3 → 1 after pool5; at 62 px nothing is left (tested)


def torchvision_layout(num_joints: int = 14, dropout: float = 0.5, input_size: int = 224) -> DeepPoseNet:
    """DeepPoseNet shaped like torchvision's AlexNet (no LRN, 64-192-384-256-256, floor pooling, 6×6 avg pool).

    At 224 px the average pool is the identity; at 220 px (the paper's size) it resamples 5×5 to 6×6, so the
    ImageNet F weights still fit.
    """
    return DeepPoseNet.from_config(torchvision_config(num_joints, dropout, input_size))


def torchvision_config(num_joints: int = 14, dropout: float = 0.5, input_size: int = 224) -> dict[str, object]:
    """The ``DeepPoseNet.config`` of ``torchvision_layout``."""
    return {"num_joints": num_joints, "input_size": input_size, "dropout": dropout, **TORCHVISION_LAYOUT}


def is_torchvision_layout(config: Mapping[str, object]) -> bool:
    """Whether a ``DeepPoseNet.config`` has torchvision's AlexNet trunk and hidden layers (so its weights fit)."""
    channels = config.get("channels")
    normalised = {**config, "channels": tuple(channels) if isinstance(channels, list | tuple) else channels}
    return all(normalised.get(k) == v for k, v in TORCHVISION_LAYOUT.items())


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """``torch.load`` with ``weights_only=True``, turning a wrong kind of file into an error that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and format errors all mean the same thing to the reader
        raise DataError(path, f"not a weights-only PyTorch state dict ({type(err).__name__}, shown above); "
                              "save model.state_dict(), not the model object") from err
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise DataError(path, f"expected a state dict (names → tensors), got {type(obj).__name__}")
    return dict(obj)


def map_torchvision_keys(state: Mapping[str, Tensor], ours: Mapping[str, Tensor], path: str | Path
                         ) -> dict[str, Tensor]:
    """torchvision key → our key, checking every key and shape against ``ours``; the error lists what differs."""
    expected = {f"{tv}.{p}": f"{mine}.{p}" for tv, mine in TORCHVISION_NAMES.items() for p in ("weight", "bias")}
    problems = [f"unexpected key {k!r}" for k in state if k not in expected and k not in TORCHVISION_DROPPED]
    for tv_key, key in expected.items():
        if tv_key not in state:
            problems.append(f"missing key {tv_key!r}")
        elif tuple(state[tv_key].shape) != tuple(ours[key].shape):
            problems.append(f"{tv_key!r} has shape {tuple(state[tv_key].shape)}, expected {tuple(ours[key].shape)}")
    if problems:
        more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise DataError(path, f"not torchvision's AlexNet state dict: {'; '.join(problems[:4])}{more}")
    return {key: state[tv_key] for tv_key, key in expected.items()}


def pretrained_alexnet(path: str | Path, config: Mapping[str, object]) -> DeepPoseNet:
    """A ``DeepPoseNet`` of ``config`` (torchvision's layout) with every conv and hidden F weight loaded by name from
    torchvision's AlexNet file, and a fresh 2k output layer (``init_weights``'s, as a random start has).

    The file is checked against the shapes first, so a wrong one fails before 57 M parameters are initialised."""
    if not is_torchvision_layout(config):
        raise ValueError(f"ImageNet weights need torchvision's layout {TORCHVISION_LAYOUT}, got {dict(config)}")
    state = read_state_dict(path)
    with torch.device("meta"):  # shapes only
        template = DeepPoseNet.from_config(config)
    mapped = map_torchvision_keys(state, template.state_dict(), path)
    model = DeepPoseNet.from_config(config)
    result = model.load_state_dict(mapped, strict=False)
    assert set(result.missing_keys) == {"head.fc8.weight", "head.fc8.bias"}, result
    return model


def load_torchvision_alexnet(path: str | Path, num_joints: int = 14, dropout: float = 0.5,
                             input_size: int = 224) -> DeepPoseNet:
    """``torchvision_layout`` with ImageNet conv/F weights from torchvision's file and a fresh 2k output layer.

    Reads the file torchvision downloads (e.g. ``alexnet-owt-7be5be79.pth``) without importing torchvision.
    """
    return pretrained_alexnet(path, torchvision_config(num_joints, dropout, input_size))


def weights_file(init: str, progress: bool = True) -> Path:
    """The torchvision AlexNet file a recipe's ``init`` names: torch hub's ImageNet one, or the given path."""
    return imagenet_weights_file(progress=progress) if init == "imagenet" else Path(init).expanduser()


def imagenet_url() -> str:
    """Where torchvision's ImageNet AlexNet is downloaded from: ``$DEEPPOSE_IMAGENET_URL``, else ``IMAGENET_URL``."""
    return os.environ.get(IMAGENET_URL_ENV) or IMAGENET_URL


def hub_cache_path(url: str) -> Path:
    """Where torch hub keeps ``url``'s file (``torch.hub.get_dir()/checkpoints``: ``$TORCH_HOME/hub/checkpoints``,
    by default ``~/.cache/torch/hub/checkpoints``), so a file torchvision or torch hub fetched before is found."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def imagenet_weights_file(url: str | None = None, progress: bool = True) -> Path:
    """torchvision's ImageNet AlexNet file in torch hub's cache, downloaded there (hash-checked) when absent."""
    url = url or imagenet_url()
    cached = hub_cache_path(url)
    if not cached.is_file():
        download_checked(url, cached, progress)
    return cached


def download_checked(url: str, dst: Path, progress: bool) -> None:
    """``torch.hub.download_url_to_file`` checked against the SHA-256 prefix in the file's name (what torch hub's
    ``check_hash`` does); it writes a temporary file first, so a refused or broken download leaves nothing at ``dst``.
    """
    match = torch.hub.HASH_REGEX.search(dst.name)
    if match is None or not match.group(1):
        raise DataError(url, f"the file name {dst.name!r} carries no SHA-256 prefix (as in alexnet-owt-7be5be79.pth), "
                             "so the download could not be checked")
    prefix = match.group(1)
    dst.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading torchvision's ImageNet AlexNet weights from {url} to {dst}", file=sys.stderr)
    try:
        torch.hub.download_url_to_file(url, str(dst), hash_prefix=prefix, progress=progress)
    except RuntimeError as err:
        if "invalid hash value" not in str(err):
            raise
        raise DataError(url, f"download refused: the file's SHA-256 does not start with {prefix}, as its name "
                             f"{dst.name} says ({err}); nothing was saved") from None
    except (URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise DataError(dst, f"torchvision's ImageNet AlexNet weights are not there, and downloading them from {url} "
                             f"failed ({reason}); without a network, fetch that file on another machine and copy it "
                             f"to this path, or give its path: --set stage1.init=/path/to/{dst.name}") from None
