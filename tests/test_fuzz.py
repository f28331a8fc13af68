"""Fuzzing the readers of files a student brings, and the geometry properties test_geometry.py does not cover.

Readers: ``read_joints_mat`` (mutated LSP / LSP-extended / synthetic joints.mat), ``load_folder`` (mutated
annotations.json / .csv) and ``load_image`` / ``image_size`` (bit flips, overwritten headers, truncations,
insertions and header splices of JPEG, PNG, GIF, BMP, TIFF and WebP files). The only allowed outcomes are a
valid result (shapes and dtypes checked) or a ``DataError`` that names the file; anything else fails, and the
input is saved under the test's tmp_path together with the seed that replays it.

Each reader gets ``DEEPPOSE_FUZZ_ITERATIONS`` mutations (150 by default, a few seconds in all; try 5000 for a
longer hunt) from the seed ``DEEPPOSE_FUZZ_SEED``. The real LSP files are used as seeds when present, synthetic
files always, so the test never skips. The MAT-file fuzz runs in a child process: scipy's MAT reader has crashed
the interpreter on corrupt files (SIGSEGV), and a crash must fail this test, not end the test session.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, features

from deeppose_lab import datasets as D
from deeppose_lab import geometry as g
from deeppose_lab.images import DataError, image_size, load_image
from deeppose_lab.skeleton import NUM_JOINTS, TORSO_PAIR, flip_permutation, torso_diameter

ITERATIONS = int(os.environ.get("DEEPPOSE_FUZZ_ITERATIONS", "150"))
SEED = int(os.environ.get("DEEPPOSE_FUZZ_SEED", "1"))
JSON_TOKENS = [b"null", b"1e999", b"-", b"NaN", b"true", b"[", b"]", b"{", b"}", b'"', b",", b":", b"\\u0000",
               b"../", b"/etc/passwd", b"[[[[[[[[", b"\xff", b"1" * 400, b'"visible": ["false"]']


# --- mutations ------------------------------------------------------------------------------------------------

def mutate(data: bytes, rng: np.random.Generator, donors: list[bytes], tokens: list[bytes] = ()) -> bytes:
    """One random damage: bit flips, overwritten header bytes, truncation, insertion, deletion, a header splice."""
    out = bytearray(data)
    kind = int(rng.integers(0, 7 if tokens else 6))
    n = len(out)
    if n == 0:
        return bytes(rng.integers(0, 256, 16, dtype=np.uint8))
    if kind == 0:  # bit flips anywhere
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(0, n))
            out[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # overwrite bytes in the header, where sizes and types live
        for _ in range(int(rng.integers(1, 6))):
            out[int(rng.integers(0, min(n, 512)))] = int(rng.integers(0, 256))
    elif kind == 2:  # truncate
        out = out[:int(rng.integers(0, n))]
    elif kind == 3:  # insert random bytes
        i = int(rng.integers(0, n + 1))
        out[i:i] = bytes(rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8))
    elif kind == 4:  # delete a chunk
        i = int(rng.integers(0, n))
        del out[i:i + int(rng.integers(1, 256))]
    elif kind == 5:  # splice: the head of one file on the body of another
        donor = donors[int(rng.integers(0, len(donors)))]
        cut = int(rng.integers(0, min(n, len(donor), 1024) + 1))
        out = bytearray(donor[:cut]) + out[cut:]
    else:  # a syntax token in a text format
        i = int(rng.integers(0, n + 1))
        out[i:i] = tokens[int(rng.integers(0, len(tokens)))]
    return bytes(out)


def failure(what: str, path: Path, exc: BaseException | None, iteration: int) -> str:
    keep = path.with_name(f"failing-{iteration}-{path.name}")
    keep.write_bytes(path.read_bytes())
    return (f"{what} on mutated input {keep} (DEEPPOSE_FUZZ_SEED={SEED}, iteration {iteration}): "
            f"{type(exc).__name__ if exc else ''} {exc or ''}")


def expect_named(err: DataError, *paths: Path) -> None:
    assert err.path in paths and str(err).startswith(f"{err.path}: "), str(err)


# --- images ------------------------------------------------------------------------------------------------------

def image_seeds(data_root: Path) -> list[bytes]:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(23, 31, 3), dtype=np.uint8)
    out = []

    def save(img: Image.Image, fmt: str, **kwargs) -> None:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **kwargs)
        out.append(buf.getvalue())

    rgb = Image.fromarray(arr)
    for fmt in ["JPEG", "PNG", "GIF", "BMP", "TIFF"] + (["WEBP"] if features.check("webp") else []):
        save(rgb, fmt)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated phone photo: the EXIF path of both readers
    save(rgb, "JPEG", exif=exif, quality=90)
    save(rgb, "PNG", exif=exif)
    save(rgb.convert("CMYK"), "JPEG")
    save(Image.fromarray(arr[..., 0].astype(np.uint16) * 257), "PNG")  # 16-bit grey
    pal = rgb.convert("P")
    save(pal, "PNG", transparency=0)
    save(Image.fromarray(np.dstack([arr, arr[..., :1]]), "RGBA"), "PNG")
    for rel in ["lsp/images/im0001.jpg", "lsp/images/im1234.jpg", "lspet400/images/im00001.jpg",
                "lspet/images/im00001.jpg"]:
        if (data_root / rel).is_file():
            out.append((data_root / rel).read_bytes())
    return out


def test_fuzz_image_loader(tmp_path, data_root):
    seeds = image_seeds(data_root)
    rng = np.random.default_rng([SEED, 1])
    ok = refused = 0
    for it in range(ITERATIONS):
        path = tmp_path / "image.jpg"
        path.write_bytes(mutate(seeds[int(rng.integers(0, len(seeds)))], rng, seeds))
        results = {}
        for reader in (load_image, image_size):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # Pillow may warn about a damaged file; it must not raise otherwise
                    results[reader] = reader(path)
            except DataError as err:
                expect_named(err, path)
                refused += 1
            except Exception as exc:  # noqa: BLE001 - any other exception is the bug this test looks for
                pytest.fail(failure(f"{reader.__name__} raised", path, exc, it))
        arr = results.get(load_image)
        if arr is not None:
            assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3, \
                failure(f"load_image returned {getattr(arr, 'shape', arr)}", path, None, it)
            assert arr.shape[0] >= 1 and arr.shape[1] >= 1 and arr.flags.c_contiguous
            ok += 1
        size = results.get(image_size)
        if size is not None:
            assert len(size) == 2 and all(isinstance(v, int) and v >= 1 for v in size), size
            if arr is not None:  # a data set checks joints against the header size: it must be the decoded size
                assert size == arr.shape[:2], failure(f"image_size {size} != decoded {arr.shape}", path, None, it)
    assert refused > 0 and (ok > 0 or ITERATIONS < 50)  # both outcomes were exercised


# --- annotation files of your own images ----------------------------------------------------------------------------

def own_folder(folder: Path) -> tuple[bytes, bytes]:
    """Three tiny images and valid annotations.json / .csv texts for them."""
    folder.mkdir()
    names = ["a.png", "b.png", "sub/c.png"]
    for name in names:
        (folder / name).parent.mkdir(exist_ok=True)
        Image.new("RGB", (12, 9), (40, 80, 120)).save(folder / name)
    rng = np.random.default_rng(0)
    joints = rng.uniform(0, 11, size=(3, NUM_JOINTS, 2)).round(2)
    visible = rng.random((3, NUM_JOINTS)) > 0.2
    doc = {"samples": [{"image": n, "joints": j.tolist(), "visible": v.tolist()}
                       for n, j, v in zip(names, joints, visible, strict=True)]}
    header = ["image"] + [f"{a}{j}" for j in range(NUM_JOINTS) for a in "xyv"]
    rows = [",".join(header)] + [",".join([n] + [f"{x},{y},{int(f)}" for (x, y), f in zip(j, v, strict=True)])
                                 for n, j, v in zip(names, joints, visible, strict=True)]
    return json.dumps(doc, indent=1).encode(), ("\n".join(rows) + "\n").encode()


def check_own_dataset(ds: D.ImageFiles, folder: Path) -> None:
    n = len(ds)
    assert n >= 1 and len(ds.ids) == n and all(isinstance(i, str) for i in ds.ids)
    assert ds.joints.shape == (n, NUM_JOINTS, 2) and ds.joints.dtype == np.float64 and np.isfinite(ds.joints).all()
    assert ds.visible.shape == (n, NUM_JOINTS) and ds.visible.dtype == bool
    for p in ds.paths:  # never a file outside the folder
        assert p.is_file() and p.resolve().is_relative_to(folder.resolve()), p


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_fuzz_own_annotations(tmp_path, fmt, capsys):
    folder = tmp_path / "mine"
    good = dict(zip(["json", "csv"], own_folder(folder), strict=True))
    ann = folder / f"annotations.{fmt}"
    rng = np.random.default_rng([SEED, 2, fmt == "csv"])
    ok = refused = 0
    for it in range(ITERATIONS):
        ann.write_bytes(mutate(good[fmt], rng, list(good.values()), JSON_TOKENS))
        try:
            ds = D.load_folder(folder, skip_bad=bool(it % 2))
        except DataError as err:
            expect_named(err, ann, folder)
            refused += 1
            continue
        except Exception as exc:  # noqa: BLE001
            pytest.fail(failure("load_folder raised", ann, exc, it))
        check_own_dataset(ds, folder)
        ok += 1
    capsys.readouterr()  # "skipped k of n samples" lines
    assert refused > 0 and (ok > 0 or ITERATIONS < 50)


# --- joints.mat, in a child process -------------------------------------------------------------------------------

def mat_seeds(data_root: Path) -> list[tuple[bytes, str]]:
    rng = np.random.default_rng(0)
    coords = rng.uniform(1, 150, size=(2, NUM_JOINTS, 6))
    flags = rng.integers(0, 2, size=(1, NUM_JOINTS, 6)).astype(np.float64)
    lsp = np.concatenate([coords, flags])  # (3, 14, N)
    out = []
    for arr, layout, compress, extra in [
        (lsp, "3x14xN", False, {}),
        (lsp.transpose(1, 0, 2), "14x3xN", True, {}),
        (lsp, "3x14xN", True, {"name": "hello", "cell": np.array([[1.0, "x"]], dtype=object),
                              "info": {"a": np.arange(3.0)}}),
        (lsp.transpose(1, 0, 2).astype(np.int16), "14x3xN", False, {"zz": np.eye(2)}),
    ]:
        buf = io.BytesIO()
        scipy.io.savemat(buf, {**extra, "joints": arr}, do_compression=compress)
        out.append((buf.getvalue(), layout))
    for rel, layout in [("lsp/joints.mat", "3x14xN"), ("lspet400/joints.mat", "14x3xN"),
                        ("lspet/joints.mat", "14x3xN")]:
        if (data_root / rel).is_file():
            out.append(((data_root / rel).read_bytes(), layout))
    return out


def elements(data: bytes) -> list[tuple[int, int, int]]:
    """(position, type code, size) of a MAT-5 file's top-level elements."""
    pos, out = 128, []
    while pos + 8 <= len(data):
        code, size = struct.unpack_from("<II", data, pos)
        out.append((pos, code, size))
        pos += 8 + size
    return out


def mutate_mat(data: bytes, rng: np.random.Generator, donors: list[bytes]) -> bytes:
    """Byte-level damage, or damage INSIDE a compressed variable, recompressed so that zlib does not catch it."""
    compressed = [e for e in elements(data) if e[1] == 15]
    if compressed and rng.random() < 0.4:
        pos, _, size = compressed[int(rng.integers(0, len(compressed)))]
        try:
            inner = bytearray(zlib.decompress(data[pos + 8:pos + 8 + size]))
        except zlib.error:
            return mutate(data, rng, donors)
        for _ in range(int(rng.integers(1, 4))):
            inner[int(rng.integers(0, min(len(inner), 160)))] = int(rng.integers(0, 256))
        packed = zlib.compress(bytes(inner))
        return data[:pos] + struct.pack("<II", 15, len(packed)) + packed + data[pos + 8 + size:]
    return mutate(data, rng, donors)


def check_joints_result(coords: np.ndarray, flags: np.ndarray) -> None:
    n = len(coords)
    assert n >= 1 and coords.shape == (n, NUM_JOINTS, 2) and coords.dtype == np.float64
    assert np.isfinite(coords).all()
    assert flags.shape == (n, NUM_JOINTS) and flags.dtype == np.float64


def mat_worker(data_root: str, workdir: str, iterations: int, seed: int) -> None:
    """Run in the child: mutate, write ``current.mat`` (kept if the process dies), read; report other exceptions."""
    seeds = mat_seeds(Path(data_root))
    donors = [s for s, _ in seeds]
    rng = np.random.default_rng([seed, 3])
    work = Path(workdir)
    path = work / "joints.mat"
    bad, counts = [], {"ok": 0, "refused": 0}
    for it in range(iterations):
        data, layout = seeds[int(rng.integers(0, len(seeds)))]
        path.write_bytes(mutate_mat(data, rng, donors))
        (work / "current.txt").write_text(f"{it} {layout}")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                check_joints_result(*D.read_joints_mat(path, layout))
            counts["ok"] += 1
        except DataError as err:
            if err.path != path or not str(err).startswith(f"{path}: "):
                bad.append(f"iteration {it}: DataError not naming the file: {err}")
            counts["refused"] += 1
        except Exception as exc:  # noqa: BLE001
            keep = work / f"failing-{it}.mat"
            keep.write_bytes(path.read_bytes())
            bad.append(f"iteration {it} ({layout}, saved as {keep}): {type(exc).__name__}: {exc}")
    print(json.dumps({"bad": bad, **counts}))


def test_fuzz_joints_mat(tmp_path, data_root):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import test_fuzz; "
            "test_fuzz.mat_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))")
    args = [str(Path(__file__).parent), str(data_root), str(tmp_path), str(ITERATIONS), str(SEED)]
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        where = (tmp_path / "current.txt").read_text() if (tmp_path / "current.txt").exists() else "?"
        crash = tmp_path / "crash.mat"
        if (tmp_path / "joints.mat").exists():
            crash.write_bytes((tmp_path / "joints.mat").read_bytes())
        pytest.fail(f"read_joints_mat {'crashed the interpreter' if proc.returncode < 0 else 'failed'} "
                    f"(exit {proc.returncode}) at iteration/layout {where}, input saved as {crash} "
                    f"(DEEPPOSE_FUZZ_SEED={SEED})\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["bad"] == [], f"DEEPPOSE_FUZZ_SEED={SEED}: {report['bad'][:5]}"
    assert report["refused"] > 0 and (report["ok"] > 0 or ITERATIONS < 50)


# --- geometry properties not covered by test_geometry.py -----------------------------------------------------------

finite = dict(allow_nan=False, allow_infinity=False)
coords = st.floats(-500, 500, **finite)
poses = st.lists(st.tuples(coords, coords), min_size=NUM_JOINTS, max_size=NUM_JOINTS).map(np.array)
collapsed_poses = st.tuples(coords, coords).map(lambda p: np.tile(np.array(p), (NUM_JOINTS, 1)))
any_pose = st.one_of(poses, collapsed_poses)
visibility = st.lists(st.booleans(), min_size=NUM_JOINTS, max_size=NUM_JOINTS).map(lambda v: np.array(v, bool))
boxes = st.builds(g.make_box, coords, coords, st.floats(0.5, 800, **finite), st.floats(0.5, 800, **finite))


@settings(max_examples=100, deadline=None)
@given(pose=poses, box=boxes)
def test_property_n_and_its_inverse_round_trip(pose, box):
    u = g.normalise(pose, box)
    assert np.allclose(g.denormalise(u, box), pose, rtol=0, atol=1e-9 * max(1.0, np.abs(pose).max()))
    assert np.allclose(g.normalise(g.denormalise(u, box), box), u, atol=1e-9 * max(1.0, np.abs(u).max()))
    inside = (np.abs(pose - box[:2]) <= box[2:] / 2).all(axis=1)
    assert (np.abs(u[inside]) <= 0.5 + 1e-12).all()  # the box maps onto [-0.5, 0.5]²


@settings(max_examples=100, deadline=None)
@given(pose=any_pose, visible=visibility, box=boxes, size=st.integers(8, 256), seed=st.integers(0, 2**32 - 1),
       rotate=st.floats(0, 180, **finite), scale=st.floats(0, 0.9, **finite))
def test_property_flipped_crops_relabel_joints_and_visibility_consistently(pose, visible, box, size, seed, rotate,
                                                                           scale):
    aug = g.Augmentation(shift=0.2, scale=scale, rotate=rotate, flip=True)
    t = g.crop_transform(box, size, aug, np.random.default_rng(seed))
    moved, vis = g.transform_joints(t, pose, visible)
    perm = flip_permutation() if t.flipped else np.arange(NUM_JOINTS)
    assert np.array_equal(vis, visible[perm])  # a joint's flag travels with its label
    back = g.apply_affine(np.linalg.inv(t.matrix), moved)
    assert np.allclose(back[perm], pose, atol=1e-6 * max(1.0, np.abs(pose).max()))  # label i sits on joint perm[i]
    if t.flipped:  # and the flip really mirrors: the joints' order along x reverses in crop coordinates
        unflipped = g.apply_affine(g.horizontal_flip(size) @ t.matrix, pose)
        assert np.allclose(unflipped[:, 0], size - moved[perm][:, 0], atol=1e-6 * max(1.0, np.abs(pose).max()))


@settings(max_examples=100, deadline=None)
@given(pose=any_pose, sigma=st.floats(0.01, 10, **finite), min_diam=st.floats(0.1, 10, **finite))
def test_property_cascade_boxes_are_finite_and_usable_for_any_pose(pose, sigma, min_diam):
    with np.errstate(divide="raise", invalid="raise", over="raise"):  # no division by zero on a collapsed torso
        boxes_ = g.cascade_boxes(pose, sigma, min_diam)
        side = g.box_side(pose, sigma)
    assert boxes_.shape == (NUM_JOINTS, 4) and np.isfinite(boxes_).all()
    assert np.allclose(boxes_[:, :2], pose)
    assert np.all(boxes_[:, 2:] >= sigma * min_diam * (1 - 1e-12))
    assert np.isfinite(side) and side >= sigma * g.MIN_DIAM * (1 - 1e-12)
    diam = float(torso_diameter(pose))
    assert np.allclose(boxes_[:, 2], sigma * max(diam, min_diam, g.MIN_DIAM))
    assert np.allclose(boxes_[:, 2], g.box_side(pose, sigma, min_diam))
    for box in boxes_[[0, TORSO_PAIR[0]]]:  # each is a box the crop code accepts, with an invertible warp
        m = g.box_to_crop(g.make_box(*box), 32)
        assert np.isfinite(np.linalg.inv(m)).all()


@settings(max_examples=100, deadline=None)
@given(pose=any_pose, visible=visibility, margin=st.floats(0, 1, **finite))
def test_property_person_box_is_finite_square_and_holds_the_joints_it_counts(pose, visible, margin):
    box = g.person_box(pose, visible, margin)
    assert np.isfinite(box).all() and box[2] == box[3] and box[2] >= 1.0
    counted = pose[visible] if visible.sum() >= 2 else pose
    assert (np.abs(counted - box[:2]) <= box[2:] / 2 + 1e-9 * max(1.0, np.abs(pose).max())).all()
