"""Procedurally drawn articulated people with LSP's 14 joints: the data set that needs no download.

Demos, notebooks and tests must run where LSP is absent, so this module draws LSP-like crops: one person
roughly filling an image of 96–200 px per side, limbs as capsules (thick segments with round caps), a
trapezoid torso, an elliptic head with a face or hair that tells front from back, on cluttered textured
backgrounds with limb-like distractors.

Labels are cheap and exact because they come from geometry, not pixels: all poses of a data set are made at
construction, vectorised over samples. Visibility is honest: body parts are drawn in a depth order, and a
joint is hidden when a part drawn AFTER the part that shows it covers it (computed from the same shapes that
are drawn), or when it lies outside the image. Images are rendered lazily and deterministically from
(seed, stream, i), so sample i is the same whatever order images are requested in and whatever ``n`` is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, fields

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .datasets import PoseDataset, readonly
from .skeleton import JOINT_NAMES, NUM_JOINTS

BLOCK = 256  # poses are generated in blocks of this many, each from its own seed: sample i never depends on n
MIN_SIDE, MAX_SIDE = 96, 200  # image side range in pixels (LSP images are 57–202 px)
COVER_MARGIN = 1.0  # px a later part must reach past a joint to hide it; closer calls stay visible
LABEL_TAG, RENDER_TAG = 0, 1  # keep the label and rendering random streams apart

# Body parts in the units that are drawn (and ordered in depth) as one.
PARTS: tuple[str, ...] = (
    "r_thigh", "r_shin", "l_thigh", "l_shin", "r_upper_arm", "r_forearm", "l_upper_arm", "l_forearm", "torso", "head",
)
R_THIGH, R_SHIN, L_THIGH, L_SHIN, R_UPPER, R_FORE, L_UPPER, L_FORE, TORSO, HEAD = range(len(PARTS))

# The part that shows each joint (the last-drawn limb segment ending there): only parts drawn after it can hide it.
OWNER_BY_NAME = {"r_ankle": R_SHIN, "r_knee": R_SHIN, "r_hip": R_THIGH, "l_hip": L_THIGH, "l_knee": L_SHIN,
                 "l_ankle": L_SHIN, "r_wrist": R_FORE, "r_elbow": R_FORE, "r_shoulder": R_UPPER, "l_shoulder": L_UPPER,
                 "l_elbow": L_FORE, "l_wrist": L_FORE, "neck": HEAD, "head_top": HEAD}
JOINT_OWNER = np.array([OWNER_BY_NAME[name] for name in JOINT_NAMES])

# Capsules: (name, part, colour role). Within a part they are drawn in this order.
CAPSULES: tuple[tuple[str, int, str], ...] = (
    ("r_thigh", R_THIGH, "pants"), ("r_shin", R_SHIN, "shin"), ("r_foot", R_SHIN, "shoe"),
    ("l_thigh", L_THIGH, "pants"), ("l_shin", L_SHIN, "shin"), ("l_foot", L_SHIN, "shoe"),
    ("r_upper_arm", R_UPPER, "sleeve"), ("r_forearm", R_FORE, "forearm"), ("r_hand", R_FORE, "skin"),
    ("l_upper_arm", L_UPPER, "sleeve"), ("l_forearm", L_FORE, "forearm"), ("l_hand", L_FORE, "skin"),
    ("spine", TORSO, "shirt"), ("neck", TORSO, "skin"),
)
CAPSULE_PART = np.array([part for _, part, _ in CAPSULES])
TORSO_CORNERS = (8, 9, 3, 2)  # r_shoulder, l_shoulder, l_hip, r_hip: a trapezoid in every view

# Angle distributions in degrees as (weight, low, high) mixtures. Limb angles are measured from straight down,
# positive towards the limb's own side; negative angles cross in front of or behind the body.
FACING = ((0.45, -30, 30), (0.20, 150, 210), (0.35, 0, 360))  # yaw: 0 faces the camera, 180 shows the back
ARM_ANGLE = ((0.45, -15, 50), (0.20, 50, 110), (0.22, 110, 190), (0.13, -75, -15))
ELBOW_BEND = ((0.45, 0, 30), (0.55, 30, 150))
LEG_ANGLE = ((0.70, -12, 40), (0.18, 40, 100), (0.12, -45, -12))
KNEE_BEND = ((0.55, 0, 25), (0.45, 25, 140))
BODY_ROTATION = ((0.70, -12, 12), (0.20, -60, 60), (0.10, -180, 180))

SKIN_TONES = np.array([[255, 224, 196], [241, 194, 125], [224, 172, 105], [198, 134, 66], [141, 85, 36], [92, 57, 36]])
HAIR_COLOURS = np.array([[20, 16, 14], [60, 40, 25], [110, 75, 40], [200, 170, 110], [150, 150, 150], [120, 40, 20]])


@dataclass(frozen=True)
class Figures:
    """Everything about N drawn people that decides their labels, in internal pixel coordinates.

    The renderer draws exactly these shapes, so the visibility flags and the pixels cannot disagree.
    """

    joints: np.ndarray  # (N, 14, 2)
    visible: np.ndarray  # (N, 14) bool
    sizes: np.ndarray  # (N, 2) int: height, width
    cap_a: np.ndarray  # (N, C, 2) capsule start
    cap_b: np.ndarray  # (N, C, 2) capsule end
    cap_r: np.ndarray  # (N, C) capsule radius
    head_centre: np.ndarray  # (N, 2)
    head_axis: np.ndarray  # (N, 2) unit vector from neck to head top
    head_radii: np.ndarray  # (N, 2) semi-axes along and across head_axis
    depth: np.ndarray  # (N, P) larger = nearer the camera; parts are drawn in increasing depth
    facing: np.ndarray  # (N,) yaw in radians, 0 = facing the camera

    @property
    def rank(self) -> np.ndarray:
        """(N, P) position of each part in the drawing order (0 = drawn first)."""
        return np.argsort(np.argsort(self.depth, axis=1), axis=1)

    def __len__(self) -> int:
        return len(self.joints)


# --- random poses in body units (torso length 1, pelvis at the origin, y down) ------------------------

def _mixture(rng: np.random.Generator, n: int, parts: tuple[tuple[float, float, float], ...]) -> np.ndarray:
    """n draws from a mixture of uniforms, so common poses dominate while rare ones still occur."""
    table = np.array(parts, dtype=np.float64)
    pick = rng.choice(len(table), size=n, p=table[:, 0] / table[:, 0].sum())
    return rng.uniform(table[pick, 1], table[pick, 2])


def _signed(rng: np.random.Generator, n: int, parts: tuple[tuple[float, float, float], ...]) -> np.ndarray:
    """A mixture draw with a random sign: in a 2-D projection a joint can bend either way."""
    return _mixture(rng, n, parts) * rng.choice([-1.0, 1.0], size=n)


def _direction(angle: np.ndarray, outward: np.ndarray) -> np.ndarray:
    """Unit vectors at ``angle`` (radians) from straight down, turned towards x = ``outward`` (±1)."""
    return np.stack([outward * np.sin(angle), np.cos(angle)], axis=-1)


def _chain(rng: np.random.Generator, root: np.ndarray, outward: np.ndarray, lengths: np.ndarray,
           angle: tuple, bend: tuple) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A two-segment limb from ``root``: (middle joint, end joint, direction of the lower segment)."""
    n = len(root)
    upper = np.deg2rad(_mixture(rng, n, angle))
    lower = upper + np.deg2rad(_signed(rng, n, bend))
    mid = root + lengths[:, :1] * _direction(upper, outward)
    down = _direction(lower, outward)
    return mid, mid + lengths[:, 1:2] * down, down


def _foot(ankle: np.ndarray, shin_dir: np.ndarray, facing: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Toe position: the foot points the way the person faces (a left/right cue), foreshortened when frontal."""
    side = np.abs(np.sin(facing))[:, None]
    perp = np.stack([-shin_dir[:, 1], shin_dir[:, 0]], axis=-1)
    perp *= np.where(perp[:, :1] * np.sin(facing)[:, None] >= 0, 1.0, -1.0)
    return ankle + length[:, None] * (side * perp + (1 - side) * 0.5 * shin_dir)


def _body(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Joints, capsules, head and part depths of n random people in body units."""
    u = rng.uniform
    facing = np.deg2rad(_mixture(rng, n, FACING))
    lateral = -np.cos(facing)  # the right side's x factor: right is on image left when facing the camera
    out_r = np.where(lateral < 0, -1.0, 1.0)
    tilt_s, tilt_h = np.deg2rad(rng.normal(0, 6, (2, n)))
    half_s = (lateral * u(0.70, 0.95, n) / 2)[:, None] * np.stack([np.cos(tilt_s), np.sin(tilt_s)], -1)
    half_h = (lateral * u(0.42, 0.60, n) / 2)[:, None] * np.stack([np.cos(tilt_h), np.sin(tilt_h)], -1)
    mid_s, mid_h = np.tile([0.0, -1.0], (n, 1)), np.zeros((n, 2))
    sh_r, sh_l, hip_r, hip_l = mid_s + half_s, mid_s - half_s, mid_h + half_h, mid_h - half_h
    neck = mid_s + u(0.12, 0.22, n)[:, None] * _direction(np.pi + np.deg2rad(rng.normal(0, 10, n)), 1.0)
    head_len = u(0.48, 0.60, n)
    head_top = neck + head_len[:, None] * _direction(np.pi + np.deg2rad(rng.normal(0, 15, n)), 1.0)

    arm_len = np.stack([u(0.55, 0.70, n), u(0.50, 0.65, n)], -1)  # shared by both arms: one person, one build
    leg_len = np.stack([u(0.80, 1.00, n), u(0.80, 1.00, n)], -1)
    elbow_r, wrist_r, fore_dir_r = _chain(rng, sh_r, out_r, arm_len, ARM_ANGLE, ELBOW_BEND)
    elbow_l, wrist_l, fore_dir_l = _chain(rng, sh_l, -out_r, arm_len, ARM_ANGLE, ELBOW_BEND)
    knee_r, ankle_r, shin_dir_r = _chain(rng, hip_r, out_r, leg_len, LEG_ANGLE, KNEE_BEND)
    knee_l, ankle_l, shin_dir_l = _chain(rng, hip_l, -out_r, leg_len, LEG_ANGLE, KNEE_BEND)
    joints = np.stack([ankle_r, knee_r, hip_r, hip_l, knee_l, ankle_l,
                       wrist_r, elbow_r, sh_r, sh_l, elbow_l, wrist_l, neck, head_top], axis=1)

    foot_len, hand_len = u(0.22, 0.30, n), u(0.15, 0.22, n)
    ends = [  # (start, end) of every capsule, in CAPSULES order
        (hip_r, knee_r), (knee_r, ankle_r), (ankle_r, _foot(ankle_r, shin_dir_r, facing, foot_len)),
        (hip_l, knee_l), (knee_l, ankle_l), (ankle_l, _foot(ankle_l, shin_dir_l, facing, foot_len)),
        (sh_r, elbow_r), (elbow_r, wrist_r), (wrist_r, wrist_r + hand_len[:, None] * fore_dir_r),
        (sh_l, elbow_l), (elbow_l, wrist_l), (wrist_l, wrist_l + hand_len[:, None] * fore_dir_l),
        (mid_h, mid_s), (mid_s, neck),
    ]
    build = u(0.8, 1.3, n)[:, None]  # thin to stocky
    radius = np.stack([u(lo, hi, n) for lo, hi in ((0.13, 0.18), (0.09, 0.13), (0.07, 0.09)) * 2
                       + ((0.085, 0.12), (0.07, 0.10), (0.06, 0.08)) * 2 + ((0.17, 0.24), (0.08, 0.11))], -1)
    axis = (head_top - neck) / head_len[:, None]
    return {
        "joints": joints, "cap_a": np.stack([a for a, _ in ends], 1), "cap_b": np.stack([b for _, b in ends], 1),
        "cap_r": radius * build, "head_centre": (neck + head_top) / 2, "head_axis": axis,
        "head_radii": np.stack([head_len / 2, head_len / 2 * u(0.72, 0.88, n)], -1),
        "depth": _depths(rng, facing), "facing": facing,
    }


def _depths(rng: np.random.Generator, facing: np.ndarray) -> np.ndarray:
    """(N, P) depth per part: the side turned to the camera is nearer, with noise so arms can go behind the back.

    Torso at 0, head a little in front of it; a lower limb segment sits just in front of its upper segment so a
    limb is always drawn in one piece.
    """
    n = len(facing)
    near_r = np.sin(facing)  # > 0: the right side is turned towards the camera
    depth = np.zeros((n, len(PARTS)))
    for upper, lower, side, bias, spread in ((R_THIGH, R_SHIN, 1, 0.0, 0.3), (L_THIGH, L_SHIN, -1, 0.0, 0.3),
                                             (R_UPPER, R_FORE, 1, 0.2, 0.35), (L_UPPER, L_FORE, -1, 0.2, 0.35)):
        depth[:, upper] = side * near_r + bias + rng.normal(0, spread, n)
        depth[:, lower] = depth[:, upper] + 1e-3
    depth[:, HEAD] = 0.35  # in front of arms raised beside it, behind an arm on the side turned to the camera
    return depth


# --- from body units to an image --------------------------------------------------------------------

def _rotate_scale_shift(points: np.ndarray, rot: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Apply p → scale · R p + shift per sample to (N, ..., 2) points."""
    extra = (slice(None),) + (None,) * (points.ndim - 2)
    moved = np.einsum("nij,n...j->n...i", rot, points)
    return scale[extra][..., None] * moved + shift[extra]


def _place(rng: np.random.Generator, body: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rotate the whole body, scale the person to ~100–185 px and crop around them with varied margins.

    LSP images are crops around one person, so the figure fills the image; a margin is now and then negative,
    and clamping to MAX_SIDE can cut a limb, which puts a few joints outside the image (hence not visible).
    """
    n = len(body["joints"])
    theta = np.deg2rad(_mixture(rng, n, BODY_ROTATION))
    rot = np.stack([np.stack([np.cos(theta), -np.sin(theta)], -1), np.stack([np.sin(theta), np.cos(theta)], -1)], 1)
    one = np.ones(n)
    turned = {k: _rotate_scale_shift(body[k], rot, one, np.zeros((n, 2)))
              for k in ("joints", "cap_a", "cap_b", "head_centre", "head_axis")}
    r = body["cap_r"][..., None]
    head_reach = body["head_radii"][:, :1]
    lo = np.minimum(np.min(np.minimum(turned["cap_a"], turned["cap_b"]) - r, 1), turned["head_centre"] - head_reach)
    hi = np.maximum(np.max(np.maximum(turned["cap_a"], turned["cap_b"]) + r, 1), turned["head_centre"] + head_reach)
    person = rng.uniform(100, 185, n)
    scale = person / np.max(hi - lo, axis=1)
    margins = rng.uniform(0.01, 0.12, (n, 2, 2))  # (before, after) per axis, as a fraction of the person
    margins = np.where(rng.random((n, 2, 2)) < 0.04, rng.uniform(-0.08, 0.0, (n, 2, 2)), margins)
    margins *= person[:, None, None]
    want = (hi - lo) * scale[:, None] + margins.sum(axis=2)
    sizes = np.clip(np.round(want), MIN_SIDE, MAX_SIDE).astype(np.int64)  # (width, height)
    before = margins[:, :, 0] + (sizes - want) * rng.uniform(0.2, 0.8, (n, 2))
    shift = before - lo * scale[:, None]
    placed = {k: _rotate_scale_shift(turned[k], np.tile(np.eye(2), (n, 1, 1)), scale, shift)
              for k in ("joints", "cap_a", "cap_b", "head_centre")}
    return {**placed, "sizes": sizes[:, ::-1].copy(), "cap_r": body["cap_r"] * scale[:, None],
            "head_radii": body["head_radii"] * scale[:, None], "head_axis": turned["head_axis"],
            "depth": body["depth"], "facing": body["facing"]}


# --- occlusion from geometry ------------------------------------------------------------------------

def capsule_depth(points: np.ndarray, a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    """How far (px) each point lies inside each capsule: (N, J, 2) points, (N, C) capsules → (N, J, C).

    Positive inside, negative outside; the distance to the segment minus the radius, with its sign flipped.
    """
    p = points[:, :, None, :]
    a, ab = a[:, None], (b - a)[:, None]
    t = np.clip(np.sum((p - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0.0, 1.0)
    return r[:, None] - np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def polygon_depth(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Signed distance (px, positive inside) of (N, J, 2) points to a simple (N, V, 2) polygon → (N, J)."""
    p = points[:, :, None, :]
    v0, v1 = polygon[:, None], np.roll(polygon, -1, axis=1)[:, None]
    edge = v1 - v0
    t = np.clip(np.sum((p - v0) * edge, -1) / np.maximum(np.sum(edge * edge, -1), 1e-12), 0.0, 1.0)
    dist = np.linalg.norm(p - (v0 + t[..., None] * edge), axis=-1).min(axis=2)
    y0, y1, py = v0[..., 1], v1[..., 1], p[..., 1]
    spans = (y0 > py) != (y1 > py)
    x_cross = v0[..., 0] + (py - y0) / np.where(spans, y1 - y0, 1.0) * edge[..., 0]
    inside = (spans & (p[..., 0] < x_cross)).sum(axis=2) % 2 == 1
    return np.where(inside, dist, -dist)


def ellipse_depth(points: np.ndarray, centre: np.ndarray, axis: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Approximate signed depth (px) of (N, J, 2) points in rotated ellipses; exact sign, never overestimated."""
    rel = points - centre[:, None]
    along = np.sum(rel * axis[:, None], -1)
    across = rel[..., 0] * -axis[:, None, 1] + rel[..., 1] * axis[:, None, 0]
    rho = np.hypot(along / radii[:, None, 0], across / radii[:, None, 1])
    return (1.0 - rho) * radii.min(axis=1)[:, None]


def part_depths(fig: Figures, points: np.ndarray | None = None) -> np.ndarray:
    """(N, J, P): how far each point (default: the joints) lies inside each body part's drawn shape."""
    pts = fig.joints if points is None else points
    caps = capsule_depth(pts, fig.cap_a, fig.cap_b, fig.cap_r)
    out = np.full(pts.shape[:2] + (len(PARTS),), -np.inf)
    for c, part in enumerate(CAPSULE_PART):
        out[..., part] = np.maximum(out[..., part], caps[..., c])
    out[..., TORSO] = np.maximum(out[..., TORSO], polygon_depth(pts, fig.joints[:, TORSO_CORNERS]))
    out[..., HEAD] = ellipse_depth(pts, fig.head_centre, fig.head_axis, fig.head_radii)
    return out


def occluded(depths: np.ndarray, rank: np.ndarray, margin: float = COVER_MARGIN) -> np.ndarray:
    """(N, 14) True where a part drawn after a joint's owner part covers the joint by more than ``margin`` px."""
    later = rank[:, None, :] > rank[:, JOINT_OWNER][:, :, None]
    return np.any(later & (depths > margin), axis=2)


def inside_image(joints: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(N, 14) True where a joint lies on the image: 0 ≤ x < width and 0 ≤ y < height."""
    limit = sizes[:, None, ::-1]
    return np.all((joints >= 0) & (joints < limit), axis=2)


def _figure_block(rng: np.random.Generator, n: int) -> Figures:
    """n people drawn from one random stream, with visibility from the image border and the drawing order."""
    placed = _place(rng, _body(rng, n))
    fig = Figures(visible=np.ones((n, NUM_JOINTS), dtype=bool), **placed)
    hidden = occluded(part_depths(fig), fig.rank)
    return Figures(**{**{f.name: getattr(fig, f.name) for f in fields(Figures)},
                      "visible": inside_image(fig.joints, fig.sizes) & ~hidden})


def make_figures(n: int, seed: int = 0, stream: int = 0) -> Figures:
    """The labels and shapes of n people, read-only; block b has its own seed, so sample i does not depend on n."""
    blocks = [_figure_block(np.random.default_rng([seed, stream, LABEL_TAG, b]), BLOCK)
              for b in range(max(1, -(-n // BLOCK)))]
    joined = {f.name: readonly(np.concatenate([getattr(b, f.name) for b in blocks])[:n]) for f in fields(Figures)}
    return Figures(**joined)


# --- rendering --------------------------------------------------------------------------------------

def stadium(a: np.ndarray, b: np.ndarray, r: np.ndarray, steps: int = 8) -> np.ndarray:
    """Polygon outlines (C, 2·steps+2, 2) of capsules: one fill call per capsule, round caps included."""
    d = b - a
    heading = np.arctan2(d[:, 1], d[:, 0])[:, None]
    arc = np.linspace(-np.pi / 2, np.pi / 2, steps + 1)
    t_b, t_a = heading + arc, heading + arc + np.pi
    ring_b = b[:, None] + r[:, None, None] * np.stack([np.cos(t_b), np.sin(t_b)], -1)
    ring_a = a[:, None] + r[:, None, None] * np.stack([np.cos(t_a), np.sin(t_a)], -1)
    return np.concatenate([ring_b, ring_a], axis=1)


def ellipse_polygon(centre: np.ndarray, axis: np.ndarray, radii: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points at parameters ``t`` (0 = along ``axis``) on an ellipse, as (len(t), 2)."""
    across = np.array([-axis[1], axis[0]])
    return centre + np.outer(radii[0] * np.cos(t), axis) + np.outer(radii[1] * np.sin(t), across)


HEAD_STEPS = np.linspace(0, 2 * np.pi, 24, endpoint=False)


def person_shapes(fig: Figures, i: int) -> list[tuple[int, str, np.ndarray]]:
    """(part, colour role, polygon) for sample i in drawing order: back to front, shared by all renderers."""
    caps = stadium(fig.cap_a[i], fig.cap_b[i], fig.cap_r[i])
    out: list[tuple[int, str, np.ndarray]] = []
    for part in np.argsort(fig.depth[i]):
        if part == TORSO:
            out.append((TORSO, "shirt", fig.joints[i, TORSO_CORNERS]))
        if part == HEAD:
            out.append((HEAD, "head", ellipse_polygon(fig.head_centre[i], fig.head_axis[i], fig.head_radii[i],
                                                      HEAD_STEPS)))
        out += [(int(part), CAPSULES[c][2], caps[c]) for c in np.flatnonzero(CAPSULE_PART == part)]
    return out


def fill_polygon(draw: ImageDraw.ImageDraw, poly: np.ndarray, fill: int | tuple[int, int, int],
                 outline: tuple[int, int, int] | None = None) -> None:
    """Fill a (V, 2) polygon given in internal pixel coordinates.

    Pillow truncates vertex coordinates to pixel indices; with our convention (pixel c spans [c, c+1)) that
    is unbiased, so the coordinates are passed unchanged (tested: a capsule's pixels centre on the capsule).
    """
    draw.polygon(poly.ravel().tolist(), fill=fill, outline=outline)


def _colour(c: np.ndarray | list[float]) -> tuple[int, int, int]:
    """A Pillow colour from floats; plain Python because it runs ~50 times per image."""
    r, g, b = (min(255, max(0, int(v + 0.5))) for v in c)
    return (r, g, b)


NOISE_SIDE = MAX_SIDE + 56


@functools.cache
def noise_bank() -> np.ndarray:
    """A fixed (NOISE_SIDE, NOISE_SIDE, 3) field of standard normal noise, made once per process.

    Each image takes a random window of it: drawing fresh normals per image would cost more than the drawing.
    The field is seeded, so images stay a function of (seed, stream, i).
    """
    field = np.random.default_rng(20140623).standard_normal((NOISE_SIDE, NOISE_SIDE, 3), dtype=np.float32)
    field.setflags(write=False)
    return field


def noise_window(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random (h, w, 3) window of the noise bank, possibly mirrored so windows rarely repeat."""
    y, x = rng.integers(0, NOISE_SIDE - h + 1), rng.integers(0, NOISE_SIDE - w + 1)
    window = noise_bank()[y:y + h, x:x + w]
    return window[::-1] if rng.random() < 0.5 else window


def background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """Clutter to hide the person in: a two-colour gradient with soft blobs, plus stripes or coarse grain."""
    gh, gw = rng.integers(3, 8, 2)
    beta = rng.uniform(0, 2 * np.pi)
    ramp = np.linspace(0, 1, gw)[None, :] * np.cos(beta) + np.linspace(0, 1, gh)[:, None] * np.sin(beta)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = muted_colours(rng, 2)
    grid = c0 + ramp[..., None] * (c1 - c0) + rng.uniform(-1, 1, (gh, gw, 3)) * rng.uniform(20, 70)
    small = Image.fromarray(np.clip(grid, 0, 255).astype(np.uint8))
    img = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    if rng.random() < 0.35:
        gamma, period = rng.uniform(0, np.pi), rng.uniform(4, 20)
        xs, ys = np.arange(w, dtype=np.float32)[None, :], np.arange(h, dtype=np.float32)[:, None]
        wave = np.sin((xs * np.cos(gamma) + ys * np.sin(gamma)) * np.float32(2 * np.pi / period))
        img = img + wave[..., None] * rng.uniform(-25, 25, 3).astype(np.float32)
    else:
        img = img + noise_window(rng, h, w)[..., :1] * np.float32(rng.uniform(4, 22))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def muted_colours(rng: np.random.Generator, k: int) -> np.ndarray:
    """(k, 3) random colours, each pulled towards its own grey by a random amount: sports scenes are not neon."""
    base = rng.uniform(0, 255, (k, 3))
    grey = base.mean(axis=1, keepdims=True)
    return grey + rng.uniform(0.15, 1.0, (k, 1)) * (base - grey)


def draw_distractors(draw: ImageDraw.ImageDraw, rng: np.random.Generator, h: int, w: int) -> None:
    """Background objects: boxes, blobs, polygons and limb-like capsule chains in random colours.

    The limb-like ones matter: without them a model could find limbs by looking for any thick bar.
    """
    side = max(h, w)
    k = int(rng.integers(3, 10))
    centres, sizes = rng.uniform(0, 1, (k, 2)) * (w, h), rng.uniform(0.08, 0.4, (k, 2)) * side
    corners = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=1).tolist()
    jitter = rng.uniform(-0.5, 0.5, (k, 5, 2)) * sizes[:, None]
    fills = [_colour(c) for c in muted_colours(rng, k).tolist()]
    kinds, counts = rng.integers(0, 3, k).tolist(), rng.integers(3, 6, k).tolist()
    for kind, count, corner, centre, wobble, fill in zip(kinds, counts, corners, centres, jitter, fills, strict=True):
        if kind == 2:
            fill_polygon(draw, centre + wobble[:count], fill=fill)
        else:
            (draw.rectangle if kind == 0 else draw.ellipse)(corner, fill=fill)
    chains = rng.integers(1, 5)
    links = rng.integers(1, 3, chains)
    start = np.repeat(rng.uniform(0, 1, (chains, 2)) * (w, h), links, axis=0)
    angle = rng.uniform(0, 2 * np.pi, len(start))
    step = rng.uniform(0.12, 0.3, len(start))[:, None] * side * np.stack([np.cos(angle), np.sin(angle)], -1)
    first = np.r_[True, np.diff(np.repeat(np.arange(chains), links)) != 0]
    a = start + np.where(first[:, None], 0.0, np.roll(step, 1, axis=0))  # a second link starts where the first ends
    radius = np.repeat(rng.uniform(2.0, 0.05 * side, chains), links)
    colours = np.repeat(muted_colours(rng, chains), links, axis=0)
    for poly, colour in zip(stadium(a, a + step, radius), colours.tolist(), strict=True):
        fill_polygon(draw, poly, fill=_colour(colour), outline=_colour([v * 0.55 for v in colour]))


def person_style(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Colours for one person: skin, hair, shirt, trousers, shoes, with random sleeve and trouser lengths."""
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.uniform(-12, 12, 3)
    shirt, pants = muted_colours(rng, 2)
    hair = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.uniform(-10, 10, 3)
    style = {"skin": skin, "head": skin, "shirt": shirt, "pants": pants, "shoe": rng.uniform(0, 90, 3), "hair": hair}
    sleeves = rng.choice(3, p=[0.15, 0.4, 0.45])  # none, short, long
    style["sleeve"] = skin if sleeves == 0 else shirt
    style["forearm"] = shirt if sleeves == 2 else skin
    style["shin"] = skin if rng.random() < 0.35 else pants
    return {k: np.asarray(v, dtype=np.float64) for k, v in style.items()}


def draw_face(draw: ImageDraw.ImageDraw, fig: Figures, i: int, style: dict[str, np.ndarray]) -> None:
    """Hair and eyes: the cue that tells a person facing the camera (right on image left) from one facing away."""
    centre, axis, radii, yaw = fig.head_centre[i], fig.head_axis[i], fig.head_radii[i], float(fig.facing[i])
    if np.cos(yaw) < -0.25:  # seen from behind: all hair
        fill_polygon(draw, ellipse_polygon(centre, axis, radii, HEAD_STEPS), fill=_colour(style["hair"]))
        return
    turn = np.sin(yaw)
    cap = ellipse_polygon(centre, axis, radii, np.linspace(-1.3 - 0.8 * max(turn, 0), 1.3 + 0.8 * max(-turn, 0), 12))
    fill_polygon(draw, cap, fill=_colour(style["hair"]))
    across = np.array([-axis[1], axis[0]])
    eye_r = max(0.7, 0.1 * radii[0])
    for spread in (-0.38, 0.38):
        offset = radii[1] * (0.55 * turn + spread * np.cos(yaw))
        if abs(offset) < 0.85 * radii[1]:
            eye = centre + 0.05 * radii[0] * axis + offset * across
            draw.ellipse([*(eye - eye_r).tolist(), *(eye + eye_r).tolist()], fill=(25, 20, 20))


def draw_person(draw: ImageDraw.ImageDraw, fig: Figures, i: int, rng: np.random.Generator) -> None:
    """The person back to front; parts turned away from the camera are shaded darker (a depth cue)."""
    style = person_style(rng)
    shade = rng.uniform(0.65, 0.85)
    inks: dict[tuple[str, bool], tuple[tuple[int, int, int], tuple[int, int, int]]] = {}
    for part, role, poly in person_shapes(fig, i):
        key = (role, bool(fig.depth[i, part] < 0 and part not in (TORSO, HEAD)))
        if key not in inks:
            colour = style[role] * (shade if key[1] else 1.0)
            inks[key] = (_colour(colour), _colour(colour * 0.55))
        fill_polygon(draw, poly, fill=inks[key][0], outline=inks[key][1])
        if part == HEAD:
            draw_face(draw, fig, i, style)


def render(fig: Figures, i: int, rng: np.random.Generator) -> np.ndarray:
    """Sample i's RGB uint8 image: background clutter, then the person, then mild blur and noise."""
    h, w = (int(s) for s in fig.sizes[i])
    img = background(rng, h, w)
    draw = ImageDraw.Draw(img)
    draw_distractors(draw, rng, h, w)
    draw_person(draw, fig, i, rng)
    if rng.random() < 0.35:
        img = img.filter(ImageFilter.BoxBlur(rng.uniform(0.3, 0.7)))  # cheaper than Gaussian, as soft
    noisy = np.asarray(img, dtype=np.float32) + noise_window(rng, h, w) * np.float32(rng.uniform(2, 7))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def render_part_map(fig: Figures, i: int) -> np.ndarray:
    """(H, W) int array: the index into PARTS of the part on top at every pixel, −1 for background.

    Drawn from the same shapes as the RGB image, so tests can check the visibility flags against pixels.
    """
    h, w = (int(s) for s in fig.sizes[i])
    img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(img)
    for part, _, poly in person_shapes(fig, i):
        fill_polygon(draw, poly, fill=part + 1)
    return np.asarray(img, dtype=np.int16) - 1


# --- the data set -----------------------------------------------------------------------------------

class SyntheticPoses(PoseDataset):
    """n procedurally drawn people, LSP-like: labels made at construction, images drawn on first access.

    ``stream`` separates independent sets made from the same seed (``synthetic_splits`` uses it for train and
    test). Sample i is a function of (seed, stream, i) alone.

    Introduced in ``notebooks/01_data.ipynb``.
    """

    file_offset = 0.0

    def __init__(self, n: int, seed: int = 0, name: str = "synthetic", *, stream: int = 0) -> None:
        if n < 0 or seed < 0 or stream < 0:
            raise ValueError(f"n, seed and stream must be non-negative, got n={n}, seed={seed}, stream={stream}")
        self.seed, self.stream = int(seed), int(stream)
        self.figures = make_figures(int(n), self.seed, self.stream)
        super().__init__([f"syn{i:05d}" for i in range(n)], self.figures.joints, self.figures.visible)
        self.name = name

    def load_image(self, i: int) -> np.ndarray:
        return render(self.figures, i, np.random.default_rng([self.seed, self.stream, RENDER_TAG, i]))

    def part_map(self, i: int) -> np.ndarray:
        """Which body part is on top at each pixel of image i (see ``render_part_map``)."""
        return render_part_map(self.figures, i)


def synthetic_splits(n_train: int, n_test: int, seed: int = 0) -> tuple[SyntheticPoses, SyntheticPoses]:
    """Disjoint train and test sets: the same seed, different random streams (1 and 2)."""
    return (SyntheticPoses(n_train, seed, "synthetic-train", stream=1),
            SyntheticPoses(n_test, seed, "synthetic-test", stream=2))
