"""The cascade: stage 1 regresses the whole pose, each later stage moves every joint within a σ·diam box.

Paper reading used here (the ψ_i reading): a stage s ≥ 2 is ONE network, with its own parameters, that
outputs all 14 joints' normalised positions for any crop; for the crop around joint i only output i is
used (at test time) and trained (the loss weight is one-hot on i). The joint's identity reaches the
network through which output is read and trained, as in the paper's ψ_i(x; θ_s).

Training data of stage s (paper §3.3): run stage s−1 on the TRAINING images, take each joint's
displacement y_i^(s−1) − y_i in units of σ·diam(y^(s−1)), fit a normal per joint, and crop boxes centred
at y_i + δ with δ drawn from it. Test images never enter the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import nn

from .crops import CropItem, box_views, inference_box, loss_weight, view_count
from .datasets import PoseDataset
from .geometry import (
    MIN_DIAM,
    Augmentation,
    box_side,
    box_to_crop,
    cascade_boxes,
    crop_sample,
    inside_box,
    make_box,
    uncrop_joints,
    warp_image,
)
from .model import fold_batchnorm
from .sample import Sample
from .skeleton import FLIP, NUM_JOINTS
from .train import autocast

# diam(y^(s-1)) is floored at this fraction of the stage-1 box side: a stage-1 pose that collapsed towards
# the centre (a quarter of them on LSP with the classroom network) would otherwise get boxes a few pixels
# wide that show nothing, and its displacements, divided by that tiny diam, would swamp the statistics.
DIAM_FLOOR_FRACTION = 0.2


@dataclass(frozen=True)
class DisplacementStats:
    """Per joint: mean (14, 2) and covariance (14, 2, 2) of y^(s−1) − y in units of σ·diam(y^(s−1))."""

    mean: np.ndarray
    cov: np.ndarray
    count: np.ndarray  # (14,) how many training joints each fit used

    def to_payload(self) -> dict[str, torch.Tensor]:
        return {"mean": torch.from_numpy(self.mean), "cov": torch.from_numpy(self.cov),
                "count": torch.from_numpy(self.count)}

    @staticmethod
    def from_payload(d: dict[str, torch.Tensor]) -> DisplacementStats:
        return DisplacementStats(d["mean"].numpy(), d["cov"].numpy(), d["count"].numpy())


def diam_floor(sample: Sample, box: np.ndarray | None = None) -> float:
    """The floor of diam for one image: ``DIAM_FLOOR_FRACTION`` of its stage-1 box side (no labels used)."""
    return DIAM_FLOOR_FRACTION * float(inference_box(sample, box)[2])


def diam_floors(dataset: PoseDataset, boxes: np.ndarray | None = None) -> np.ndarray:
    """(N,) ``diam_floor`` of every image, as refinement and its training use them."""
    return np.array([diam_floor(dataset[n], None if boxes is None else boxes[n]) for n in range(len(dataset))])


def displacement_stats(pred: np.ndarray, true: np.ndarray, visible: np.ndarray, sigma: float,
                       min_diam: np.ndarray | float = MIN_DIAM) -> DisplacementStats:
    """Fit the per-joint normal of stage s−1's errors on the TRAINING set, in units of σ·diam(y^(s−1)).

    Only visible joints that lie inside their σ·diam box count (|displacement| ≤ 0.5 in each axis): hidden
    LSP-extended joints carry arbitrary coordinates, and a joint outside its box is invisible in the crop,
    so stage s cannot learn to move it; a few such failures would otherwise dominate the covariance. A
    joint with fewer than two usable examples falls back to a zero-mean normal of a tenth of the box.
    """
    units = (pred - true) / box_side(pred, sigma, min_diam)[:, None, None]
    usable = visible & inside_box(units)
    mean = np.zeros((NUM_JOINTS, 2))
    cov = np.tile(np.eye(2) * 0.01, (NUM_JOINTS, 1, 1))
    count = usable.sum(axis=0).astype(np.int64)
    for j in range(NUM_JOINTS):
        d = units[usable[:, j], j]
        if len(d) >= 2:
            mean[j] = d.mean(axis=0)
            cov[j] = np.cov(d, rowvar=False) + np.eye(2) * 1e-6
    return DisplacementStats(mean, cov, count)


class RefineCrops:
    """Stage-s items: ``boxes_per_joint`` simulated boxes per joint per image, target N(y_i; b), weight on i.

    With ``simulate=False`` (validation) the box is centred on stage s−1's actual estimate instead, exactly
    as at test time. ``others`` > 0 also weighs every other visible joint inside the crop by that much: the
    cascade only reads joint i from a box drawn for i, but the crop's other labels are free supervision.

    Introduced in ``notebooks/05_cascade.ipynb``.
    """

    def __init__(self, dataset: PoseDataset, previous: np.ndarray, stats: DisplacementStats, sigma: float, size: int,
                 boxes_per_joint: int, augment: Augmentation, mask_hidden: bool = True, simulate: bool = True,
                 min_diam: np.ndarray | None = None, others: float = 0.0) -> None:
        self.dataset, self.previous, self.stats = dataset, np.asarray(previous, dtype=np.float64), stats
        self.others = others
        self.sigma, self.size, self.boxes_per_joint = sigma, size, boxes_per_joint
        self.augment, self.mask_hidden, self.simulate = augment, mask_hidden, simulate
        self.chol = np.linalg.cholesky(stats.cov)
        self.min_diam = np.full(len(dataset), MIN_DIAM) if min_diam is None else np.asarray(min_diam, np.float64)

    def __len__(self) -> int:
        return len(self.dataset) * NUM_JOINTS * self.boxes_per_joint

    def box(self, n: int, joint: int, rng: np.random.Generator | None) -> np.ndarray:
        side = float(box_side(self.previous[n], self.sigma, self.min_diam[n]))
        if not self.simulate:
            centre = self.previous[n, joint]
        else:
            z = self.stats.mean[joint]
            if rng is not None:
                z = z + self.chol[joint] @ rng.standard_normal(2)
            centre = self.dataset.joints[n, joint] + z * side
        return make_box(centre[0], centre[1], side, side)

    def item(self, index: int, rng: np.random.Generator | None) -> CropItem:
        n, joint = divmod(index // self.boxes_per_joint, NUM_JOINTS)
        sample = self.dataset[n]
        box = self.box(n, joint, rng)
        aug = self.augment if rng is not None else Augmentation.none()
        crop, target, vis, t = crop_sample(sample.image, sample.joints, sample.visible, box, self.size, aug, rng)
        counted = np.zeros(NUM_JOINTS, dtype=np.float32)
        counted[FLIP[joint] if t.flipped else joint] = 1.0
        if self.others:
            counted = np.maximum(counted, self.others * inside_box(target))
        return CropItem(crop, target.astype(np.float32), counted * loss_weight(vis, self.mask_hidden), t.colour)


def uint8_input(crops: np.ndarray) -> torch.Tensor:
    """uint8 (B, S, S, 3) crops as the network's (B, 3, S, S) input, channels_last, without a copy.

    DeepPoseNet normalises uint8 itself (``model.normalise_input``) with the numbers a float crop gives, but
    allocates the batch twice instead of three times and in bf16 skips autocast's cast (docs/performance.md).
    """
    return torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2)


def with_mirrors(crops: np.ndarray) -> np.ndarray:
    """(2B, S, S, 3): the uint8 crops (B, S, S, 3), then each one mirrored left to right.

    One OpenCV flip of the batch seen as a single tall image (every crop's rows stacked) writes the mirrors in
    place: NumPy copying the reversed view ``crops[:, :, ::-1]`` goes three bytes at a time and took 1.7 ms of
    an image's 10.9 in the one-box compiled cascade, 9 times as long (docs/performance.md).
    """
    crops = np.ascontiguousarray(crops)
    b, height, width = crops.shape[:3]
    if b == 0:
        return crops.copy()
    out = np.empty((2 * b, height, width, *crops.shape[3:]), dtype=crops.dtype)
    out[:b] = crops
    cv2.flip(crops.reshape(b * height, width, -1), 1, dst=out[b:].reshape(b * height, width, -1))
    return out


@torch.no_grad()
def run_model(model: nn.Module, crops: np.ndarray, batch_size: int = 128, bf16: bool = False,
              flip_test: bool = False) -> np.ndarray:
    """(B, 14, 2) normalised outputs for uint8 crops (B, S, S, 3), in eval mode (bf16 autocast optional).

    ``flip_test`` averages each output with that of the mirrored crop, mapped back (u → −u, left/right
    swapped): mirroring the crop maps crop x to size − x, which in normalised coordinates is u → −u, and the
    network's left wrist on the mirror is the right wrist here. Both halves go through the network together.
    """
    model.eval()
    device = next(model.parameters()).device
    outs = []
    with autocast(bf16, device):
        for i in range(0, len(crops), batch_size):
            chunk = crops[i:i + batch_size]
            if flip_test:  # mirrored while still uint8: a quarter of the bytes of flipping the float batch
                chunk = with_mirrors(chunk)
            outs.append(model(uint8_input(chunk).to(device)).float().cpu())
    if not flip_test:
        return torch.cat(outs).view(len(crops), NUM_JOINTS, 2).numpy().astype(np.float64)
    halves = [o.view(2, -1, NUM_JOINTS, 2) for o in outs]
    plain = torch.cat([h[0] for h in halves]).numpy().astype(np.float64)
    mirrored = torch.cat([h[1] for h in halves]).numpy().astype(np.float64)[:, FLIP]
    mirrored[..., 0] *= -1.0
    return (plain + mirrored) / 2.0


def predict_stage1(model: nn.Module, dataset: PoseDataset, size: int, boxes: np.ndarray | None = None,
                   batch_size: int = 64, flip_test: bool = False, bf16: bool = False,
                   views: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Stage 1 on every image: crop the test-time box (no labels used), regress, map back. (N, 14, 2) px.

    ``flip_test`` averages each prediction with that of the mirrored crop (a profile setting, not the paper's).
    ``views`` (scale, shift) also looks through the boxes ``crops.box_views`` jitters from the test-time box and
    keeps each coordinate's median over them: one wild view does not move the pose, as it would move a mean.

    Introduced in ``notebooks/04_stage1.ipynb``.
    """
    out = np.empty((len(dataset), NUM_JOINTS, 2))
    per_image = view_count(*views)
    step = max(1, batch_size // per_image)
    for start in range(0, len(dataset), step):
        idx = range(start, min(start + step, len(dataset)))
        mats, crops = [], []
        for n in idx:
            sample = dataset[n]
            for box in box_views(inference_box(sample, None if boxes is None else boxes[n]), *views):
                mats.append(box_to_crop(box, size))
                crops.append(warp_image(sample.image, mats[-1], size))
        pred = run_model(model, np.stack(crops), batch_size, bf16, flip_test)
        poses = uncrop_joints(pred, np.stack(mats), size).reshape(len(idx), per_image, NUM_JOINTS, 2)
        out[idx.start:idx.stop] = np.median(poses, axis=1)
    return out


def refine(model: nn.Module, dataset: PoseDataset, previous: np.ndarray, sigma: float, size: int,
           min_diam: np.ndarray | None = None, images_per_batch: int = 4, bf16: bool = False,
           flip_test: bool = False, views: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """One cascade stage: every joint's crop of ``images_per_batch`` images at a time; joint i moves by output i,
    in IMAGE px.

    ``flip_test`` averages each crop's output with that of its mirror, as stage 1 does. ``views`` (scale, shift)
    also looks at each joint through the boxes ``crops.box_views`` jitters from its σ·diam box and moves it to the
    per-coordinate median of where the views put it, as ``predict_stage1`` does for the whole pose.
    The network sees 14 × ``images_per_batch`` crops at once (56, 112 with flip averaging): at twice that, the
    classroom network's input passes 32 MB, the size above which glibc hands every allocation fresh pages from the
    kernel, which is slow (docs/performance.md).
    """
    out = np.empty_like(previous, dtype=np.float64)
    floors = np.full(len(dataset), MIN_DIAM) if min_diam is None else np.asarray(min_diam, np.float64)
    per_joint = view_count(*views)
    joint = np.arange(NUM_JOINTS)
    for start in range(0, len(dataset), images_per_batch):
        idx = range(start, min(start + images_per_batch, len(dataset)))
        mats, crops = [], []
        for n in idx:
            image = dataset[n].image
            for box in cascade_boxes(previous[n], sigma, float(floors[n])):
                for view in box_views(box, *views):
                    mats.append(box_to_crop(view, size))
                    crops.append(warp_image(image, mats[-1], size))
        pred = run_model(model, np.stack(crops), NUM_JOINTS * images_per_batch, bf16, flip_test)
        pred = pred.reshape(len(idx), NUM_JOINTS, per_joint, NUM_JOINTS, 2).transpose(0, 1, 3, 2, 4)
        own = pred[:, joint, joint]  # (images, 14, views, 2): a crop drawn for joint j moves joint j only
        moved = uncrop_joints(own.reshape(-1, 1, 2), np.stack(mats), size)
        out[idx.start:idx.stop] = np.median(moved.reshape(len(idx), NUM_JOINTS, per_joint, 2), axis=2)
    return out


class FrozenGraph(nn.Module):
    """``net`` compiled by ``torch.compile`` with inductor's ``freezing`` on (``Cascade.runnable`` says why): one
    graph for every batch size above 1 (dynamo compiles a batch of 1 apart), ``net``'s weights constants of it.
    Dynamo reads ``freezing`` from inductor's global config while it traces, before ``torch.compile``'s ``options``
    reach inductor, so ``options={"freezing": True}`` has no effect (measured: neither time nor speed changed); the
    setting is patched around every call instead, which is where compiling (and any recompiling) happens.
    Each frozen network is its own entry in dynamo's cache for the network's code, holding its weights until the
    process ends or ``torch._dynamo.reset()``; past ``torch._dynamo.config.recompile_limit`` (8) entries the later
    networks run eager (torch warns), as fast as without ``compile``. A command compiles one cascade; a notebook
    that compiles many should reset between them."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = torch.compile(net, dynamic=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from torch._inductor import config  # almost a second to import: only where a cascade is compiled

        with config.patch(freezing=True):
            return self.net(x)


@dataclass
class Cascade:
    """A trained cascade: stage 1 plus refinement stages, with the sizes and σ they were trained with."""

    stage1: nn.Module
    stage1_size: int
    refiners: list[nn.Module]
    refine_size: int
    sigma: float
    flip_test: bool = False
    bf16: bool = False  # bf16 autocast, as the stages were trained (a profile setting)
    compile: bool = False  # torch.compile every network: seconds per network first, then faster (see ``runnable``)
    stage1_views: tuple[float, float] = (0.0, 0.0)  # (scale, shift) of stage 1's jittered test boxes; 0: one box
    refine_views: tuple[float, float] = (0.0, 0.0)  # the same for every refiner's σ·diam boxes
    _prepared: dict[int, tuple[nn.Module, tuple, nn.Module]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def runnable(self, net: nn.Module) -> nn.Module:
        """``net`` as inference runs it: in bf16 a copy whose weights are already bf16; compiled if ``compile``.

        Autocast would cast every weight again on every call, a large part of a one-image prediction.
        ``torch.compile`` fuses what runs between the convolutions (LRN above all, a dozen passes over memory in
        eager mode) into single loops, after seconds of compiling on the first call; it needs a C compiler. It
        compiles with inductor's ``freezing``: the weights become constants of the graph, so oneDNN packs them once
        and runs each ReLU inside the convolution before it (the classroom cascade in bf16 on a Xeon with AMX:
        16.9 ms an image, against 21.4-22.4 compiled without it and 23.5 eager; docs/performance.md). So a compiled
        network is a copy too, compiled again when its weights change.
        A copy is remade when ``net``'s parameters or buffers (BatchNorm's statistics, folded into the copy) change:
        new values through the tensors (``load_state_dict``, an optimiser step, a training-mode forward: their version
        counters) or new storage (``.to(device)``). Writing through ``param.data`` bypasses both and is not seen.
        An fp32 net that is not compiled is run itself, so it needs no key.
        """
        if not (self.bf16 or self.compile):
            return net
        version = tuple((t._version, t.data_ptr(), str(t.device)) for t in (*net.parameters(), *net.buffers()))
        cached = self._prepared.get(id(net))
        if cached is None or cached[1] != version:  # the cache holds ``net`` itself, so its id cannot be reused
            fast = fold_batchnorm(net)  # a copy; BatchNorm's fp32 statistics folded into the convolutions
            if self.bf16:
                for p in fast.parameters():  # weights only, as autocast casts them; buffers (mean/std) stay fp32
                    p.data = p.data.to(torch.bfloat16)
            if self.compile:
                fast = FrozenGraph(fast)
            self._prepared[id(net)] = cached = (net, version, fast)
        return cached[2]

    @property
    def stages(self) -> int:
        return 1 + len(self.refiners)

    def first_pose(self, dataset: PoseDataset, boxes: np.ndarray | None = None) -> np.ndarray:
        """Stage 1's (N, 14, 2) poses with this cascade's test-time settings (flip averaging, bf16, box views)."""
        return predict_stage1(self.runnable(self.stage1), dataset, self.stage1_size, boxes, flip_test=self.flip_test,
                              bf16=self.bf16, views=self.stage1_views)

    def refined(self, refiner: nn.Module, dataset: PoseDataset, previous: np.ndarray, floors: np.ndarray
                ) -> np.ndarray:
        """One refinement stage applied to ``previous`` with this cascade's σ, crop size and settings."""
        return refine(self.runnable(refiner), dataset, previous, self.sigma, self.refine_size, floors, bf16=self.bf16,
                      flip_test=self.flip_test, views=self.refine_views)

    def predict(self, dataset: PoseDataset, boxes: np.ndarray | None = None, stages: int | None = None) -> np.ndarray:
        """(S, N, 14, 2) poses in image pixels after each stage: the whole trajectory, for reports and widgets."""
        poses = [self.first_pose(dataset, boxes)]
        floors = diam_floors(dataset, boxes)
        for refiner in self.refiners[: (stages or self.stages) - 1]:
            poses.append(self.refined(refiner, dataset, poses[-1], floors))
        return np.stack(poses)
