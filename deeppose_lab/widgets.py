"""Interactive pictures for the notebooks: builders that RETURN an ipywidgets widget and never display it.

Each builder returns a ``PoseViewer``: an ``ipywidgets.Image`` (PNG bytes) with its controls and a caption.
Moving a control calls ``viewer.update()``, which redraws the picture from the controls' values with the
pure drawing functions of ``drawing.py``. Tests (and curious students) can call ``update`` with any values,
also ones a slider would never allow (indices are clamped), and read back

- ``viewer.array``: the (H, W, 3) uint8 picture shown now (``viewer.image.value`` is its PNG),
- ``viewer.state``: what the picture was drawn from (the pose, the crop, the boxes, ...),
- ``viewer.controls``: the control widgets by name.

Builders:

- ``sample_browser(dataset)``: images with their labelled joints (rings: hidden joints).
- ``crop_explorer(dataset)``: box scale, shift, rotation and flip composed into one warp, image and crop side
  by side, the labels moving with the pixels (and swapping left/right on a flip).
- ``cascade_stepper(dataset, poses, sigma)``: a stage slider moving each joint from stage to stage, with the
  σ·diam box every refinement stage looked in.
- ``error_inspector(dataset, pred)``: pick a joint, browse the images where it is furthest from the truth.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import ipywidgets as widgets
import numpy as np
from PIL import Image, ImageDraw

from .cascade import diam_floor
from .datasets import PoseDataset
from .drawing import BOX_COLOR, TRUTH_COLOR, draw_boxes, draw_pose, draw_poses, pad_to_show
from .geometry import (
    apply_affine,
    box_corners,
    cascade_boxes,
    chosen_transform,
    crop_to_normalised,
    image_box,
    inside_box,
    person_box,
    transform_joints,
    warp_image,
)
from .skeleton import JOINT_NAMES, NUM_JOINTS, joint_index, torso_diameter

DISPLAY_SIDE = 320  # pixels: pictures are upscaled by an integer factor to about this size
PREVIOUS_COLOR = (150, 150, 150)  # the previous stage's pose in the cascade stepper
BACKGROUND = (255, 255, 255)


# --- small pure helpers ---------------------------------------------------------------------------------------

def encode_image(array: np.ndarray, fmt: str = "png", quality: int = 90) -> bytes:
    """An (H, W, 3) uint8 array as PNG or JPEG file bytes."""
    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(array))
    if fmt == "png":
        img.save(buf, format="PNG")
    elif fmt in ("jpeg", "jpg"):
        img.save(buf, format="JPEG", quality=quality)
    else:
        raise ValueError(f"fmt must be 'png' or 'jpeg', got {fmt!r}")
    return buf.getvalue()


def png_bytes(array: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 array as PNG file bytes (what ``ipywidgets.Image`` shows)."""
    return encode_image(array, "png")


def display_scale(height: int, width: int, side: int = DISPLAY_SIDE) -> int:
    """The integer upscaling that brings the longer side of an image close to ``side`` (at least 1)."""
    return max(1, round(side / max(height, width, 1)))


def clamp_index(index: Any, n: int) -> int:
    """Any number to a valid index into n items (NaN and None become 0); n must be positive."""
    try:
        i = float(index)
    except (TypeError, ValueError):
        return 0
    if not math.isfinite(i):
        return 0 if math.isnan(i) or i < 0 else n - 1
    return int(min(max(int(i), 0), n - 1))


def joint_or_all(joint: Any) -> int:
    """A joint index in 0..13, or −1 (all joints) for a negative, missing or unreadable value."""
    try:
        value = float(joint)
    except (TypeError, ValueError):
        return -1
    return -1 if not value >= 0 else clamp_index(value, NUM_JOINTS)


def side_by_side(panels: list[np.ndarray], gap: int = 8) -> tuple[np.ndarray, list[int]]:
    """Panels next to each other on white, tops aligned, pixels unchanged; also each panel's x offset."""
    height = max(p.shape[0] for p in panels)
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    out = np.full((height, width, 3), BACKGROUND, dtype=np.uint8)
    offsets, x = [], 0
    for p in panels:
        out[: p.shape[0], x: x + p.shape[1]] = p
        offsets.append(x)
        x += p.shape[1] + gap
    return out, offsets


def draw_polygon(image: np.ndarray, corners: np.ndarray, scale: int, color=BOX_COLOR, width: int = 2) -> np.ndarray:
    """A closed outline through (K, 2) internal-pixel ``corners`` on an image already upscaled by ``scale``."""
    canvas = Image.fromarray(np.ascontiguousarray(image)).copy()
    pts = [tuple(p) for p in (np.asarray(corners, dtype=np.float64) * scale - 0.5).tolist()]
    ImageDraw.Draw(canvas).line([*pts, pts[0]], fill=tuple(color), width=width)
    return np.asarray(canvas).copy()


def draw_segments(image: np.ndarray, starts: np.ndarray, ends: np.ndarray, scale: int, color, width: int = 1
                  ) -> np.ndarray:
    """Straight lines from (K, 2) ``starts`` to ``ends`` (internal pixels) on an image upscaled by ``scale``."""
    canvas = Image.fromarray(np.ascontiguousarray(image)).copy()
    draw = ImageDraw.Draw(canvas)
    for a, b in zip(np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64), strict=True):
        if np.isfinite(a).all() and np.isfinite(b).all():
            draw.line([tuple(a * scale - 0.5), tuple(b * scale - 0.5)], fill=tuple(color), width=width)
    return np.asarray(canvas).copy()


def finite_mean(values: np.ndarray) -> float:
    """The mean of the finite values (NaN when there are none, without numpy's warning)."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def check_dataset(dataset: PoseDataset, who: str) -> int:
    n = len(dataset)
    if n == 0:
        raise ValueError(f"{who}: the data set {getattr(dataset, 'name', '')!r} is empty (0 samples); "
                         "there is nothing to show")
    return n


def check_poses(poses: np.ndarray, n: int, who: str, what: str, stages: bool) -> np.ndarray:
    """(S, N, 14, 2) (``stages``) or (N, 14, 2) poses for the n images of the data set, as float64."""
    arr = np.asarray(poses, dtype=np.float64)
    want = f"(S, {n}, {NUM_JOINTS}, 2)" if stages else f"({n}, {NUM_JOINTS}, 2)"
    ndim = 4 if stages else 3
    if arr.ndim != ndim or arr.shape[-2:] != (NUM_JOINTS, 2) or arr.shape[-3] != n or (stages and len(arr) == 0):
        raise ValueError(f"{who}: {what} must have shape {want} for a data set of {n} images, got {arr.shape}")
    return arr


# --- the widget every builder returns ------------------------------------------------------------------------

Renderer = Callable[..., tuple[np.ndarray, str, dict[str, Any]]]


class PoseViewer(widgets.VBox):
    """A picture with its controls: ``update(**values)`` redraws it; ``array`` and ``state`` describe it.

    ``render(**values)`` returns (picture, caption HTML, state); it is called with every control's value,
    overridden by the keywords passed to ``update``.
    """

    def __init__(self, title: str, controls: dict[str, widgets.ValueWidget], render: Renderer) -> None:
        self.title = title
        self.controls = controls
        self.render = render
        # At its drawn size: in the VBox's column flexbox an image stretches to the cell's width (a 140×320 picture
        # was shown 964×2203, pixelated, its controls scrolled out of view); max_width keeps it inside a narrow cell.
        self.image = widgets.Image(format="png", layout=widgets.Layout(align_self="flex-start", max_width="100%",
                                                                       height="auto"))
        self.caption = widgets.HTML()
        self.array = np.zeros((1, 1, 3), np.uint8)
        self.state: dict[str, Any] = {}
        rows = [widgets.HBox(list(controls.values())[i:i + 3]) for i in range(0, len(controls), 3)]
        super().__init__([*rows, self.image, self.caption])
        for control in controls.values():
            control.observe(self._changed, names="value")
        self.update()

    def values(self) -> dict[str, Any]:
        """The controls' values as the renderers take them: an index slider shows 1..n, its value is 0..n−1."""
        return {name: control.value - 1 if getattr(control, "counts_from_one", False) else control.value
                for name, control in self.controls.items()}

    def _changed(self, _change: dict) -> None:
        self.update()

    def update(self, **values: Any) -> np.ndarray:
        """Redraw from the controls' values (keywords override them); returns the new picture."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise TypeError(f"{self.title}: unknown control(s) {unknown}; controls are {sorted(self.controls)}")
        self.array, text, self.state = self.render(**{**self.values(), **values})
        width = f"{self.array.shape[1]}px"
        if self.image.layout.width != width:
            self.image.layout.width = width
        self.image.value = png_bytes(self.array)
        self.caption.value = text
        return self.array

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        """The live widget where a widget manager runs, and the current picture as a still everywhere else.

        A notebook saved without widget state (as ours are) then still shows a picture on a code host.
        """
        data = super()._repr_mimebundle_(**kwargs)
        if data is None:
            return None
        data["text/plain"] = f"{self.title} (an interactive widget: run the notebook to use it)"
        data["image/jpeg"] = base64.b64encode(encode_image(still_picture(self.array), "jpeg")).decode("ascii")
        return data


STILL_NOTE = "A still picture: run the notebook to move the controls."


def still_picture(picture: np.ndarray) -> np.ndarray:
    """The picture a saved notebook shows where no widget runs, with a line under it that says it is static."""
    height, width = picture.shape[:2]
    canvas = Image.new("RGB", (max(width, 330), height + 18), BACKGROUND)
    canvas.paste(Image.fromarray(np.ascontiguousarray(picture)), (0, 0))
    ImageDraw.Draw(canvas).text((2, height + 3), STILL_NOTE, fill=(90, 90, 90))
    return np.asarray(canvas)


def slider(description: str, n: int, value: int = 0) -> widgets.IntSlider:
    """An index slider over n items (disabled when there is only one) that shows 1..n, as the captions count
    ("image 3 of 20"); the renderers get value − 1 (``PoseViewer.values``)."""
    control = widgets.IntSlider(value=value + 1, min=1, max=max(n, 1), description=description, disabled=n < 2,
                                continuous_update=False)
    control.counts_from_one = True
    return control


# --- sample browser ------------------------------------------------------------------------------------------

def render_sample(dataset: PoseDataset, index: Any, joints: bool = True, side: int = DISPLAY_SIDE
                  ) -> tuple[np.ndarray, str, dict[str, Any]]:
    """Sample ``index`` (clamped) with its labelled joints: filled dots visible, rings hidden."""
    i = clamp_index(index, len(dataset))
    sample = dataset[i]
    scale = display_scale(sample.height, sample.width, side)
    if joints:
        picture = draw_pose(sample.image, sample.joints, sample.visible, scale=scale)
    else:
        picture = draw_pose(sample.image, np.full((NUM_JOINTS, 2), np.nan), scale=scale)
    hidden = [JOINT_NAMES[j] for j in np.flatnonzero(~sample.visible)]
    text = (f"<b>{html.escape(sample.id)}</b> ({i + 1} of {len(dataset)}): {sample.width}×{sample.height} px, "
            f"{int(sample.visible.sum())} of {NUM_JOINTS} joints visible"
            + (f"; hidden (rings): {', '.join(hidden)}" if hidden else "")
            + ". Red: the person's right side, blue: left, yellow: neck and head.")
    return picture, text, {"index": i, "scale": scale, "joints": sample.joints, "visible": sample.visible}


def sample_browser(dataset: PoseDataset, side: int = DISPLAY_SIDE) -> PoseViewer:
    """Browse a data set's images with their labels; raises ``ValueError`` for an empty data set.

    Introduced in ``notebooks/01_data.ipynb``.
    """
    n = check_dataset(dataset, "sample_browser")
    controls = {"index": slider("image", n), "joints": widgets.Checkbox(value=True, description="show joints")}
    return PoseViewer("sample_browser", controls,
                      lambda index, joints: render_sample(dataset, index, joints, side))


# --- crop explorer -------------------------------------------------------------------------------------------

def render_crop(dataset: PoseDataset, index: Any, box: str = "person", scale: float = 1.0, shift_x: float = 0.0,
                shift_y: float = 0.0, rotate: float = 0.0, flip: bool = False, size: int = 112,
                side: int = DISPLAY_SIDE, margin: float = 0.15) -> tuple[np.ndarray, str, dict[str, Any]]:
    """Left: the image with the crop's outline; right: the crop with its labels, as the network sees them."""
    i = clamp_index(index, len(dataset))
    sample = dataset[i]
    base = image_box(sample.height, sample.width) if box == "image" else person_box(sample.joints, sample.visible,
                                                                                    margin)
    t, moved = chosen_transform(base, size, (float(shift_x), float(shift_y)), max(float(scale), 1e-3), float(rotate),
                                bool(flip))
    crop = warp_image(sample.image, t.matrix, size)
    crop_joints, crop_visible = transform_joints(t, sample.joints, sample.visible)
    normalised = crop_to_normalised(crop_joints, size)
    # The crop's corners in the image: where the crop came from (a rotated square when rotated).
    corners = apply_affine(np.linalg.inv(t.matrix), np.array([[0, 0], [size, 0], [size, size], [0, size]], float))
    # Pad the image (grey) so a box reaching past its border is seen whole; what lies there is black in the crop.
    padded, pad = pad_to_show(sample.image, corners)
    k_img = display_scale(*padded.shape[:2], side)
    left = draw_pose(padded, sample.joints + pad, sample.visible, scale=k_img)
    left = draw_polygon(left, corners + pad, k_img, width=max(2, k_img))
    k_crop = display_scale(size, size, side)
    right = draw_pose(crop, crop_joints, crop_visible, scale=k_crop)
    picture, offsets = side_by_side([left, right])
    inside = int(inside_box(normalised).sum())
    a = t.matrix
    text = (f"<b>{html.escape(sample.id)}</b>: {box} box × {float(scale):.2f}, shift ({float(shift_x):+.2f}, "
            f"{float(shift_y):+.2f}) box sizes, rotation {float(rotate):+.0f}°"
            + (", <b>flipped</b> (left and right labels swapped)" if flip else "")
            + f". Crop {size}×{size} px; {inside} of {NUM_JOINTS} joints inside the box (|N(y)| ≤ 0.5)."
            + "<br>image → crop matrix: "
            + f"[[{a[0, 0]:.3f}, {a[0, 1]:.3f}, {a[0, 2]:.1f}], [{a[1, 0]:.3f}, {a[1, 1]:.3f}, {a[1, 2]:.1f}]]")
    state = {"index": i, "box": moved, "transform": t, "crop": crop, "crop_joints": crop_joints,
             "crop_visible": crop_visible, "normalised": normalised, "crop_scale": k_crop, "image_scale": k_img,
             "crop_panel": right, "crop_offset": offsets[1]}
    return picture, text, state


def crop_explorer(dataset: PoseDataset, size: int = 112, side: int = DISPLAY_SIDE) -> PoseViewer:
    """Move, scale, rotate and flip the crop box and watch the crop and its labels follow.

    Introduced in ``notebooks/02_cropping.ipynb``.
    """
    n = check_dataset(dataset, "crop_explorer")
    if int(size) < 8:
        raise ValueError(f"crop_explorer: size must be at least 8 px, got {size}")
    style = {"description_width": "initial"}
    controls = {
        "index": slider("image", n),
        "box": widgets.Dropdown(options=["person", "image"], value="person", description="box"),
        "flip": widgets.Checkbox(value=False, description="flip"),
        "scale": widgets.FloatSlider(value=1.0, min=0.5, max=2.0, step=0.05, description="box scale", style=style,
                                     continuous_update=False),
        "shift_x": widgets.FloatSlider(value=0.0, min=-0.5, max=0.5, step=0.05, description="shift x",
                                       continuous_update=False),
        "shift_y": widgets.FloatSlider(value=0.0, min=-0.5, max=0.5, step=0.05, description="shift y",
                                       continuous_update=False),
        "rotate": widgets.FloatSlider(value=0.0, min=-45.0, max=45.0, step=5.0, description="rotation",
                                      continuous_update=False),
    }
    return PoseViewer("crop_explorer", controls,
                      lambda **v: render_crop(dataset, size=int(size), side=side, **v))


# --- cascade stepper -----------------------------------------------------------------------------------------

def render_stage(dataset: PoseDataset, poses: np.ndarray, sigma: float, index: Any, stage: Any, joint: Any = -1,
                 truth: bool = True, side: int = DISPLAY_SIDE) -> tuple[np.ndarray, str, dict[str, Any]]:
    """Image ``index`` after ``stage`` (1-based, clamped): the pose, the previous stage's pose in grey, and the
    σ·diam boxes this stage cropped around the previous estimates (all joints, or only ``joint``)."""
    n_stages = len(poses)
    i = clamp_index(index, poses.shape[1])
    s = max(1, clamp_index(stage, n_stages + 1))
    j = joint_or_all(joint)
    sample = dataset[i]
    pose = poses[s - 1, i]
    previous = poses[s - 2, i] if s >= 2 else None
    boxes = cascade_boxes(previous, sigma, diam_floor(sample)) if previous is not None else None
    k = display_scale(sample.height, sample.width, side)
    layers, colors, vis = [], [], []
    if truth:
        layers, colors, vis = [sample.joints], [TRUTH_COLOR], [sample.visible]
    if previous is not None:
        layers, colors, vis = [*layers, previous], [*colors, PREVIOUS_COLOR], [*vis, None]
    picture = draw_poses(sample.image, layers, colors, vis, scale=k) if layers else draw_pose(
        sample.image, np.full((NUM_JOINTS, 2), np.nan), scale=k)
    shown = slice(None) if j < 0 else slice(j, j + 1)
    if previous is not None:
        picture = draw_segments(picture, previous[shown], pose[shown], k, BOX_COLOR, width=max(1, k // 2))
    picture = draw_pose(picture, pose * k, boxes=None if boxes is None else boxes[shown] * np.array([k, k, k, k]))
    move = np.linalg.norm(pose - previous, axis=1) if previous is not None else np.zeros(NUM_JOINTS)
    err = np.linalg.norm(pose - sample.joints, axis=1)
    which = "all joints" if j < 0 else JOINT_NAMES[j]
    text = (f"<b>{html.escape(sample.id)}</b>, stage {s} of {n_stages} ({which}). "
            + ("Stage 1 regresses the whole pose from the image box. " if s == 1 else
               f"Stage {s} cropped a σ·diam box (σ = {sigma:g}, side {boxes[0, 2]:.1f} px) around each stage-{s - 1} "
               f"estimate (grey) and moved the joint (yellow line): mean move {finite_mean(move[shown]):.1f} px. ")
            + f"Mean error against the truth (green): {finite_mean(err[shown]):.1f} px.")
    state = {"index": i, "stage": s, "joint": j, "pose": pose, "previous": previous, "boxes": boxes, "scale": k}
    return picture, text, state


def cascade_stepper(dataset: PoseDataset, poses: np.ndarray, sigma: float, side: int = DISPLAY_SIDE) -> PoseViewer:
    """Step an image through the cascade: ``poses`` (S, N, 14, 2) in image pixels, one pose per stage and image.

    ``poses[s, n]`` belongs to ``dataset[n]`` (``Cascade.predict`` returns exactly this).

    Introduced in ``notebooks/05_cascade.ipynb``.
    """
    n = check_dataset(dataset, "cascade_stepper")
    arr = check_poses(poses, n, "cascade_stepper", "poses", stages=True)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"cascade_stepper: sigma must be positive, got {sigma}")
    stages = len(arr)
    controls = {
        "index": slider("image", n),
        "stage": widgets.IntSlider(value=stages, min=1, max=stages, description="stage", disabled=stages < 2,
                                   continuous_update=False),
        "joint": widgets.Dropdown(options=[("all joints", -1), *[(name, j) for j, name in enumerate(JOINT_NAMES)]],
                                  value=-1, description="joint"),
        "truth": widgets.Checkbox(value=True, description="show truth"),
    }
    return PoseViewer("cascade_stepper", controls,
                      lambda **v: render_stage(dataset, arr, float(sigma), side=side, **v))


# --- error inspector -----------------------------------------------------------------------------------------

def error_order(errors: np.ndarray) -> np.ndarray:
    """Image indices by decreasing error (NaN first: a missing prediction is the worst); ties by image order."""
    key = np.where(np.isnan(errors), np.inf, errors)
    return np.argsort(-key, kind="stable")


def render_error(dataset: PoseDataset, pred: np.ndarray, true: np.ndarray, joint: Any, rank: Any,
                 side: int = DISPLAY_SIDE) -> tuple[np.ndarray, str, dict[str, Any]]:
    """The image with the ``rank``-th largest error (0 = largest) of ``joint``: truth green, prediction magenta,
    the chosen joint's error as a yellow line."""
    j = clamp_index(joint, NUM_JOINTS)
    errors = np.linalg.norm(pred[:, j] - true[:, j], axis=-1)
    order = error_order(errors)
    r = clamp_index(rank, len(order))
    i = int(order[r])
    sample = dataset[i]
    k = display_scale(sample.height, sample.width, side)
    picture = draw_poses(sample.image, [true[i], pred[i]], visible=[sample.visible, None], scale=k)
    picture = draw_segments(picture, true[i, j:j + 1], pred[i, j:j + 1], k, BOX_COLOR, width=max(2, k))
    diam = float(torso_diameter(true[i]))
    ratio = f" = {errors[i] / diam:.2f} × the true torso diameter" if diam > 0 else ""
    text = (f"<b>{JOINT_NAMES[j]}</b>, rank {r + 1} of {len(order)} (1 = largest error): "
            f"<b>{html.escape(sample.id)}</b>, error {errors[i]:.1f} px{ratio}; "
            f"labelled {'visible' if sample.visible[j] else 'hidden'}. Green: truth, magenta: prediction "
            f"(lighter: left side), yellow: this joint's error.")
    return picture, text, {"index": i, "joint": j, "rank": r, "error": float(errors[i]), "order": order}


def error_inspector(dataset: PoseDataset, pred: np.ndarray, true: np.ndarray | None = None,
                    side: int = DISPLAY_SIDE) -> PoseViewer:
    """Pick a joint and browse its largest errors; ``pred`` and ``true`` are (N, 14, 2) image pixels.

    ``true`` defaults to the data set's labels. For a cascade, pass one stage, e.g. ``poses[-1]``.

    Introduced in ``notebooks/06_evaluation.ipynb``.
    """
    n = check_dataset(dataset, "error_inspector")
    pred = check_poses(pred, n, "error_inspector", "pred", stages=False)
    true = check_poses(dataset.joints if true is None else true, n, "error_inspector", "true", stages=False)
    controls = {
        "joint": widgets.Dropdown(options=[(name, j) for j, name in enumerate(JOINT_NAMES)],
                                  value=joint_index("r_wrist")[0],
                                  description="joint"),
        "rank": slider("rank", n),
    }
    return PoseViewer("error_inspector", controls,
                      lambda joint, rank: render_error(dataset, pred, true, joint, rank, side))


# --- box picker ----------------------------------------------------------------------------------------------

PHOTO_SIDE = 480  # pixels: a photo is shown at about this longer side, whatever its size (a phone's is 4032)


def on_screen(image: np.ndarray, boxes: Sequence[np.ndarray] = (), colours: Sequence[tuple[int, int, int]] = (),
              pose: np.ndarray | None = None, side: int = PHOTO_SIDE) -> tuple[np.ndarray, float]:
    """A photo at screen size (longer side about ``side``: shrunk, or enlarged by a whole factor) with boxes
    [cx, cy, w, h] and a pose drawn on it in photo pixels; returns the picture and its factor (picture / photo).

    Introduced in ``notebooks/07_your_own_image.ipynb``.
    """
    h, w = image.shape[:2]
    factor = side / max(h, w) if max(h, w) > side else float(display_scale(h, w, side))
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    how = cv2.INTER_AREA if factor < 1 else cv2.INTER_NEAREST
    picture = cv2.resize(np.ascontiguousarray(image[..., :3]), size, interpolation=how)
    if len(boxes):
        picture = draw_boxes(picture, [np.r_[b[:2] * factor, b[2:] * factor] for b in boxes], colours, thickness=2)
    if pose is not None:
        picture = draw_pose(picture, pose * factor)
    return picture, factor


def render_box(image: np.ndarray, pose_of: Callable[[np.ndarray], np.ndarray], x0: float, y0: float, x1: float,
               y1: float, side: int = PHOTO_SIDE) -> tuple[np.ndarray, str, dict[str, Any]]:
    """The photo at screen size with the box (x0, y0)-(x1, y1) and the pose ``pose_of(box)`` finds in it."""
    x0, x1 = sorted((float(x0), float(x1)))
    y0, y1 = sorted((float(y0), float(y1)))
    x1, y1 = max(x1, x0 + 1.0), max(y1, y0 + 1.0)  # never an empty box
    box = np.array([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0])
    pose = pose_of(box)
    picture, factor = on_screen(image, [box], [BOX_COLOR], pose, side)
    text = (f"box x0, y0, x1, y1 = {x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f} (photo pixels; shown at "
            f"{picture.shape[1]}×{picture.shape[0]}). Keep it: <code>MY_BOX = ({x0:.0f}, {y0:.0f}, {x1:.0f}, "
            f"{y1:.0f})</code>, or <code>--box={x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}</code>.")
    return picture, text, {"box": box, "corners": (x0, y0, x1, y1), "pose": pose, "factor": factor}


def box_picker(image: np.ndarray, pose_of: Callable[[np.ndarray], np.ndarray], box: np.ndarray,
               side: int = PHOTO_SIDE) -> PoseViewer:
    """Move the person's box over a photo and see the pose found in it; ``box`` [cx, cy, w, h] to start from
    (e.g. the automatic one), ``pose_of(box)`` the (14, 2) pose a cascade finds in a box.

    Introduced in ``notebooks/07_your_own_image.ipynb``.
    """
    h, w = image.shape[:2]
    corners = box_corners(box)
    limits = [(-w / 2, w), (-h / 2, h), (0, 1.5 * w), (0, 1.5 * h)]

    def corner(name: str, value: float, lo: float, hi: float) -> widgets.FloatSlider:
        return widgets.FloatSlider(value=float(round(np.clip(value, lo, hi))), min=round(lo), max=round(hi), step=1,
                                   description=name,
                                   continuous_update=False, readout_format=".0f")

    controls = {name: corner(name, v, lo, hi) for name, v, (lo, hi) in zip(("x0", "y0", "x1", "y1"), corners,
                                                                            limits, strict=True)}
    return PoseViewer("box_picker", controls, lambda x0, y0, x1, y1: render_box(image, pose_of, x0, y0, x1, y1,
                                                                                 side))
