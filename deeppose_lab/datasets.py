"""The pose data sets: LSP, LSP-extended, your own images, and how to find them on disk.

Every data set yields ``Sample``s and exposes its labels as read-only arrays ``joints`` (N, 14, 2) and
``visible`` (N, 14), in the internal pixel convention of ``sample.py``. ``file_offset`` says how the
annotation file's units relate to ours (internal = file + file_offset), so exports go back in the
file's own units.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import scipy.io

from .images import DataError, image_size, load_image
from .sample import Sample
from .skeleton import NUM_JOINTS

REPO_DATA = Path(__file__).resolve().parents[1] / "data"
MATLAB_OFFSET = -0.5  # MATLAB puts the first pixel centre at 1.0, we put it at 0.5
ZERO_BASED_OFFSET = 0.5  # image viewers / OpenCV put the first pixel centre at 0.0


def data_root() -> Path:
    """``$DEEPPOSE_DATA`` when set, else ``data/`` at the repository root."""
    env = os.environ.get("DEEPPOSE_DATA")
    return Path(env).expanduser() if env else REPO_DATA


def readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only copy: cached labels must never be changed in place by an epoch's augmentation."""
    out = np.array(arr, copy=True)
    out.setflags(write=False)
    return out


class PoseDataset(Sequence[Sample]):
    """Base class: labels in memory, images produced by ``image(i)`` (decoded once and cached)."""

    name: str = "poses"
    file_offset: float = 0.0

    def __init__(self, ids: Sequence[str], joints: np.ndarray, visible: np.ndarray) -> None:
        self.ids = list(ids)
        self.joints = readonly(np.asarray(joints, dtype=np.float64))
        self.visible = readonly(np.asarray(visible, dtype=bool))
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def load_image(self, i: int) -> np.ndarray:  # pragma: no cover - overridden
        raise NotImplementedError

    def image(self, i: int) -> np.ndarray:
        if i not in self._cache:
            img = self.load_image(i)
            img.setflags(write=False)
            self._cache[i] = img
        return self._cache[i]

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}: index {i} out of range for {len(self)} samples")
        i %= len(self)
        return Sample(self.image(i), self.joints[i], self.visible[i], self.ids[i])

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def subset(self, indices: Sequence[int], name: str | None = None) -> Subset:
        return Subset(self, indices, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} samples)"


class Subset(PoseDataset):
    """A view on some samples of another data set, sharing its image cache."""

    def __init__(self, parent: PoseDataset, indices: Sequence[int], name: str | None = None) -> None:
        self.parent = parent
        self.indices = [int(i) for i in indices]
        super().__init__([parent.ids[i] for i in self.indices], parent.joints[self.indices],
                         parent.visible[self.indices])
        self.name = name or parent.name
        self.file_offset = parent.file_offset

    def image(self, i: int) -> np.ndarray:
        return self.parent.image(self.indices[i])


class Concat(PoseDataset):
    """Several data sets as one (LSP train + LSP-extended), keeping each one's images."""

    def __init__(self, parts: Sequence[PoseDataset], name: str | None = None) -> None:
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        super().__init__([f"{p.name}/{i}" for p in self.parts for i in p.ids],
                         np.concatenate([p.joints for p in self.parts]),
                         np.concatenate([p.visible for p in self.parts]))
        self.name = name or "+".join(p.name for p in self.parts)
        # Exports need the annotation units: shared by all parts, or undefined (NaN) when they disagree.
        units = {p.file_offset for p in self.parts}
        self.file_offset = units.pop() if len(units) == 1 else float("nan")

    def image(self, i: int) -> np.ndarray:
        part = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.parts[part].image(i - int(self.offsets[part]))


class ImageFiles(PoseDataset):
    """Images on disk with labels from an annotation file."""

    def __init__(self, name: str, paths: Sequence[Path], joints: np.ndarray, visible: np.ndarray,
                 file_offset: float, ids: Sequence[str] | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        super().__init__(ids or [p.stem for p in self.paths], joints, visible)
        self.name = name
        self.file_offset = file_offset

    def load_image(self, i: int) -> np.ndarray:
        return load_image(self.paths[i])


# --- .mat files -----------------------------------------------------------------------------------

def read_joints_mat(path: Path, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``joints`` from a MATLAB file as (N, 14, 2) coordinates in FILE units and (N, 14) raw flags.

    ``layout`` is "3x14xN" (LSP) or "14x3xN" (LSP-extended); transposing these the wrong way is a classic
    bug, so the expected shape is checked rather than guessed.
    """
    if not path.is_file():
        raise DataError(path, "annotation file not found")
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several unrelated types for a bad file
        raise DataError(path, f"not a readable MATLAB file ({exc})") from None
    if "joints" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(path, f"no variable 'joints' (found {keys})")
    arr = mat["joints"]
    if not isinstance(arr, np.ndarray) or not np.issubdtype(arr.dtype, np.number):
        raise DataError(path, f"'joints' must be a numeric array, got {getattr(arr, 'dtype', type(arr))}")
    if layout == "3x14xN":
        if arr.ndim != 3 or arr.shape[:2] != (3, NUM_JOINTS):
            raise DataError(path, f"'joints' must have shape (3, 14, N) for LSP, got {arr.shape}")
        coords, flags = arr[:2].transpose(2, 1, 0), arr[2].T
    elif layout == "14x3xN":
        if arr.ndim != 3 or arr.shape[:2] != (NUM_JOINTS, 3):
            raise DataError(path, f"'joints' must have shape (14, 3, N) for LSP-extended, got {arr.shape}")
        coords, flags = arr[:, :2].transpose(2, 0, 1), arr[:, 2].T
    else:
        raise ValueError(f"unknown layout {layout!r}")
    coords = np.asarray(coords, dtype=np.float64)
    bad = ~np.isfinite(coords).all(axis=(1, 2))
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(path, f"{int(bad.sum())} poses have NaN or infinite coordinates (first: sample {first + 1})")
    return coords, np.asarray(flags, dtype=np.float64)


def check_images_exist(paths: Sequence[Path], skip_missing: bool, what: str) -> list[int]:
    """Indices whose image exists; a missing one is an error naming it unless skipping was asked for."""
    keep = [i for i, p in enumerate(paths) if p.is_file()]
    if len(keep) < len(paths) and not skip_missing:
        missing = next(p for p in paths if not p.is_file())
        raise DataError(missing,
                        f"image file not found ({len(paths) - len(keep)} of {len(paths)} {what} images missing)")
    return keep


def load_lsp(root: Path | None = None, split: str = "train") -> ImageFiles:
    """Leeds Sports Pose: 2000 images, ``joints`` 3×14×2000 with flag 1 = OCCLUDED (inverted here).

    The standard split is images 1–1000 for training and 1001–2000 for testing.
    """
    folder = Path(root) if root is not None else data_root() / "lsp"
    coords, flags = read_joints_mat(folder / "joints.mat", "3x14xN")
    n = len(coords)
    paths = [folder / "images" / f"im{i + 1:04d}.jpg" for i in range(n)]
    chosen = {"train": range(0, min(1000, n)), "test": range(1000, n), "all": range(n)}.get(split)
    if chosen is None:
        raise ValueError(f"LSP split must be 'train', 'test' or 'all', got {split!r}")
    idx = list(chosen)
    check_images_exist([paths[i] for i in idx], skip_missing=False, what="LSP")
    visible = flags[idx] == 0  # LSP: 1 means occluded
    return ImageFiles(f"lsp-{split}", [paths[i] for i in idx], coords[idx] + MATLAB_OFFSET, visible, MATLAB_OFFSET)


def load_lspet(root: Path | None = None, verbose: bool = True) -> ImageFiles:
    """LSP-extended: ``joints`` 14×3×N with flag 1 = VISIBLE; uses whatever subset of images is present.

    Joints outside the image are marked not visible (unannotated ones can lie far outside).
    """
    folder = Path(root) if root is not None else data_root() / "lspet"
    if root is None and not folder.exists() and (data_root() / "lspet400").exists():
        folder = data_root() / "lspet400"
    coords, flags = read_joints_mat(folder / "joints.mat", "14x3xN")
    paths = [folder / "images" / f"im{i + 1:05d}.jpg" for i in range(len(coords))]
    keep = check_images_exist(paths, skip_missing=True, what="LSP-extended")
    if not keep:
        raise DataError(folder / "images", f"none of the {len(paths)} annotated LSP-extended images is present")
    if verbose:
        print(f"LSP-extended: using {len(keep)} of {len(paths)} annotated images (the others are not on disk)")
    joints = coords[keep] + MATLAB_OFFSET
    visible = flags[keep] == 1
    sizes = np.array([image_size(paths[i]) for i in keep], dtype=np.float64)  # (h, w)
    inside = ((joints >= 0) & (joints <= sizes[:, None, ::-1])).all(axis=2)
    return ImageFiles("lspet", [paths[i] for i in keep], joints, visible & inside, MATLAB_OFFSET)


# --- your own images ------------------------------------------------------------------------------

OWN_FORMAT_DOC = """\
Your own images: a folder with the images and ONE annotation file, `annotations.json` or `annotations.csv`.
Coordinates are pixels with the centre of the top-left pixel at (0, 0), as image viewers and OpenCV report
them; the 14 joints are in LSP order (see deeppose_lab.skeleton.JOINT_NAMES).
  annotations.json: {"samples": [{"image": "a.jpg", "joints": [[x, y], ... 14 pairs],
                                  "visible": [true, ... 14 flags]  (optional, default all true)}]}
  annotations.csv:  header `image,x0,y0,v0,x1,y1,v1,...,x13,y13,v13`, one row per image (v = 1 visible, 0 hidden).
"""


def parse_own_annotations(path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(image name, joints (14, 2) in file units, visible (14,)) per entry of a JSON or CSV annotation file."""
    entries: list[tuple[str, np.ndarray, np.ndarray]] = []
    try:
        if path.suffix.lower() == ".json":
            doc = json.loads(path.read_text())
            if not isinstance(doc, dict) or not isinstance(doc.get("samples"), list):
                raise DataError(path, "expected a JSON object with a list 'samples'")
            for k, s in enumerate(doc["samples"]):
                joints = np.asarray(s["joints"], dtype=np.float64)
                visible = np.asarray(s.get("visible", [True] * NUM_JOINTS), dtype=bool)
                entries.append((str(s["image"]), joints, visible))
                check_entry_shapes(path, k, joints, visible)
        else:
            with path.open(newline="") as fh:
                for row in csv.DictReader(fh):
                    joints = np.array([[float(row[f"x{j}"]), float(row[f"y{j}"])] for j in range(NUM_JOINTS)])
                    visible = np.array([float(row[f"v{j}"]) != 0 for j in range(NUM_JOINTS)])
                    entries.append((row["image"], joints, visible))
    except DataError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(path, f"malformed annotation entry {len(entries) + 1}: {exc!r}") from None
    return entries


def check_entry_shapes(path: Path, k: int, joints: np.ndarray, visible: np.ndarray) -> None:
    if joints.shape != (NUM_JOINTS, 2):
        raise DataError(path, f"sample {k + 1}: 'joints' must be 14 [x, y] pairs, got shape {joints.shape}")
    if visible.shape != (NUM_JOINTS,):
        raise DataError(path, f"sample {k + 1}: 'visible' must have 14 flags, got shape {visible.shape}")


def load_folder(folder: Path, skip_bad: bool = False) -> ImageFiles:
    """Your own images (format in ``OWN_FORMAT_DOC``); ``skip_bad`` drops unusable entries and counts them."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "not a folder")
    candidates = [folder / "annotations.json", folder / "annotations.csv"]
    ann = next((p for p in candidates if p.is_file()), None)
    if ann is None:
        raise DataError(folder, "no annotations.json or annotations.csv here\n" + OWN_FORMAT_DOC)
    entries = parse_own_annotations(ann)
    if not entries:
        raise DataError(ann, "no samples in the annotation file")
    kept, problems = [], []
    for name, joints, visible in entries:
        problem = None
        if not np.isfinite(joints).all():
            problem = f"{name}: NaN or infinite coordinates"
        elif not (folder / name).is_file():
            problem = f"{name}: image file not found"
        else:
            try:  # header only: an empty or non-image file is unusable too, and is better found now than mid-epoch
                image_size(folder / name)
            except DataError as exc:
                problem = f"{name}: {exc.problem}"
        if problem is None:
            kept.append((name, joints, visible))
        elif skip_bad:
            problems.append(problem)
        else:
            raise DataError(ann, problem)
    if problems:
        print(f"{folder.name}: skipped {len(problems)} of {len(entries)} samples ({problems[0]}, …)")
    if not kept:
        raise DataError(ann, "no usable samples")
    paths = [folder / name for name, _, _ in kept]
    joints = np.stack([j for _, j, _ in kept]) + ZERO_BASED_OFFSET
    visible = np.stack([v for _, _, v in kept])
    return ImageFiles(folder.name, paths, joints, visible, ZERO_BASED_OFFSET)


def lsp_available(root: Path | None = None) -> bool:
    return ((Path(root) if root else data_root()) / "lsp" / "joints.mat").is_file()


def lspet_folder(root: Path | None = None) -> Path | None:
    base = Path(root) if root else data_root()
    for name in ("lspet", "lspet400"):
        if (base / name / "joints.mat").is_file():
            return base / name
    return None
