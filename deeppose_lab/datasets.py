"""The pose data sets: LSP, LSP-extended, your own images, and how to find them on disk.

Every data set yields ``Sample``s and exposes its labels as read-only arrays ``joints`` (N, 14, 2) and
``visible`` (N, 14), in the internal pixel convention of ``sample.py``. ``file_offset`` says how the
annotation file's units relate to ours (internal = file + file_offset), so exports go back in the
file's own units.
"""

from __future__ import annotations

import csv
import io
import json
import os
import struct
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import scipy.io

from .geometry import with_spare_channel
from .images import DataError, image_size, load_image
from .sample import MATLAB_OFFSET, ZERO_BASED_OFFSET, Sample, from_file_units
from .skeleton import NUM_JOINTS

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


def data_root() -> Path:
    """``$DEEPPOSE_DATA`` when set, else ``data/`` at the repository root.

    Introduced in ``notebooks/01_data.ipynb``.
    """
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
    # How the images frame their person: "image" where the whole image is the test-time box (LSP: image side
    # about 1.3x the person's extent, centred), "person" where it is not (LSP-extended: 2.5x, off centre), so
    # training crops such images around the person to teach the framing the test box shows.
    framing: str = "image"

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
        """Image i, decoded once, then held as a read-only view that ``geometry.warp_image`` crops fastest."""
        if i not in self._cache:
            self._cache[i] = with_spare_channel(self.load_image(i))
        return self._cache[i]

    def decode_all(self) -> None:
        """Decode every image into the cache now: a bad file is named before any work starts, and what is timed
        afterwards (training data, inference) no longer includes decoding."""
        for i in range(len(self)):
            self.image(i)

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}: index {i} out of range for {len(self)} samples")
        i %= len(self)
        return Sample(self.image(i), self.joints[i], self.visible[i], self.ids[i])

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def framing_of(self, i: int) -> str:
        """The framing of sample i (``framing``; per part for a ``Concat``)."""
        return self.framing

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

    def framing_of(self, i: int) -> str:
        return self.parent.framing_of(self.indices[i])


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

    def _locate(self, i: int) -> tuple[PoseDataset, int]:
        part = int(np.searchsorted(self.offsets, i, side="right") - 1)
        return self.parts[part], i - int(self.offsets[part])

    def image(self, i: int) -> np.ndarray:
        part, j = self._locate(i)
        return part.image(j)

    def framing_of(self, i: int) -> str:
        part, j = self._locate(i)
        return part.framing_of(j)


class ImageFiles(PoseDataset):
    """Images on disk with labels from an annotation file (``unlabelled``: without, for prediction).

    Introduced in ``notebooks/07_your_own_image.ipynb``.
    """

    def __init__(self, name: str, paths: Sequence[Path], joints: np.ndarray, visible: np.ndarray,
                 file_offset: float, ids: Sequence[str] | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        super().__init__(ids or unique_ids(self.paths), joints, visible)
        self.name = name
        self.file_offset = file_offset

    @classmethod
    def unlabelled(cls, paths: Sequence[Path]) -> ImageFiles:
        """Images without labels (every joint hidden at the origin), for prediction; exported in 0-based pixels."""
        n = len(paths)
        return cls("images", paths, np.zeros((n, NUM_JOINTS, 2)), np.zeros((n, NUM_JOINTS), bool), ZERO_BASED_OFFSET)

    def load_image(self, i: int) -> np.ndarray:
        return load_image(self.paths[i])


# --- .mat files -----------------------------------------------------------------------------------

def read_joints_mat(path: Path, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``joints`` from a MATLAB file as (N, 14, 2) coordinates in FILE units and (N, 14) raw flags.

    ``layout`` is "3x14xN" (LSP) or "14x3xN" (LSP-extended); transposing these the wrong way is a classic
    bug, so the expected shape is checked rather than guessed.

    Introduced in ``notebooks/01_data.ipynb``.
    """
    if not path.is_file():
        raise DataError(path, "annotation file not found")
    data = path.read_bytes()  # read once: what is checked below is exactly what scipy parses
    check_mat_joints(path, data)
    try:
        mat = scipy.io.loadmat(io.BytesIO(data), variable_names=["joints"])
    except NotImplementedError as exc:  # scipy's word for a v7.3 (HDF5) file
        raise DataError(path, "is a MATLAB v7.3 (HDF5) file, which cannot be read here; re-save it in MATLAB or "
                              "Octave as v7: save('joints.mat', 'joints', '-v7')" if "7.3" in str(exc)
                        else f"not a readable MATLAB file ({exc})") from None
    except Exception as exc:  # scipy raises several unrelated types for a bad file
        raise DataError(path, f"not a readable MATLAB file ({exc})") from None
    if "joints" not in mat:
        try:
            keys = sorted(name for name, _, _ in scipy.io.whosmat(io.BytesIO(data)))  # headers only
        except Exception:  # noqa: BLE001 - only for the message
            keys = []
        raise DataError(path, f"no variable 'joints' (found {keys})")
    arr = mat["joints"]
    if not isinstance(arr, np.ndarray):  # e.g. a sparse matrix
        raise DataError(path, f"'joints' must be a dense numeric array, got {type(arr).__name__}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        # complex is "numeric" to numpy, but casting it to float would silently drop the imaginary part
        raise DataError(path, f"'joints' must be a real numeric array, got {arr.dtype}")
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
    if len(coords) == 0:
        raise DataError(path, f"'joints' holds no poses (shape {arr.shape})")
    coords = np.asarray(coords, dtype=np.float64)
    bad = ~np.isfinite(coords).all(axis=(1, 2))
    if bad.any():
        first = int(np.argmax(bad))
        raise DataError(path, f"{int(bad.sum())} poses have NaN or infinite coordinates (first: sample {first + 1})")
    return coords, np.asarray(flags, dtype=np.float64)


# scipy's MAT-5 reader (1.17 and earlier) looks up the type code of numeric and char data in a C table without
# a range check, so one corrupt byte in joints.mat can crash the interpreter (SIGSEGV / SIGBUS) instead of
# raising (found by tests/test_fuzz.py; upstream: scipy PRs 25349 and 25829). ``check_mat_joints`` walks the
# element tags the way scipy will and refuses such a file first; only the 'joints' variable is then read, and
# only if it is a plain numeric matrix, so no other variable's body is ever parsed.
MI_NUMERIC = frozenset({1, 2, 3, 4, 5, 6, 7, 9, 12, 13})  # miINT8 … miUINT64, miSINGLE, miDOUBLE
MX_NUMERIC = frozenset(range(6, 16))  # mxDOUBLE_CLASS … mxUINT64_CLASS
MX_NAMES = {1: "cell", 2: "struct", 3: "object", 4: "char", 5: "sparse", 16: "function", 17: "opaque"}
MI_MATRIX, MI_COMPRESSED, MX_OPAQUE = 14, 15, 17
MAX_CHECKED_BYTES = 1 << 26  # how far a compressed variable is inflated to find its header (64 MiB)


class _Short(Exception):
    """The bytes end before the element being checked (scipy will fail on them too, with a Python error)."""


def _tag(buf: bytes, pos: int, endian: str) -> tuple[int, int, int, int]:
    """(type code, byte count, data start, position after) of the data element at ``pos``, as scipy reads it."""
    if pos + 8 > len(buf):
        raise _Short
    first, second = struct.unpack_from(endian + "II", buf, pos)
    if first >> 16:  # "small data element": type and size in the first four bytes, the data in the next four
        return first & 0xFFFF, first >> 16, pos + 4, pos + 8
    return first, second, pos + 8, pos + 8 + second + (-second % 8)  # data padded to 8 bytes


def _check_matrix(path: Path, buf: bytes, pos: int, endian: str) -> None:
    """Refuse a variable named 'joints' at ``pos`` that is not a real numeric matrix with valid type codes."""
    if pos + 32 > len(buf):
        raise _Short
    if struct.unpack_from(endian + "I", buf, pos)[0] != MI_MATRIX:
        return  # scipy raises "Expecting miMATRIX" itself
    flags = struct.unpack_from(endian + "I", buf, pos + 16)[0]  # skip the tag and the flags element's tag
    mclass, complex_flag = flags & 0xFF, flags >> 11 & 1
    p = pos + 24
    if mclass != MX_OPAQUE:
        p = _tag(buf, p, endian)[3]  # skip the dimensions
    _, count, start, after = _tag(buf, p, endian)  # the name
    if buf[start:start + count] != b"joints":
        return  # another variable: scipy skips its body
    if mclass not in MX_NUMERIC:
        raise DataError(path, f"'joints' must be a real numeric array, got a MATLAB {MX_NAMES.get(mclass, mclass)} "
                              "array")
    if complex_flag:
        raise DataError(path, "'joints' must be a real numeric array, got complex values")
    code = _tag(buf, after, endian)[0]
    if code not in MI_NUMERIC:
        raise DataError(path, f"not a readable MATLAB file ('joints' has the invalid data type code {code})")


def _inflate(compressed: bytes, size: int) -> bytes:
    """Up to ``size`` bytes of a zlib stream; whatever came out before a corrupt spot."""
    d, out = zlib.decompressobj(), b""
    try:
        for i in range(0, len(compressed), 1 << 16):
            out += d.decompress(compressed[i:i + (1 << 16)], size - len(out))
            if len(out) >= size or d.unconsumed_tail:
                break
    except zlib.error:
        pass
    return out


def check_mat_joints(path: Path, data: bytes) -> None:
    """Walk a MAT-5 file's variables and refuse a corrupt or non-numeric 'joints' before scipy parses it."""
    if len(data) < 128 or 0 in data[:4] or data[124 + int(data[126] == ord("I"))] != 1:
        return  # MATLAB 4 (pure Python in scipy), 7.3 (refused by scipy) or not a MAT file at all
    endian = "<" if data[126:128] == b"IM" else ">"
    pos = 128
    while pos + 8 <= len(data):
        code, count = struct.unpack_from(endian + "II", data, pos)
        if count == 0:
            return
        try:
            if code != MI_COMPRESSED:
                _check_matrix(path, data, pos, endian)
            else:
                size = 4096
                while True:
                    inner = _inflate(data[pos + 8:pos + 8 + count], size)
                    try:
                        _check_matrix(path, inner, 0, endian)
                        break
                    except _Short:
                        if len(inner) < size or size >= MAX_CHECKED_BYTES:
                            raise
                        size *= 8
        except _Short:
            return  # scipy stops with an error at the same spot
        pos += 8 + count


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

    Introduced in ``notebooks/01_data.ipynb``.
    """
    folder = Path(root) if root is not None else data_root() / "lsp"
    coords, flags = read_joints_mat(folder / "joints.mat", "3x14xN")
    n = len(coords)
    paths = [folder / "images" / f"im{i + 1:04d}.jpg" for i in range(n)]
    chosen = {"train": range(0, min(1000, n)), "test": range(1000, n), "all": range(n)}.get(split)
    if chosen is None:
        raise ValueError(f"LSP split must be 'train', 'test' or 'all', got {split!r}")
    idx = list(chosen)
    if not idx:
        raise DataError(folder / "joints.mat", f"has {n} poses, so LSP's {split} split (images "
                                               f"{'1001-2000' if split == 'test' else '1-1000'}) is empty; the full "
                                               "LSP joints.mat holds 2000")
    check_images_exist([paths[i] for i in idx], skip_missing=False, what="LSP")
    visible = flags[idx] == 0  # LSP: 1 means occluded
    return ImageFiles(f"lsp-{split}", [paths[i] for i in idx], from_file_units(coords[idx], MATLAB_OFFSET), visible,
                      MATLAB_OFFSET)


def load_lspet(root: Path | None = None, verbose: bool = True) -> ImageFiles:
    """LSP-extended: ``joints`` 14×3×N with flag 1 = VISIBLE; uses whatever subset of images is present.

    Joints outside the image are marked not visible (unannotated ones can lie far outside).

    Introduced in ``notebooks/01_data.ipynb``.
    """
    folder = Path(root) if root is not None else lspet_folder() or data_root() / "lspet"
    coords, flags = read_joints_mat(folder / "joints.mat", "14x3xN")
    paths = [folder / "images" / f"im{i + 1:05d}.jpg" for i in range(len(coords))]
    keep = check_images_exist(paths, skip_missing=True, what="LSP-extended")
    if not keep:
        raise DataError(folder / "images", f"none of the {len(paths)} annotated LSP-extended images is present")
    if verbose:
        print(f"LSP-extended: using {len(keep)} of {len(paths)} annotated images (the others are not on disk)")
    joints = from_file_units(coords[keep], MATLAB_OFFSET)
    visible = flags[keep] == 1
    sizes = np.array([image_size(paths[i]) for i in keep], dtype=np.float64)  # (h, w)
    inside = ((joints >= 0) & (joints <= sizes[:, None, ::-1])).all(axis=2)
    out = ImageFiles("lspet", [paths[i] for i in keep], joints, visible & inside, MATLAB_OFFSET)
    out.framing = "person"  # 2.5x the person's extent and off centre: not LSP's test framing
    return out


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
                visible = np.asarray(s.get("visible", [True] * NUM_JOINTS))
                if visible.dtype.kind not in "biuf":  # np.asarray(["false"], bool) would silently be True
                    raise DataError(path, f"sample {k + 1}: 'visible' must be true/false or 1/0 flags")
                visible = visible != 0
                entries.append((str(s["image"]), joints, visible))
                check_entry_shapes(path, k, joints, visible)
        else:
            # utf-8-sig: a spreadsheet's byte-order mark would glue itself to the first column's name
            with path.open(newline="", encoding="utf-8-sig") as fh:
                for row in csv.DictReader(fh, dialect=csv_dialect(fh)):
                    joints = np.array([[float(row[f"x{j}"]), float(row[f"y{j}"])] for j in range(NUM_JOINTS)])
                    visible = np.array([float(row[f"v{j}"]) != 0 for j in range(NUM_JOINTS)])
                    entries.append((row["image"], joints, visible))
    except DataError:
        raise
    except (KeyError, TypeError, ValueError, csv.Error, RecursionError) as exc:  # RecursionError: absurdly nested JSON
        raise DataError(path, f"malformed annotation entry {len(entries) + 1}: {exc!r}") from None
    return entries


def csv_dialect(fh: io.TextIOBase) -> type[csv.Dialect] | csv.Dialect:
    """Commas, or the semicolons and tabs spreadsheet programs write in some locales: only the delimiter is sniffed
    from the header; quoting stays the spreadsheet standard (``csv.excel``)."""
    header = fh.readline()
    fh.seek(0)
    try:
        sniffed = csv.Sniffer().sniff(header, delimiters=",;\t").delimiter
    except csv.Error:
        return csv.excel

    class Spreadsheet(csv.excel):
        delimiter = sniffed

    return Spreadsheet


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
        raise DataError(folder, "no annotations.json or annotations.csv here (their format: the README's Data "
                                "section, or deeppose_lab.datasets.OWN_FORMAT_DOC)")
    entries = parse_own_annotations(ann)
    if not entries:
        raise DataError(ann, "no samples in the annotation file")
    check_listed_once(ann, [name for name, _, _ in entries])
    kept, problems = [], []
    for name, joints, visible in entries:
        problem = None
        if not np.isfinite(joints).all():
            problem = f"{name}: NaN or infinite coordinates"
        else:
            problem = image_problem(folder, name)
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
    joints = from_file_units(np.stack([j for _, j, _ in kept]), ZERO_BASED_OFFSET)
    visible = np.stack([v for _, _, v in kept])
    return ImageFiles(folder.name, paths, joints, visible, ZERO_BASED_OFFSET)


def check_listed_once(ann: Path, names: Sequence[str]) -> None:
    """Refuse an image listed twice: its two entries could land one in training and one in the test split."""
    first: dict[str, int] = {}
    for k, name in enumerate(names):
        key = os.path.normpath(name)
        if key in first:
            raise DataError(ann, f"{name} is listed twice (entries {first[key] + 1} and {k + 1}); list each image "
                                 "once, or its labels could land in both the training and the test split")
        first[key] = k


def unique_ids(paths: Sequence[Path]) -> list[str]:
    """A name per image that no other image of the list shares: its stem, or with its folders when stems collide
    (``a/x.jpg`` and ``b/x.jpg`` become ``a-x`` and ``b-x``), so ids and output files never overwrite each other."""
    ids = [p.stem for p in paths]
    for depth in range(1, 1 + max((len(p.parts) for p in paths), default=0)):
        counts = Counter(ids)
        if len(counts) == len(ids):
            return ids
        ids = ["-".join([*p.parent.parts[-depth:], p.stem]) if counts[i] > 1 else i
               for p, i in zip(paths, ids, strict=True)]
    counts, seen = Counter(ids), Counter()
    out = []
    for i, p in zip(ids, paths, strict=True):  # what is left: the same name with another extension, or one file twice
        seen[i] += 1
        out.append(i if counts[i] == 1 else f"{i}{p.suffix.replace('.', '-')}-{seen[i]}")
    return out


def image_problem(folder: Path, name: str) -> str | None:
    """Why ``folder / name`` cannot serve as a sample's image, or None when it can."""
    if Path(name).is_absolute() or ".." in Path(name).parts:
        return f"{name}: image path must be relative and stay inside {folder}"
    try:
        if not (folder / name).is_file():
            return f"{name}: image file not found"
    except OSError as exc:  # e.g. a name longer than the file system allows
        return f"{name}: unusable image path ({exc.strerror or exc})"
    try:  # header only: an empty or non-image file is unusable too, and is better found now than mid-epoch
        image_size(folder / name)
    except DataError as exc:
        return f"{name}: {exc.problem}"
    return None


def lsp_available(root: Path | None = None) -> bool:
    """Whether LSP's ``lsp/joints.mat`` is under the data root (``data_root``, or ``root``).

    Introduced in ``notebooks/01_data.ipynb``.
    """
    return ((Path(root) if root else data_root()) / "lsp" / "joints.mat").is_file()


def lspet_folder(root: Path | None = None) -> Path | None:
    """The LSP-extended folder under the data root: all of it (``lspet/``) when there, else its first 400.

    Introduced in ``notebooks/01_data.ipynb``.
    """
    base = Path(root) if root else data_root()
    for name in ("lspet", "lspet400"):
        if (base / name / "joints.mat").is_file():
            return base / name
    return None
