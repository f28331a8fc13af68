"""Boxes, the one affine warp per crop, the paper's normalisation N and its inverse, and augmentation.

A box is a float array ``[cx, cy, w, h]`` in internal pixel coordinates (see ``sample.py``).
Every crop is made by ONE 3×3 matrix that maps image coordinates to crop coordinates; the same matrix
moves the joints, so image and labels cannot disagree. Augmentation (box jitter, rotation, flip) is
composed into that matrix rather than applied as separate resamplings.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .skeleton import FLIP, torso_diameter

FILL_VALUE = (0, 0, 0)


def make_box(cx: float, cy: float, w: float, h: float) -> np.ndarray:
    """A box [cx, cy, w, h]; refuses empty or non-finite boxes, which would divide by zero in N."""
    box = np.array([cx, cy, w, h], dtype=np.float64)
    if not (math.isfinite(box.sum()) and w > 0 and h > 0):  # scalar checks: this runs for every training crop
        raise ValueError(f"box must be finite with positive size, got {box.tolist()}")
    return box


def box_from_corners(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """A box from its corners (x0, y0) top-left and (x1, y1) bottom-right, as a user types it.

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    return make_box((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0)


def box_corners(box: np.ndarray) -> np.ndarray:
    """[x0, y0, x1, y1] of a box [cx, cy, w, h]: the inverse of ``box_from_corners`` (how ``--box`` is typed)."""
    box = np.asarray(box, dtype=np.float64)
    return np.concatenate([box[:2] - box[2:] / 2, box[:2] + box[2:] / 2])


def square_box(box: np.ndarray) -> np.ndarray:
    """Pad the shorter side so the box is square (the network input is square; no aspect distortion)."""
    side = max(box[2], box[3])
    return make_box(box[0], box[1], side, side)


def image_box(height: int, width: int) -> np.ndarray:
    """The test-time box that uses no ground truth: the whole image, padded to a square (as the paper did on LSP).

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    return square_box(make_box(width / 2, height / 2, width, height))


def person_box(joints: np.ndarray, visible: np.ndarray | None = None, margin: float = 0.15) -> np.ndarray:
    """The training box: the joints' extremes, widened by ``margin`` of the larger side on every edge, squared.

    Only visible joints count when at least two are visible (unannotated LSP-extended joints can lie far
    outside the image); otherwise all joints do.

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    pts = joints
    if visible is not None and int(np.sum(visible)) >= 2:
        pts = joints[visible]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    side = max(float(np.max(hi - lo)), 1.0) * (1.0 + 2.0 * margin)
    centre = (lo + hi) / 2.0
    return make_box(centre[0], centre[1], side, side)


MIN_DIAM = 1.0  # pixels: the last-resort floor of diam(y), so a collapsed pose still gets a box


def box_side(pose: np.ndarray, sigma: float, min_diam: np.ndarray | float = MIN_DIAM) -> np.ndarray:
    """σ·diam(y), the side of a refinement box, for (..., 14, 2) poses: the ONE definition that refinement, its
    training crops, the widgets and ``predict`` all use. diam is floored at ``min_diam`` pixels (one value or one
    per pose), and never below ``MIN_DIAM``."""
    return sigma * np.maximum(torso_diameter(pose), np.maximum(min_diam, MIN_DIAM))


def cascade_boxes(pose: np.ndarray, sigma: float, min_diam: float = MIN_DIAM) -> np.ndarray:
    """One σ·diam box per joint of a (14, 2) pose, as a (14, 4) array (side from ``box_side``)."""
    side = float(box_side(pose, sigma, min_diam))
    return np.column_stack([pose[:, 0], pose[:, 1], np.full(len(pose), side), np.full(len(pose), side)])


def normalise(joints: np.ndarray, box: np.ndarray) -> np.ndarray:
    """N(y; b) = (y − b_c) / (b_w, b_h): inside the box, coordinates lie in [−0.5, 0.5].

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    return (np.asarray(joints, dtype=np.float64) - box[:2]) / box[2:]


def inside_box(normalised: np.ndarray) -> np.ndarray:
    """For (..., 2) normalised coordinates: which lie inside their box (|u| ≤ 0.5 on both axes), i.e. in the crop."""
    return (np.abs(normalised) <= 0.5).all(axis=-1)


def denormalise(normalised: np.ndarray, box: np.ndarray) -> np.ndarray:
    """N⁻¹(u; b) = u · (b_w, b_h) + b_c, the exact inverse of ``normalise``.

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    return np.asarray(normalised, dtype=np.float64) * box[2:] + box[:2]


# --- affine matrices (3×3, acting on column vectors [x, y, 1]) -------------------------------------

def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def scaling(sx: float, sy: float) -> np.ndarray:
    return np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])


def rotation(degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def box_to_crop(box: np.ndarray, size: int, degrees: float = 0.0) -> np.ndarray:
    """The matrix taking image coordinates to crop coordinates: the box fills the size×size crop.

    In crop coordinates a point p maps to normalised coordinates p / size − 0.5 = N(y; b), with the box's
    own width and height as separate x and y scales. ``degrees`` first rotates the image about the box
    centre. Written out in closed form, translation(size/2) · scaling(size/box) · rotation · translation(−centre)
    (the tests check it against that product), because every training crop builds one.

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    kx, ky = size / float(box[2]), size / float(box[3])
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    cx, cy = float(box[0]), float(box[1])
    return np.array([[kx * c, 0.0 - kx * s, size / 2 - kx * (c * cx - s * cy)],  # 0.0 −: no −0 when unrotated
                     [ky * s, ky * c, size / 2 - ky * (s * cx + c * cy)],
                     [0.0, 0.0, 1.0]])


def horizontal_flip(size: int) -> np.ndarray:
    """Mirror crop coordinates: x → size − x. Labels must be swapped with ``flip_permutation`` as well."""
    return np.array([[-1.0, 0.0, float(size)], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 3×3 affine matrix to (..., 2) points, or a stack of B matrices (B, 3, 3) to (B, K, 2) points,
    each to its own (the cascade maps every crop's joints back in one call)."""
    pts = np.asarray(points, dtype=np.float64)
    if matrix.ndim == 3:
        return pts @ matrix[:, :2, :2].transpose(0, 2, 1) + matrix[:, None, :2, 2]
    return pts @ matrix[:2, :2].T + matrix[:2, 2]


def crop_to_normalised(points: np.ndarray, size: int) -> np.ndarray:
    """Crop pixel coordinates to the network's target space, the same space as N(y; b)."""
    return np.asarray(points, dtype=np.float64) / size - 0.5


def normalised_to_crop(normalised: np.ndarray, size: int) -> np.ndarray:
    """The network's normalised outputs as crop pixel coordinates (the inverse of ``crop_to_normalised``).

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    return (np.asarray(normalised, dtype=np.float64) + 0.5) * size


def with_spare_channel(rgb: np.ndarray) -> np.ndarray:
    """The same (H, W, 3) uint8 pixels, read-only, as a view into an (H, W, 4) array with an unused 4th byte.

    Data sets cache their images this way because OpenCV's bilinear warp is vectorised for one and four
    channels but not for three: ``warp_image`` warps the array under such a view, a faster crop for a third more
    memory (docs/performance.md). Anything else sees an ordinary, if not C-contiguous, RGB array.
    Any other array comes back as it is (read-only), for ``Sample`` to refuse with its own message.
    """
    ok = isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    view = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2RGBA)[..., :3] if ok else rgb
    view.setflags(write=False)
    return view


def spare_channel_base(image: np.ndarray) -> np.ndarray | None:
    """The (H, W, 4) array under a ``with_spare_channel`` view, or None for any other image."""
    base = image.base
    if (isinstance(base, np.ndarray) and base.dtype == np.uint8 and base.shape == (*image.shape[:2], 4)
            and base.strides == image.strides and base.ctypes.data == image.ctypes.data):
        return base
    return None


def warp_image(image: np.ndarray, matrix: np.ndarray, size: int, fill: tuple[int, int, int] = FILL_VALUE
               ) -> np.ndarray:
    """Resample ``image`` into a size×size crop with ONE bilinear warp; outside the image is ``fill``.

    OpenCV puts pixel centres at integer coordinates and we put them at +0.5, so the matrix is conjugated by
    that half-pixel shift; then the matrix that moves the joints also moves the pixels (tested with a single
    bright pixel). A sample within half a pixel of the image edge blends the edge pixel with ``fill``.
    OpenCV rather than Pillow because the training loop pays for this on every item: it is several
    times faster for the same bilinear result (within one grey level).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"warp_image needs a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    padded = spare_channel_base(image)
    source = np.ascontiguousarray(image) if padded is None else padded
    crop = cv2.warpAffine(source, opencv_matrix(matrix), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(*(float(v) for v in fill), 0.0))
    return crop if padded is None else cv2.cvtColor(crop, cv2.COLOR_RGBA2RGB)


def opencv_matrix(matrix: np.ndarray) -> np.ndarray:
    """The 2×3 matrix OpenCV's warps want for our image → crop ``matrix``: OpenCV puts pixel centres at integer
    coordinates and we at +0.5, so it is translation(−0.5, −0.5) · matrix · translation(0.5, 0.5), written out."""
    opencv = np.array(matrix[:2], dtype=np.float64)
    opencv[:, 2] += 0.5 * (opencv[:, 0] + opencv[:, 1]) - 0.5
    return opencv


# --- augmentation ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Augmentation:
    """Ranges for the random affine augmentation; ``Augmentation.none()`` is what validation and test use.

    Introduced in ``notebooks/02_cropping.ipynb``.
    """

    shift: float = 0.0  # box centre moves by up to this fraction of the box size
    scale: float = 0.0  # box side multiplied by a factor in [1 − scale, 1 + scale]
    rotate: float = 0.0  # degrees, uniform in [−rotate, rotate]
    flip: bool = False  # horizontal flip with probability 0.5
    colour: float = 0.0  # per-channel gain in [1 − colour, 1 + colour], plus brightness noise
    surround: float = 0.0  # stage 1: with this probability, what lies outside the image shows another one

    @staticmethod
    def none() -> Augmentation:
        return Augmentation()

    @functools.cached_property
    def is_identity(self) -> bool:  # cached: asked for every training crop
        return self == Augmentation.none()


@dataclass(frozen=True)
class CropTransform:
    """What one crop did: the image→crop matrix, whether labels were flipped (for joint relabelling), and the
    colour noise still to apply (``colour_jitter``; None for none)."""

    matrix: np.ndarray
    flipped: bool
    size: int
    colour: np.ndarray | None = None


def crop_transform(box: np.ndarray, size: int, aug: Augmentation = Augmentation(),
                   rng: np.random.Generator | None = None) -> CropTransform:
    """Compose box jitter, rotation about the box centre and a flip into one image→crop matrix; draw the
    colour noise too (it moves no joint).

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    if aug.is_identity:
        return CropTransform(box_to_crop(box, size), False, size)
    if rng is None:
        raise ValueError("random augmentation needs an explicit numpy Generator (rng)")
    shift = rng.uniform(-aug.shift, aug.shift, size=2)
    factor = rng.uniform(1.0 - aug.scale, 1.0 + aug.scale)
    angle = rng.uniform(-aug.rotate, aug.rotate)
    flipped = bool(aug.flip and rng.random() < 0.5)
    colour = colour_jitter(aug.colour, rng) if aug.colour > 0 else None
    return chosen_transform(box, size, shift, factor, angle, flipped, colour)[0]


def chosen_transform(box: np.ndarray, size: int, shift: tuple[float, float] | np.ndarray = (0.0, 0.0),
                     scale: float = 1.0, rotate: float = 0.0, flip: bool = False,
                     colour: np.ndarray | None = None) -> tuple[CropTransform, np.ndarray]:
    """The augmentation ``crop_transform`` draws, with given values (the crop explorer's sliders): the box centre
    moved by ``shift`` box sizes, its side times ``scale``, the image rotated by ``rotate`` degrees about the moved
    box's centre, then mirrored when ``flip``. Returns the transform and the moved box."""
    moved = make_box(box[0] + shift[0] * box[2], box[1] + shift[1] * box[3], box[2] * scale, box[3] * scale)
    matrix = box_to_crop(moved, size, rotate)
    if flip:
        matrix = horizontal_flip(size) @ matrix
    return CropTransform(matrix, bool(flip), size, colour), moved


def transform_joints(t: CropTransform, joints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Joints and visibility in crop coordinates, left/right relabelled when the crop was flipped.

    Returns new arrays; the inputs (often a data set's cached arrays) are never modified.
    """
    moved = apply_affine(t.matrix, joints)
    vis = np.array(visible, dtype=bool, copy=True)
    if t.flipped:
        moved, vis = moved[FLIP], vis[FLIP]
    return moved, vis


def crop_sample(image: np.ndarray, joints: np.ndarray, visible: np.ndarray, box: np.ndarray, size: int,
                aug: Augmentation = Augmentation(), rng: np.random.Generator | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, CropTransform]:
    """Crop + normalised target in one go: (crop uint8, N-space joints (14, 2), visibility, transform).

    The crop is not coloured yet: ``t.colour`` is applied to the whole float batch by ``crops.model_input``,
    which costs a third of what a per-crop lookup table did.

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    t = crop_transform(box, size, aug, rng)
    crop = warp_image(image, t.matrix, size)
    moved, vis = transform_joints(t, joints, visible)
    return crop, crop_to_normalised(moved, size), vis, t


def colour_jitter(amount: float, rng: np.random.Generator) -> np.ndarray:
    """Photometric noise that moves no joint, as (4,) float32: a per-channel gain in [1 − amount, 1 + amount]
    for red, green, blue, then a brightness offset of up to ``amount``·255 grey levels (``crops.model_input``
    applies it and clips to the valid range)."""
    jitter = np.empty(4, dtype=np.float32)
    jitter[:3] = rng.uniform(1.0 - amount, 1.0 + amount, size=3)
    jitter[3] = rng.uniform(-amount, amount) * 255.0
    return jitter


def uncrop_joints(normalised: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Network output (N-space, crop of ``matrix``) back to IMAGE coordinates: N⁻¹ through the inverse warp.

    Also for a batch: (B, K, 2) outputs of B crops with their (B, 3, 3) matrices.

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    return apply_affine(np.linalg.inv(matrix), normalised_to_crop(normalised, size))
