"""Training items: every stage learns from (crop, normalised target, per-joint weight) triples.

Stage 1 and the cascade stages differ only in WHERE the box is (the person for stage 1, a σ·diam square
around a displaced joint for stage s) and WHICH joints the loss looks at (all visible ones for stage 1,
only joint i for the crop around joint i). Everything else, the one-warp crop, the augmentation and the
batching, is this one mechanism, so a fix here fixes every stage.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
import torch

from .datasets import PoseDataset
from .geometry import Augmentation, box_to_crop, crop_sample, image_box, make_box, person_box, square_box, warp_image
from .sample import Sample
from .skeleton import NUM_JOINTS, joint_index

T = TypeVar("T")
_DONE: Any = object()  # end-of-iteration marker for ``prefetched``


@dataclass(frozen=True)
class CropItem:
    """One training example: a uint8 crop (S, S, 3), targets N(y; b) (14, 2), loss weights (14,) and the
    colour noise ``model_input`` applies to it in the step (``geometry.colour_jitter``; None for none)."""

    crop: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    colour: np.ndarray | None = None


class CropSource(Protocol):
    """Anything the training loop can draw items from: stage 1's person crops or a cascade stage's boxes."""

    size: int

    def __len__(self) -> int: ...

    def item(self, index: int, rng: np.random.Generator | None) -> CropItem: ...


def inference_box(sample: Sample, user_box: np.ndarray | None = None) -> np.ndarray:
    """The stage-1 box at test time: a user-given box, else the whole image, squared; never the labels.

    A user box is padded to a square like every training box, so a tall person box is not squeezed sideways
    into a crop the network never saw in training.
    """
    if user_box is None:
        return image_box(sample.height, sample.width)
    return square_box(np.asarray(user_box, dtype=np.float64))


def box_views(box: np.ndarray, scale: float = 0.0, shift: float = 0.0) -> np.ndarray:
    """(V, 4) boxes a stage looks through at test time: ``box`` itself, and with ``scale`` > 0 its side also
    ×(1 − scale) and ×(1 + scale), each with ``shift`` > 0 also moved left, right, up and down by ``shift`` of
    its side: 1, 3, 5 or 15 views. Training jittered every box; averaging the views averages out where one box
    happens to put the person (docs/accuracy.md, "Stage 1 averaged over jittered boxes")."""
    if not (0.0 <= scale < 1.0 and 0.0 <= shift < 1.0):
        raise ValueError(f"box views need 0 <= scale < 1 and 0 <= shift < 1, got scale {scale}, shift {shift}")
    scales = [1.0, 1.0 - scale, 1.0 + scale] if scale > 0 else [1.0]
    moves = [(0.0, 0.0), (-shift, 0.0), (shift, 0.0), (0.0, -shift), (0.0, shift)] if shift > 0 else [(0.0, 0.0)]
    return np.array([[box[0] + dx * box[2] * s, box[1] + dy * box[3] * s, box[2] * s, box[3] * s]
                     for s in scales for dx, dy in moves])


def view_count(scale: float = 0.0, shift: float = 0.0) -> int:
    """How many boxes ``box_views`` gives for ``scale`` and ``shift``: 1 is the paper's one box."""
    return len(box_views(np.ones(4), scale, shift))


def training_box(sample: Sample, kind: str, margin: float, framing: str = "image") -> np.ndarray:
    """The stage-1 training box: ``image`` matches what test time will see, ``person`` is the joints' extent
    widened by ``margin``; ``auto`` is ``image`` for a sample whose data set frames people as the test images do
    (``framing == "image"``, LSP) and ``person`` otherwise (LSP-extended), so every crop shows the test framing."""
    if kind == "image" or (kind == "auto" and framing == "image"):
        return inference_box(sample)
    return person_box(sample.joints, sample.visible, margin)


def training_boxes(dataset: PoseDataset, kind: str, margin: float) -> np.ndarray:
    """(N, 4) unjittered ``training_box`` of every sample: where stage 1 looks at each training image when the
    cascade's training data and the mean-pose baseline are made, as its crops were framed."""
    return np.stack([training_box(dataset[n], kind, margin, dataset.framing_of(n)) for n in range(len(dataset))])


def loss_weight(visible: np.ndarray, mask_hidden: bool) -> np.ndarray:
    """1 for joints the loss counts; hidden joints get 0 when masking is on."""
    return (visible if mask_hidden else np.ones_like(visible)).astype(np.float32)


class PersonCrops:
    """Stage-1 items: the whole person (or image) box, all joints as targets."""

    def __init__(self, dataset: PoseDataset, size: int, augment: Augmentation, box: str = "image",
                 margin: float = 0.15, mask_hidden: bool = True, arm_weight: float = 1.0) -> None:
        self.dataset, self.size, self.augment = dataset, size, augment
        self.box, self.margin, self.mask_hidden = box, margin, mask_hidden
        self.joint_weight = np.ones(NUM_JOINTS, np.float32)  # elbows and wrists at arm_weight, the rest at 1
        self.joint_weight[list(joint_index("r_wrist", "r_elbow", "l_elbow", "l_wrist"))] = arm_weight
        self._boxes: dict[int, np.ndarray] = {}  # each image's box, made once: it depends on the sample alone

    def __len__(self) -> int:
        return len(self.dataset)

    def item(self, index: int, rng: np.random.Generator | None) -> CropItem:
        sample = self.dataset[index]
        aug = self.augment if rng is not None else Augmentation.none()
        box = self._boxes.get(index)
        if box is None:
            box = self._boxes[index] = training_box(sample, self.box, self.margin, self.dataset.framing_of(index))
            box.setflags(write=False)
        crop, target, vis, t = crop_sample(sample.image, sample.joints, sample.visible, box, self.size, aug, rng)
        if rng is not None and aug.surround and rng.random() < aug.surround:
            crop = self.surrounded(crop, t.matrix, sample, rng)
        weight = self.joint_weight * loss_weight(vis, self.mask_hidden)
        return CropItem(crop, target.astype(np.float32), weight, t.colour)

    def surrounded(self, crop: np.ndarray, matrix: np.ndarray, sample: Sample, rng: np.random.Generator
                   ) -> np.ndarray:
        """``crop`` with the part outside its image filled from a random region of another training image.

        A jittered box over an LSP image shows flat fill beyond the image's edge, while a detector's box in a photo
        shows the scene around the person: this teaches the second (``augment.surround``, issue 16)."""
        outside = outside_image(matrix, self.size, sample.height, sample.width)
        if not outside.any():
            return crop
        other = self.dataset[int(rng.integers(len(self.dataset)))]
        side = min(other.height, other.width) * rng.uniform(0.3, 1.0)
        cx, cy = rng.uniform(side / 2, other.width - side / 2), rng.uniform(side / 2, other.height - side / 2)
        scene = warp_image(other.image, box_to_crop(make_box(cx, cy, side, side), self.size), self.size)
        out = crop.copy()
        out[outside] = scene[outside]
        return out


def outside_image(matrix: np.ndarray, size: int, height: int, width: int) -> np.ndarray:
    """(size, size) bool: the crop pixels whose centre comes from outside a height×width image (``matrix``:
    image → crop, pixel centres at +0.5, as ``geometry.warp_image`` has them): the pixels it fills."""
    inverse = np.linalg.inv(matrix)
    centre = np.arange(size) + 0.5
    u, v = centre[None, :], centre[:, None]
    x = inverse[0, 0] * u + inverse[0, 1] * v + inverse[0, 2]
    y = inverse[1, 0] * u + inverse[1, 1] * v + inverse[1, 2]
    return (x < 0) | (x > width) | (y < 0) | (y > height)


NO_COLOUR = np.array([1.0, 1.0, 1.0, 0.0], dtype=np.float32)  # gains 1, offset 0


def model_input(pixels: torch.Tensor, colour: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (B, S, S, 3) crops to float (B, 3, S, S) in [0, 1], the model's input, channels_last in memory, on
    ``pixels``' device.

    ``colour`` (B, 4) from ``geometry.colour_jitter`` scales each crop's channels and shifts its brightness,
    clipped to [0, 1]: on the whole batch in place, because it is three passes over floats the conversion makes
    anyway (per crop it was a lookup table that cost as much as a third of the warp). The training step calls
    this, not the data pass: the crops travel as uint8 (a quarter of the bytes to a GPU), and the conversion runs
    on torch's threads where the step runs, which left the one-core data pass a quarter faster (docs/performance.md).
    On a GPU, torch divides by multiplying with the reciprocal, so a GPU run's inputs may differ from a CPU run's
    in the last bit (its convolutions differ more).
    """
    x = pixels.to(torch.float32, memory_format=torch.contiguous_format, copy=True)  # exact; the caller's stays
    if colour is None:
        x.div_(255.0)
    else:  # each row of a crop is (r, g, b) × S in memory: gains tiled to a row broadcast fast, per channel not
        b, height, width, _ = x.shape
        c = colour.to(x.device, torch.float32) / 255.0
        rows = x.view(b, height, width * 3)
        torch.addcmul(c[:, None, 3:], rows, c[:, None, :3].repeat(1, 1, width), out=rows).clamp_(0.0, 1.0)
    return x.permute(0, 3, 1, 2)


class Batch(NamedTuple):
    """One collated batch as the data pass leaves it: the crops still uint8 (B, S, S, 3), each crop's colour noise
    (B, 4) or None for none, targets (B, 14, 2) and loss weights (B, 14). ``inputs`` makes the model's input."""

    pixels: torch.Tensor
    colour: torch.Tensor | None
    target: torch.Tensor
    weight: torch.Tensor

    def inputs(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The float model input on ``device``: the uint8 crops moved there, then converted (``model_input``)."""
        colour = None if self.colour is None else self.colour.to(device, non_blocking=True)
        return model_input(self.pixels.to(device, non_blocking=True), colour)


def collate(items: Sequence[CropItem]) -> Batch:
    colours = [it.colour for it in items]
    colour = None if all(c is None for c in colours) else np.stack([NO_COLOUR if c is None else c for c in colours])
    return Batch(torch.from_numpy(np.stack([it.crop for it in items])),
                 None if colour is None else torch.from_numpy(colour.astype(np.float32, copy=False)),
                 torch.from_numpy(np.stack([it.target for it in items])),
                 torch.from_numpy(np.stack([it.weight for it in items])))


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The item order of one epoch, a function of (seed, epoch) alone so a resumed run repeats it exactly."""
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([seed, epoch, 0]).permutation(n)


def prefetched(items: Iterator[T]) -> Iterator[T]:
    """The same items in the same order, the next one made in a helper thread while the caller uses this one.

    OpenCV's warp and torch's kernels release the GIL, so cropping the next batch overlaps the training
    step on this one; the items do not change (each one's randomness depends on its index alone).
    Exceptions from the producer surface here, at the item that raised them.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(next, items, _DONE)
        while (item := pending.result()) is not _DONE:
            pending = pool.submit(next, items, _DONE)
            yield item


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Item ``index``'s random stream in ``epoch``: ``default_rng([seed, epoch, 1, index])``, built from a uint32
    array when the numbers fit, which gives the same stream faster (NumPy checks a list's Python ints one by one,
    and this runs for every training crop)."""
    key = (seed, epoch, 1, index)
    return np.random.default_rng(np.array(key, np.uint32) if 0 <= min(key) and max(key) < 2**32 else list(key))


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def helper_has_a_core(device: torch.device) -> bool:
    """Whether a ``prefetched`` helper thread overlaps the training step rather than competing with it: yes on a
    GPU, or where torch's threads (times the processes torchrun started on this machine) leave a core free.

    Where every core runs the step, the helper steals one in the middle of its parallel loops, and training was
    slower with it than without (docs/performance.md).
    """
    if device.type != "cpu":
        return True
    return torch.get_num_threads() * int(os.environ.get("LOCAL_WORLD_SIZE", "1")) < usable_cores()


def batches(source: CropSource, indices: np.ndarray, batch_size: int, seed: int | None = None, epoch: int = 0
            ) -> Iterator[Batch]:
    """Collated batches over ``indices``, crops still uint8; ``seed`` None means no augmentation (validation and
    test).

    Each item's random stream depends on (seed, epoch, index) only: the same crop comes out whatever the
    batch size, the order, or how many processes share the work.
    """
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        items = [source.item(int(i), None if seed is None else item_rng(seed, epoch, int(i))) for i in chunk]
        yield collate(items)
