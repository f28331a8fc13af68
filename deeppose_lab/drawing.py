"""Pictures of poses: skeletons on images, truth-versus-prediction overlays, contact sheets, PNG files.

Every function is pure: it returns a NEW (H, W, 3) uint8 array and never modifies its input or shows
anything, so notebooks, widgets and reports can all call it and decide themselves what to do with the result.

Joints are in the internal pixel convention of ``sample.py`` (the centre of pixel (row r, column c) is
(c + 0.5, r + 0.5)). Pillow's drawing coordinates put that centre at (c, r), so a point is drawn at
``scale * internal - 0.5``; this is what keeps a dot on the pixel it labels, also after upscaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import atomic
from .skeleton import BONES, JOINT_NAMES, NUM_JOINTS

Color = tuple[int, int, int]

# Right side warm, left side cool, the centre line (neck, head) yellow: a mirrored pose is visible at a glance.
RIGHT_COLOR: Color = (230, 40, 40)
LEFT_COLOR: Color = (30, 110, 245)
CENTRE_COLOR: Color = (250, 200, 0)
BOX_COLOR: Color = (255, 230, 0)
# Overlays: ground truth and prediction (a third or later pose cycles through the rest).
TRUTH_COLOR: Color = (0, 200, 60)
PRED_COLOR: Color = (240, 30, 200)
OVERLAY_COLORS: tuple[Color, ...] = (TRUTH_COLOR, PRED_COLOR, (255, 140, 0), (0, 200, 230))
OUTLINE_COLOR: Color = (0, 0, 0)
SHEET_BACKGROUND: Color = (255, 255, 255)
TILE_BACKGROUND: Color = (225, 225, 225)
TEXT_COLOR: Color = (0, 0, 0)
# Pillow's built-in font; below 12 px its hinting swallows spaces ("err/torso0.2").
FONT_SIZE = 12

SIDES: tuple[str, ...] = tuple(
    "right" if n.startswith("r_") else "left" if n.startswith("l_") else "centre" for n in JOINT_NAMES
)


# --- helpers -----------------------------------------------------------------------------------------------

def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    return image


def _check_joints(joints: np.ndarray, visible: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    joints = np.asarray(joints, dtype=np.float64)
    if joints.shape != (NUM_JOINTS, 2):
        raise ValueError(f"joints must be ({NUM_JOINTS}, 2), got {joints.shape}")
    vis = np.ones(NUM_JOINTS, dtype=bool) if visible is None else np.asarray(visible, dtype=bool)
    if vis.shape != (NUM_JOINTS,):
        raise ValueError(f"visible must be ({NUM_JOINTS},), got {vis.shape}")
    return joints, vis


def _tint(color: Color, amount: float) -> Color:
    """``color`` blended towards white by ``amount``; the left side of a single-colour overlay."""
    return tuple(int(round(c + (255 - c) * amount)) for c in color)  # type: ignore[return-value]


def joint_colors(color: Color | None = None) -> list[Color]:
    """One colour per joint: by side by default; with ``color``, right = color, left = a lighter tint."""
    if color is None:
        by_side = {"right": RIGHT_COLOR, "left": LEFT_COLOR, "centre": CENTRE_COLOR}
    else:
        color = tuple(int(c) for c in color)  # type: ignore[assignment]
        by_side = {"right": color, "left": _tint(color, 0.55), "centre": color}
    return [by_side[s] for s in SIDES]


def _bone_color(a: int, b: int, colors: Sequence[Color]) -> Color:
    """A bone takes its side's colour; bones across the body (hips, shoulders) take the centre colour."""
    return colors[a] if SIDES[a] == SIDES[b] else colors[SIDES.index("centre")]


def _sizes(canvas: Image.Image, thickness: int | None) -> tuple[int, float]:
    """Line width and dot radius that read well at this picture size (about 1 px per 150 px of short side)."""
    width = thickness if thickness is not None else max(1, round(min(canvas.size) / 150))
    return int(width), max(2.0, 1.9 * width)


def _to_canvas(image: np.ndarray, scale: int) -> Image.Image:
    """A fresh Pillow copy of ``image``, upscaled by an integer ``scale`` (small LSP images read badly at 1×)."""
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    canvas = Image.fromarray(np.ascontiguousarray(_check_image(image))).copy()
    if scale > 1:
        canvas = canvas.resize((canvas.width * int(scale), canvas.height * int(scale)), Image.Resampling.BICUBIC)
    return canvas


def _to_draw(points: np.ndarray, scale: int) -> np.ndarray:
    """Internal pixel coordinates to Pillow drawing coordinates on a canvas upscaled by ``scale``."""
    return np.asarray(points, dtype=np.float64) * scale - 0.5


def clip_segment(p: np.ndarray, q: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Liang–Barsky: the part of segment p→q inside the box [lo, hi], or None when it misses the box.

    Unannotated LSP-extended joints can lie thousands of pixels away; clipping first keeps drawing cheap and safe.
    """
    d = q - p
    t0, t1 = 0.0, 1.0
    for axis in range(2):
        for step, room in ((-d[axis], p[axis] - lo[axis]), (d[axis], hi[axis] - p[axis])):
            if step == 0:
                if room < 0:
                    return None
                continue
            t = room / step
            if step < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
    if t0 > t1:
        return None
    return p + t0 * d, p + t1 * d


def _line(draw: ImageDraw.ImageDraw, p: np.ndarray, q: np.ndarray, color: Color, width: int, size: tuple) -> None:
    margin = np.array([width + 2.0, width + 2.0])
    clipped = clip_segment(p, q, -margin, np.array(size, dtype=np.float64) + margin)
    if clipped is not None:
        a, b = clipped
        draw.line([tuple(a), tuple(b)], fill=color, width=width)


def _dot(draw: ImageDraw.ImageDraw, p: np.ndarray, color: Color, radius: float, hollow: bool, width: int,
         size: tuple) -> None:
    """A filled dot (visible joint) or a ring whose inside shows the image (hidden joint)."""
    if not (-radius <= p[0] <= size[0] + radius and -radius <= p[1] <= size[1] + radius):
        return
    box = [p[0] - radius, p[1] - radius, p[0] + radius, p[1] + radius]
    if hollow:
        draw.ellipse(box, outline=color, width=max(1, width))
    else:
        draw.ellipse(box, fill=color, outline=OUTLINE_COLOR if radius >= 3 else None)


def _draw_skeleton(draw: ImageDraw.ImageDraw, joints: np.ndarray, visible: np.ndarray, scale: int,
                   colors: Sequence[Color], width: int, radius: float, size: tuple) -> None:
    """Bones first, then dots on top; a NaN or infinite joint and every bone touching it are skipped."""
    pts = _to_draw(joints, scale)
    finite = np.isfinite(pts).all(axis=1)
    for a, b in BONES:
        if finite[a] and finite[b]:
            _line(draw, pts[a], pts[b], _bone_color(a, b, colors), width, size)
    for j in np.flatnonzero(finite):
        _dot(draw, pts[j], colors[j], radius, hollow=not visible[j], width=width, size=size)


def _draw_boxes(draw: ImageDraw.ImageDraw, boxes: np.ndarray, scale: int, colors: Sequence[Color] | None,
                width: int, size: tuple) -> None:
    """Box outlines [cx, cy, w, h]; with as many colours as boxes (one box per joint) each takes its own."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for k, (cx, cy, w, h) in enumerate(boxes):
        if not np.isfinite([cx, cy, w, h]).all():
            continue
        color = colors[k] if colors is not None and len(colors) == len(boxes) else BOX_COLOR
        corners = _to_draw(np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2],
                                     [cx + w / 2, cy + h / 2], [cx - w / 2, cy + h / 2]]), scale)
        for i in range(4):
            _line(draw, corners[i], corners[(i + 1) % 4], color, width, size)


# --- public API --------------------------------------------------------------------------------------------

def draw_pose(
    image: np.ndarray,
    joints: np.ndarray,
    visible: np.ndarray | None = None,
    *,
    scale: int = 1,
    color: Color | None = None,
    boxes: np.ndarray | None = None,
    thickness: int | None = None,
) -> np.ndarray:
    """The image (upscaled ``scale``×) with the skeleton drawn on it; the input is never modified.

    Visible joints are filled dots, hidden ones rings. Right side red, left side blue, neck and head yellow;
    with ``color`` the right side takes ``color`` and the left a lighter tint of it. ``boxes`` (K, 4)
    [cx, cy, w, h] in internal pixels draws outlines (e.g. the cascade's σ·diam boxes). Joints outside the
    image are clipped, NaN joints skipped. ``thickness`` overrides the automatic line width.

    Introduced in ``notebooks/01_data.ipynb``.
    """
    joints, vis = _check_joints(joints, visible)
    canvas = _to_canvas(image, scale)
    width, radius = _sizes(canvas, thickness)
    colors = joint_colors(color)
    draw = ImageDraw.Draw(canvas)
    if boxes is not None:
        _draw_boxes(draw, boxes, int(scale), colors if color is None else [tuple(color)] * NUM_JOINTS,
                    max(1, width // 2), canvas.size)
    _draw_skeleton(draw, joints, vis, int(scale), colors, width, radius, canvas.size)
    return np.asarray(canvas).copy()


def pad_to_show(image: np.ndarray, points: np.ndarray, limit: float = 0.5, fill: int = 200
                ) -> tuple[np.ndarray, np.ndarray]:
    """The image padded with grey so ``points`` lie on it (at most ``limit`` × its longer side on each edge);
    returns the padded image and the (x, y) shift to add to coordinates.

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    h, w = image.shape[:2]
    most = int(limit * max(h, w))
    pts = np.asarray(points, dtype=np.float64)
    left, top = (int(np.clip(np.ceil(-pts[:, a].min()), 0, most)) for a in (0, 1))
    right = int(np.clip(np.ceil(pts[:, 0].max() - w), 0, most))
    bottom = int(np.clip(np.ceil(pts[:, 1].max() - h), 0, most))
    padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), constant_values=fill)
    return padded, np.array([left, top], dtype=np.float64)


def draw_boxes(image: np.ndarray, boxes: Sequence[np.ndarray], colors: Sequence[Color], *, scale: int = 1,
               thickness: int | None = None) -> np.ndarray:
    """The image (upscaled ``scale``×) with box outlines [cx, cy, w, h] drawn on it, each in its own colour:
    e.g. the whole-image, HOG and re-framed person boxes of ``framing.find_people``.

    Introduced in ``notebooks/07_your_own_image.ipynb``.
    """
    if len(colors) < len(boxes):
        raise ValueError(f"{len(boxes)} boxes but only {len(colors)} colours")
    canvas = _to_canvas(image, scale)
    width, _ = _sizes(canvas, thickness)
    draw = ImageDraw.Draw(canvas)
    for box, color in zip(boxes, colors, strict=False):
        _draw_boxes(draw, np.asarray(box)[None], int(scale), [tuple(color)], width, canvas.size)
    return np.asarray(canvas).copy()


def draw_poses(
    image: np.ndarray,
    poses: Sequence[np.ndarray],
    colors: Sequence[Color] | None = None,
    visible: Sequence[np.ndarray | None] | None = None,
    *,
    scale: int = 1,
    thickness: int | None = None,
) -> np.ndarray:
    """Several poses on one image, each in one colour: by default truth green then prediction magenta.

    Pass ``[truth, prediction]`` with ``visible=[truth_visible, None]`` for a best/worst sheet; later poses
    are drawn on top of earlier ones.

    Introduced in ``notebooks/04_stage1.ipynb``.
    """
    if colors is None:
        colors = [OVERLAY_COLORS[i % len(OVERLAY_COLORS)] for i in range(len(poses))]
    if len(colors) < len(poses):
        raise ValueError(f"{len(poses)} poses but only {len(colors)} colours")
    if visible is not None and len(visible) != len(poses):
        raise ValueError(f"{len(poses)} poses but {len(visible)} visibility arrays")
    canvas = _to_canvas(image, scale)
    width, radius = _sizes(canvas, thickness)
    draw = ImageDraw.Draw(canvas)
    for i, pose in enumerate(poses):
        joints, vis = _check_joints(pose, None if visible is None else visible[i])
        _draw_skeleton(draw, joints, vis, int(scale), joint_colors(colors[i]), width, radius, canvas.size)
    return np.asarray(canvas).copy()


def _fit_tile(tile: np.ndarray, size: int) -> Image.Image:
    """``tile`` resized to fit a size×size square without distortion, centred on a grey background."""
    arr = np.asarray(tile)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    img = Image.fromarray(np.ascontiguousarray(_check_image(arr)))
    factor = size / max(img.width, img.height)
    resized = img.resize((max(1, round(img.width * factor)), max(1, round(img.height * factor))),
                         Image.Resampling.LANCZOS)
    square = Image.new("RGB", (size, size), TILE_BACKGROUND)
    square.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return square


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut with "..." so it fits ``width`` pixels (a long image id must not spill into its neighbour)."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def contact_sheet(
    tiles: Sequence[np.ndarray],
    columns: int,
    captions: Sequence[str] | None = None,
    tile_size: int = 128,
    pad: int = 4,
    title: str | None = None,
) -> np.ndarray:
    """Tiles in a grid, each fitted into a ``tile_size`` square (aspect kept), optional captions and title.

    Captions may contain newlines. The sheet is ``cols·tile_size + (cols+1)·pad`` wide with
    cols = min(columns, len(tiles)); each row is ``tile_size`` plus the caption height tall.
    """
    if len(tiles) == 0:
        raise ValueError("contact_sheet needs at least one tile, got an empty list")
    if columns < 1 or tile_size < 1 or pad < 0:
        raise ValueError(f"need columns ≥ 1, tile_size ≥ 1, pad ≥ 0; got {columns}, {tile_size}, {pad}")
    if captions is not None and len(captions) != len(tiles):
        raise ValueError(f"{len(tiles)} tiles but {len(captions)} captions")
    font = ImageFont.load_default(size=FONT_SIZE)
    line_h = _line_height(font)
    lines = [c.split("\n") for c in captions] if captions is not None else [[] for _ in tiles]
    caption_h = max(len(c) for c in lines) * line_h + (pad if captions is not None else 0)
    title_h = line_h + pad if title else 0
    cols = min(columns, len(tiles))
    rows = -(-len(tiles) // cols)
    cell_h = tile_size + caption_h
    sheet = Image.new("RGB", (cols * tile_size + (cols + 1) * pad, title_h + rows * cell_h + (rows + 1) * pad),
                      SHEET_BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), _fit_text(draw, title, font, sheet.width - 2 * pad), fill=TEXT_COLOR, font=font)
    for k, tile in enumerate(tiles):
        x = pad + (k % cols) * (tile_size + pad)
        y = title_h + pad + (k // cols) * (cell_h + pad)
        sheet.paste(_fit_tile(tile, tile_size), (x, y))
        for i, text in enumerate(lines[k]):
            draw.text((x, y + tile_size + 2 + i * line_h), _fit_text(draw, text, font, tile_size),
                      fill=TEXT_COLOR, font=font)
    return np.asarray(sheet).copy()


def _line_height(font) -> int:
    left, top, right, bottom = font.getbbox("Ag|")
    return int(bottom) + 2


def save_png(path: Path | str, image: np.ndarray) -> None:
    """Write ``image`` as a PNG atomically: a crash mid-save leaves the previous file intact.

    Introduced in ``notebooks/07_your_own_image.ipynb``.
    """
    img = Image.fromarray(np.ascontiguousarray(_check_image(image)))
    atomic.write_with(path, lambda fh: img.save(fh, format="PNG"))
