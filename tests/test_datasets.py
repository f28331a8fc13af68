"""LSP, LSP-extended and your-own-images readers: layouts, flags, the pixel convention and bad input.

The real-data tests use ``lsp_root`` / ``lspet_root`` from conftest.py and skip cleanly without the data;
everything else runs on small files written to ``tmp_path``, built so that a classic bug (a missing flag
inversion, a wrong transpose, an off-by-half-pixel convention) gives a different answer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from deeppose_lab import datasets as D
from deeppose_lab import geometry as g
from deeppose_lab.images import DataError, image_size, load_image
from deeppose_lab.sample import MATLAB_OFFSET, ZERO_BASED_OFFSET, Sample, from_file_units, to_file_units
from deeppose_lab.skeleton import NUM_JOINTS

# --- writers for small synthetic data sets ---------------------------------------------------------


def write_image(path: Path, h: int = 40, w: int = 30, bright: tuple[int, int] | None = None) -> Path:
    """A black PNG (lossless, whatever the file's suffix) with one optional white pixel at (row, col)."""
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    if bright is not None:
        arr[bright] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")
    return path


def distinct_coords(n: int) -> np.ndarray:
    """(n, 14, 2) file-unit coordinates, all different, x never equal to y, inside a 40×30 (h×w) image."""
    j = np.arange(NUM_JOINTS)
    x = 1.0 + j[None, :] + 0.25 * np.arange(n)[:, None]  # 1 … 15.x
    y = 20.0 + j[None, :] + 0.125 * np.arange(n)[:, None]  # 20 … 34.x
    return np.stack([x, y], axis=-1)


def write_lsp(folder: Path, coords: np.ndarray, flags: np.ndarray, images: bool = True) -> Path:
    """LSP layout: joints.mat (3, 14, N) = x, y, flag (1 = occluded); images/im0001.jpg …"""
    arr = np.stack([coords[..., 0].T, coords[..., 1].T, flags.T])  # (3, 14, N)
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "joints.mat", {"joints": arr})
    if images:
        for i in range(len(coords)):
            write_image(folder / "images" / f"im{i + 1:04d}.jpg")
    return folder


def write_lspet(folder: Path, coords: np.ndarray, flags: np.ndarray, present: list[int] | None = None,
                h: int = 40, w: int = 30) -> Path:
    """LSP-extended layout: joints.mat (14, 3, N) with flag 1 = visible; images only for ``present`` (0-based)."""
    arr = np.stack([coords[..., 0].T, coords[..., 1].T, flags.T], axis=1)  # (14, 3, N)
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "joints.mat", {"joints": arr})
    for i in range(len(coords)) if present is None else present:
        write_image(folder / "images" / f"im{i + 1:05d}.jpg", h, w)
    return folder


def expect_data_error(fn, *args, names: str | Path, problem: str, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert str(names) in message, message
    assert re.search(problem, message), message
    return info.value


# --- the pixel convention ---------------------------------------------------------------------------

def test_file_units_offset_is_half_a_pixel():
    file = np.array([[1.0, 1.0], [10.0, 5.0]])
    assert from_file_units(file).tolist() == [[0.5, 0.5], [9.5, 4.5]]  # MATLAB's first pixel centre → (0.5, 0.5)
    assert from_file_units(file, ZERO_BASED_OFFSET).tolist() == [[1.5, 1.5], [10.5, 5.5]]  # 0-based: 1.0 is pixel 1
    for offset in (MATLAB_OFFSET, ZERO_BASED_OFFSET):
        assert np.array_equal(to_file_units(from_file_units(file, offset), offset), file)


def test_one_sign_for_the_pixel_offset_from_readers_to_exports(tmp_path):
    """``sample.FILE_UNITS_OFFSET`` (+0.5: internal = file − 0.5) and ``datasets.MATLAB_OFFSET`` (−0.5: internal =
    file + offset) once meant the same shift with opposite signs; now every reader and exporter uses
    ``file_offset`` through ``from_file_units`` / ``to_file_units``, and a folder's labels survive the round trip."""
    from deeppose_lab.report import export_predictions, load_predictions

    coords = distinct_coords(2)
    lsp = D.load_lsp(write_lsp(tmp_path / "lsp", coords, np.zeros((2, NUM_JOINTS))), "all")
    assert lsp.file_offset == MATLAB_OFFSET and np.array_equal(lsp.joints, from_file_units(coords, lsp.file_offset))
    export_predictions(tmp_path / "p.npz", lsp.ids, lsp.joints[None], lsp.file_offset)
    assert np.array_equal(np.load(tmp_path / "p.npz")["joints"][0], coords)  # the file's own units
    assert np.array_equal(load_predictions(tmp_path / "p.npz", lsp.file_offset)[1][0], lsp.joints)


def assert_joint_on_pixel_centre(image: np.ndarray, joint: np.ndarray) -> None:
    """Upsample 8× around ``joint``: the white pixel's blob must be centred exactly where the joint maps.

    Off-by-half-pixel conventions (file − 1, or no shift at all) miss by 4 crop pixels.
    """
    m = g.box_to_crop(g.make_box(joint[0], joint[1], 6.0, 6.0), 48)
    crop = g.warp_image(image, m, 48)[..., 0].astype(np.float64)
    rows, cols = np.mgrid[0:48, 0:48] + 0.5
    spot = np.array([(crop * cols).sum(), (crop * rows).sum()]) / crop.sum()
    assert np.allclose(spot, g.apply_affine(m, joint), atol=1e-6), (spot, g.apply_affine(m, joint))


def test_lsp_joint_on_a_pixel_sits_on_that_pixel_centre_and_exports_back(tmp_path):
    coords = distinct_coords(2)
    coords[0, 0] = [10.0, 5.0]  # MATLAB: column 10, row 5, 1-based → zero-based pixel (row 4, col 9)
    folder = write_lsp(tmp_path / "lsp", coords, np.zeros((2, NUM_JOINTS)))
    write_image(folder / "images" / "im0001.jpg", bright=(4, 9))
    ds = D.load_lsp(folder, "all")
    assert ds.joints[0, 0].tolist() == [9.5, 4.5]
    assert_joint_on_pixel_centre(ds[0].image, ds.joints[0, 0])
    assert ds.file_offset == -0.5
    assert np.array_equal(ds.joints - ds.file_offset, coords)  # exports go back in the file's own units
    assert np.array_equal(to_file_units(ds.joints), coords)


# --- layouts and flags --------------------------------------------------------------------------------

def test_lsp_and_lspet_layouts_read_the_same_poses(tmp_path):
    """The same poses written as (3, 14, N) and as (14, 3, N) must read identically; every value is distinct,
    so transposing either layout the wrong way (or swapping x and y) changes the joints."""
    coords = distinct_coords(5)
    lsp = D.load_lsp(write_lsp(tmp_path / "lsp", coords, np.zeros((5, NUM_JOINTS))), "all")
    lspet = D.load_lspet(write_lspet(tmp_path / "lspet", coords, np.ones((5, NUM_JOINTS))), verbose=False)
    expected = coords - 0.5
    assert lsp.joints.shape == (5, NUM_JOINTS, 2)
    assert np.array_equal(lsp.joints, expected)
    assert np.array_equal(lspet.joints, expected)
    assert lsp[3].joints[7].tolist() == [1 + 7 + 0.75 - 0.5, 20 + 7 + 0.375 - 0.5]  # sample 4, joint 7, (x, y)


def test_layouts_are_checked_not_guessed(tmp_path):
    coords = distinct_coords(5)
    write_lsp(tmp_path / "a", coords, np.zeros((5, NUM_JOINTS)))
    write_lspet(tmp_path / "b", coords, np.ones((5, NUM_JOINTS)))
    expect_data_error(D.load_lspet, tmp_path / "a", names=tmp_path / "a" / "joints.mat", problem=r"\(14, 3, N\)")
    expect_data_error(D.load_lsp, tmp_path / "b", "all", names=tmp_path / "b" / "joints.mat", problem=r"\(3, 14, N\)")
    with pytest.raises(ValueError, match="layout"):
        D.read_joints_mat(tmp_path / "a" / "joints.mat", "14x2xN")


def test_lsp_flag_one_means_occluded(tmp_path):
    flags = np.zeros((3, NUM_JOINTS))
    flags[0, [2, 11]] = 1
    flags[2, 13] = 1
    ds = D.load_lsp(write_lsp(tmp_path / "lsp", distinct_coords(3), flags), "all")
    assert np.array_equal(ds.visible, flags == 0)
    assert ds.visible.sum() == 3 * NUM_JOINTS - 3  # an uninverted reader would see only 3 visible joints


def test_lspet_flag_one_means_visible_and_outside_joints_are_hidden(tmp_path):
    coords = distinct_coords(2)
    flags = np.ones((2, NUM_JOINTS))
    flags[0, 4] = 0  # annotated as not visible
    coords[1, 5] = [-120.0, 20.0]  # flagged visible, but far left of the image
    coords[1, 6] = [10.0, 40.6]  # 0.1 px below the bottom edge (internal 40.1 > 40)
    coords[1, 7] = [30.5, 40.5]  # exactly the bottom-right corner: still inside
    ds = D.load_lspet(write_lspet(tmp_path / "lspet", coords, flags, h=40, w=30), verbose=False)
    expected = np.ones((2, NUM_JOINTS), dtype=bool)
    expected[0, 4] = expected[1, 5] = expected[1, 6] = False
    assert np.array_equal(ds.visible, expected)
    assert np.array_equal(ds.joints[1, 5], [-120.5, 19.5])  # hidden, but the coordinates are kept


def test_lspet_uses_whatever_subset_is_present_and_says_so(tmp_path, capsys):
    coords = distinct_coords(6)
    folder = write_lspet(tmp_path / "lspet", coords, np.ones((6, NUM_JOINTS)), present=[0, 2, 3])
    ds = D.load_lspet(folder)
    assert "using 3 of 6" in capsys.readouterr().out
    assert ds.ids == ["im00001", "im00003", "im00004"]
    assert np.array_equal(ds.joints, coords[[0, 2, 3]] - 0.5)  # each image keeps its own labels
    D.load_lspet(folder, verbose=False)
    assert capsys.readouterr().out == ""


def test_lspet_default_location_falls_back_to_lspet400(tmp_path, monkeypatch):
    write_lspet(tmp_path / "lspet400", distinct_coords(2), np.ones((2, NUM_JOINTS)))
    monkeypatch.setenv("DEEPPOSE_DATA", str(tmp_path))
    assert D.data_root() == tmp_path
    assert len(D.load_lspet(verbose=False)) == 2
    assert D.lspet_folder(tmp_path) == tmp_path / "lspet400"
    assert not D.lsp_available(tmp_path)
    write_lsp(tmp_path / "lsp", distinct_coords(2), np.zeros((2, NUM_JOINTS)))
    assert D.lsp_available(tmp_path)
    assert len(D.load_lsp(split="all")) == 2


def test_data_root_without_environment_is_the_repository_data_folder(monkeypatch):
    monkeypatch.delenv("DEEPPOSE_DATA", raising=False)
    assert D.data_root() == Path(D.__file__).resolve().parents[1] / "data"


def test_lsp_split_on_a_small_file(tmp_path):
    folder = write_lsp(tmp_path / "lsp", distinct_coords(3), np.zeros((3, NUM_JOINTS)))
    assert len(D.load_lsp(folder, "train")) == 3
    expect_data_error(D.load_lsp, folder, "test", names=folder / "joints.mat", problem="has 3 poses, so LSP.s test")
    with pytest.raises(ValueError, match="split"):
        D.load_lsp(folder, "val")


# --- bad input ------------------------------------------------------------------------------------------

def test_missing_image_is_named(tmp_path):
    folder = write_lsp(tmp_path / "lsp", distinct_coords(3), np.zeros((3, NUM_JOINTS)))
    (folder / "images" / "im0002.jpg").unlink()
    expect_data_error(D.load_lsp, folder, "all", names=folder / "images" / "im0002.jpg", problem="not found.*1 of 3")


@pytest.mark.parametrize(("content", "problem"), [(b"", "empty"), (b"\xff\xd8\xff\xe0 not really a jpeg", "corrupt"),
                                                   ("truncated", "truncated")])
def test_broken_image_is_named_when_loaded(tmp_path, content, problem):
    folder = write_lsp(tmp_path / "lsp", distinct_coords(2), np.zeros((2, NUM_JOINTS)))
    bad = folder / "images" / "im0002.jpg"
    if content == "truncated":
        noise = np.random.default_rng(0).integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
        Image.fromarray(noise).save(bad, format="JPEG", quality=95)
        content = bad.read_bytes()[:400]
    bad.write_bytes(content)
    ds = D.load_lsp(folder, "all")
    assert ds[0].image.shape == (40, 30, 3)
    expect_data_error(ds.__getitem__, 1, names=bad, problem=problem)


def test_zero_byte_lspet_image_is_named_at_load(tmp_path):
    folder = write_lspet(tmp_path / "lspet", distinct_coords(2), np.ones((2, NUM_JOINTS)))
    bad = folder / "images" / "im00002.jpg"
    bad.write_bytes(b"")
    expect_data_error(D.load_lspet, folder, verbose=False, names=bad, problem="not a readable image")


def test_joints_mat_with_the_wrong_key(tmp_path):
    folder = tmp_path / "lsp"
    folder.mkdir()
    scipy.io.savemat(folder / "joints.mat", {"pose": np.zeros((3, NUM_JOINTS, 2))})
    expect_data_error(D.load_lsp, folder, names=folder / "joints.mat", problem=r"no variable 'joints'.*'pose'")


@pytest.mark.parametrize("shape", [(2, NUM_JOINTS, 4), (3, 13, 4), (3, NUM_JOINTS), (NUM_JOINTS, 3, 4)])
def test_joints_mat_with_the_wrong_shape(tmp_path, shape):
    folder = tmp_path / "lsp"
    folder.mkdir()
    scipy.io.savemat(folder / "joints.mat", {"joints": np.zeros(shape)})
    expect_data_error(D.load_lsp, folder, names=folder / "joints.mat", problem="shape")


def test_joints_mat_that_is_not_numeric(tmp_path):
    folder = tmp_path / "lsp"
    folder.mkdir()
    scipy.io.savemat(folder / "joints.mat", {"joints": "hello"})
    expect_data_error(D.load_lsp, folder, names=folder / "joints.mat", problem="numeric")


def test_joints_mat_that_is_not_a_mat_file(tmp_path):
    folder = tmp_path / "lsp"
    folder.mkdir()
    (folder / "joints.mat").write_bytes(b"<html>404 not found</html>")
    expect_data_error(D.load_lsp, folder, names=folder / "joints.mat", problem="not a readable MATLAB file")


def test_nan_coordinates(tmp_path):
    coords = distinct_coords(4)
    coords[2, 5, 1] = np.nan
    folder = write_lsp(tmp_path / "lsp", coords, np.zeros((4, NUM_JOINTS)))
    expect_data_error(D.load_lsp, folder, names=folder / "joints.mat", problem=r"NaN.*sample 3")


def test_empty_folder(tmp_path):
    expect_data_error(D.load_lsp, tmp_path, names=tmp_path / "joints.mat", problem="not found")
    expect_data_error(D.load_lspet, tmp_path, names=tmp_path / "joints.mat", problem="not found")
    expect_data_error(D.load_folder, tmp_path, names=tmp_path, problem="no annotations.json or annotations.csv")
    expect_data_error(D.load_folder, tmp_path / "absent", names=tmp_path / "absent", problem="not a folder")


def test_lspet_without_any_image(tmp_path):
    folder = write_lspet(tmp_path / "lspet", distinct_coords(3), np.ones((3, NUM_JOINTS)), present=[])
    expect_data_error(D.load_lspet, folder, verbose=False, names=folder / "images", problem="none of the 3")


# --- your own images ------------------------------------------------------------------------------------

OWN_COORDS = distinct_coords(3) - 1.0  # zero-based pixel centres: 0 … 33
OWN_VISIBLE = np.ones((3, NUM_JOINTS), dtype=bool)
OWN_VISIBLE[1, [0, 13]] = False


def write_own(folder: Path, fmt: str, names=("a.png", "b.jpg", "c.png"), coords=OWN_COORDS,
              visible=OWN_VISIBLE, with_visible: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        samples = []
        for name, c, v in zip(names, coords, visible, strict=True):
            s = {"image": name, "joints": c.tolist()}
            if with_visible:
                s["visible"] = v.tolist()
            samples.append(s)
        (folder / "annotations.json").write_text(json.dumps({"samples": samples}))
    else:
        header = ["image"] + [f"{a}{j}" for j in range(NUM_JOINTS) for a in "xyv"]
        rows = [",".join(header)]
        for name, c, v in zip(names, coords, visible, strict=True):
            cells = [f"{x},{y},{int(f)}" for (x, y), f in zip(c, v, strict=True)]
            rows.append(",".join([name, *cells]))
        (folder / "annotations.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_own_images_zero_based_convention(tmp_path, fmt):
    folder = write_own(tmp_path / "mine", fmt)
    coords = OWN_COORDS.copy()
    coords[0, 0] = [9.0, 4.0]  # zero-based: column 9, row 4 is the white pixel
    write_own(folder, fmt, coords=coords)
    write_image(folder / "a.png", bright=(4, 9))
    write_image(folder / "b.jpg")
    write_image(folder / "c.png")
    ds = D.load_folder(folder)
    assert len(ds) == 3 and ds.ids == ["a", "b", "c"] and ds.name == "mine"
    assert ds.joints[0, 0].tolist() == [9.5, 4.5]
    assert np.array_equal(ds.joints, coords + 0.5)
    assert np.array_equal(ds.visible, OWN_VISIBLE)
    assert ds.file_offset == 0.5 and np.array_equal(ds.joints - ds.file_offset, coords)
    assert_joint_on_pixel_centre(ds[0].image, ds.joints[0, 0])


def test_own_format_doc_states_the_zero_based_convention():
    doc = D.OWN_FORMAT_DOC
    assert "centre of the top-left pixel at (0, 0)" in doc
    assert "annotations.json" in doc and "annotations.csv" in doc
    assert "image,x0,y0,v0" in doc


def test_own_json_visible_is_optional(tmp_path):
    folder = write_own(tmp_path / "mine", "json", with_visible=False)
    for name in ("a.png", "b.jpg", "c.png"):
        write_image(folder / name)
    assert D.load_folder(folder).visible.all()


def test_own_images_skip_bad_counts_what_it_dropped(tmp_path, capsys):
    coords = np.concatenate([OWN_COORDS, OWN_COORDS[:2]])
    coords[1, 3, 0] = np.nan
    visible = np.ones((5, NUM_JOINTS), dtype=bool)
    names = ("good.png", "nan.png", "missing.png", "empty.png", "good2.png")
    folder = write_own(tmp_path / "mine", "json", names=names, coords=coords, visible=visible)
    for name in ("good.png", "nan.png", "good2.png"):
        write_image(folder / name)
    (folder / "empty.png").write_bytes(b"")
    expect_data_error(D.load_folder, folder, names=folder / "annotations.json", problem="nan.png: NaN")
    ds = D.load_folder(folder, skip_bad=True)
    assert ds.ids == ["good", "good2"]
    assert np.array_equal(ds.joints, coords[[0, 4]] + 0.5)
    assert "skipped 3 of 5" in capsys.readouterr().out
    (folder / "good.png").unlink()
    (folder / "good2.png").unlink()
    expect_data_error(D.load_folder, folder, skip_bad=True, names=folder / "annotations.json", problem="no usable")


def test_own_images_missing_and_empty_image_without_skip(tmp_path):
    folder = write_own(tmp_path / "mine", "csv")
    write_image(folder / "a.png")
    write_image(folder / "c.png")
    expect_data_error(D.load_folder, folder, names=folder / "annotations.csv", problem="b.jpg: image file not found")
    (folder / "b.jpg").write_bytes(b"")
    expect_data_error(D.load_folder, folder, names=folder / "annotations.csv", problem="b.jpg: .*not a readable image")


@pytest.mark.parametrize(("text", "problem"), [
    ('{"samples": [{"image": "a.png", "joints": [[1, 2]]}]}', r"sample 1: 'joints' must be 14"),
    ('{"samples": [{"image": "a.png", "joints": ' + json.dumps([[1, 2]] * 14) + ', "visible": [true]}]}',
     r"sample 1: 'visible' must have 14"),
    ('{"samples": [{"joints": []}]}', "malformed annotation entry 1"),
    ('{"samples": [{"image": "a.png", "joints": [[1, 2], [3]]}]}', "malformed annotation entry 1"),
    ('[1, 2, 3]', "expected a JSON object"),
    ('{"samples": [', "malformed"),
    ('{"samples": []}', "no samples"),
])
def test_own_json_malformed(tmp_path, text, problem):
    (tmp_path / "annotations.json").write_text(text)
    write_image(tmp_path / "a.png")
    expect_data_error(D.load_folder, tmp_path, names=tmp_path / "annotations.json", problem=problem)


@pytest.mark.parametrize(("text", "problem"), [
    ("image,x0,y0\na.png,1,2\n", "malformed annotation entry 1"),
    ("image," + ",".join(f"x{j},y{j},v{j}" for j in range(14)) + "\na.png," + ",".join(["1"] * 41) + ",oops\n",
     "malformed annotation entry 1"),
    ("image,x0\n", "no samples"),
])
def test_own_csv_malformed(tmp_path, text, problem):
    (tmp_path / "annotations.csv").write_text(text)
    write_image(tmp_path / "a.png")
    expect_data_error(D.load_folder, tmp_path, names=tmp_path / "annotations.csv", problem=problem)


# --- data set objects -------------------------------------------------------------------------------

def test_sample_validates_its_arrays():
    img = np.zeros((4, 5, 3), dtype=np.uint8)
    joints, visible = np.zeros((NUM_JOINTS, 2)), np.ones(NUM_JOINTS, dtype=bool)
    s = Sample(img, joints, visible, "x")
    assert (s.height, s.width) == (4, 5)
    for bad in [dict(image=img[..., 0]), dict(image=img.astype(np.float32)), dict(joints=joints[:13]),
                dict(visible=visible.astype(int))]:
        kwargs = dict(image=img, joints=joints, visible=visible, id="x") | bad
        with pytest.raises(ValueError, match="sample x"):
            Sample(**kwargs)


def test_labels_are_read_only_and_images_cached(tmp_path):
    folder = write_lsp(tmp_path / "lsp", distinct_coords(3), np.zeros((3, NUM_JOINTS)))
    ds = D.load_lsp(folder, "all")
    s = ds[-1]
    assert s.id == "im0003" and np.array_equal(s.joints, ds.joints[2])
    for arr in (ds.joints, ds.visible, s.joints, s.visible, s.image):
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0
    assert ds.image(1) is ds.image(1)
    assert g.spare_channel_base(ds.image(1)) is not None  # cached in the layout the warp crops fastest
    with pytest.raises(IndexError):
        ds[3]
    with pytest.raises(IndexError):
        ds[-4]
    assert [x.id for x in ds] == ["im0001", "im0002", "im0003"]
    assert "3 samples" in repr(ds)


def test_decode_all_fills_the_cache_of_a_subset_parent(tmp_path, monkeypatch):
    ds = D.load_lsp(write_lsp(tmp_path / "lsp", distinct_coords(3), np.zeros((3, NUM_JOINTS))), "all")
    view = ds.subset([2, 0])
    view.decode_all()
    assert sorted(ds._cache) == [0, 2]  # the shared cache, and only the subset's images
    monkeypatch.setattr(D.ImageFiles, "load_image", lambda self, i: pytest.fail("decoded twice"))
    assert view.image(0) is ds.image(2)


def test_subset_and_concat(tmp_path):
    a = D.load_lsp(write_lsp(tmp_path / "lsp", distinct_coords(3), np.zeros((3, NUM_JOINTS))), "all")
    b_coords = distinct_coords(2) + 3.0
    b = D.load_lspet(write_lspet(tmp_path / "lspet", b_coords, np.ones((2, NUM_JOINTS)), h=11, w=7), verbose=False)
    sub = a.subset([2, 0], name="picked")
    assert sub.ids == ["im0003", "im0001"] and sub.name == "picked"
    assert np.array_equal(sub.joints, a.joints[[2, 0]]) and not sub.joints.flags.writeable
    assert sub.image(0) is a.image(2)  # shares the parent's cache
    both = D.Concat([a, b])
    assert len(both) == 5 and both.ids[3] == "lspet/im00001" and both.name == "lsp-all+lspet"
    assert both[3].image.shape == (11, 7, 3) and both[2].image.shape == (40, 30, 3)
    assert np.array_equal(both.joints[3:], b_coords - 0.5)
    assert both.file_offset == -0.5 and sub.file_offset == -0.5  # exports from a Concat stay in file units
    own = write_own(tmp_path / "own", "json")
    for name in ("a.png", "b.jpg", "c.png"):
        write_image(own / name)
    assert np.isnan(D.Concat([a, D.load_folder(own)]).file_offset)  # mixed units: no single answer


# --- the real data sets ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lsp_all(lsp_root):
    return D.load_lsp(lsp_root, "all")


@pytest.fixture(scope="module")
def lsp_sizes(lsp_all):
    """(h, w) per LSP image from its header, cheap."""
    return np.array([image_size(p) for p in lsp_all.paths], dtype=np.float64)


def test_real_lsp_has_2000_samples_split_1000_1000(lsp_root, lsp_all):
    assert len(lsp_all) == 2000 and lsp_all.ids[0] == "im0001" and lsp_all.ids[-1] == "im2000"
    train, test = D.load_lsp(lsp_root, "train"), D.load_lsp(lsp_root, "test")
    assert len(train) == 1000 and len(test) == 1000
    assert train.ids[-1] == "im1000" and test.ids[0] == "im1001"
    assert np.array_equal(np.concatenate([train.joints, test.joints]), lsp_all.joints)


def test_real_lsp_matches_the_raw_file(lsp_root, lsp_all):
    raw = scipy.io.loadmat(lsp_root / "joints.mat")["joints"]
    assert raw.shape == (3, NUM_JOINTS, 2000)
    rng = np.random.default_rng(0)
    for n, j in zip(rng.integers(0, 2000, 50), rng.integers(0, NUM_JOINTS, 50), strict=True):
        assert lsp_all.joints[n, j].tolist() == [raw[0, j, n] - 0.5, raw[1, j, n] - 0.5]
        assert lsp_all.visible[n, j] == (raw[2, j, n] == 0)


def test_real_lsp_about_seven_percent_hidden(lsp_all):
    hidden = 1.0 - lsp_all.visible.mean()
    assert 0.06 < hidden < 0.085, hidden  # without the flag inversion this would be ~0.93


def test_real_lsp_visible_joints_lie_in_their_images(lsp_all, lsp_sizes):
    wh = lsp_sizes[:, None, ::-1]
    vis = lsp_all.visible
    beyond = np.maximum(-lsp_all.joints, lsp_all.joints - wh).max(axis=2)  # > 0: outside, in px
    assert beyond[vis].max() < 1.0  # annotation noise only (one LSP wrist is 0.25 px above the top edge)
    assert (beyond[vis] > 0).sum() <= 1
    assert 40 <= lsp_sizes.min() and lsp_sizes.max() <= 250  # people scaled to ~150 px, images 57–202 px


def test_real_lsp_images_decode(lsp_all, lsp_sizes):
    """Decodes each of the 2000 images once (about a second; not cached): all RGB, sizes matching their headers."""
    shapes = np.array([load_image(p).shape for p in lsp_all.paths])
    assert (shapes[:, 2] == 3).all()
    assert np.array_equal(shapes[:, :2], lsp_sizes)
    s = lsp_all[1500]
    assert s.id == "im1501" and s.image.dtype == np.uint8 and not s.joints.flags.writeable


def test_real_lspet(lspet_root, capsys):
    ds = D.load_lspet(lspet_root)
    out = capsys.readouterr().out
    used, annotated = map(int, re.search(r"using (\d+) of (\d+)", out).groups())
    present = {p.stem for p in (lspet_root / "images").glob("im*.jpg")}
    assert used == len(ds) == len(present & {f"im{i + 1:05d}" for i in range(annotated)}) > 0
    raw = scipy.io.loadmat(lspet_root / "joints.mat")["joints"]
    assert raw.shape[:2] == (NUM_JOINTS, 3)
    idx = [int(i[2:]) - 1 for i in ds.ids]
    assert np.array_equal(ds.joints, np.moveaxis(raw[:, :2, idx], 2, 0) - 0.5)
    sizes = np.array([image_size(p) for p in ds.paths], dtype=np.float64)
    inside = ((ds.joints >= 0) & (ds.joints <= sizes[:, None, ::-1])).all(axis=2)
    flagged = (raw[:, 2, idx] == 1).T
    assert np.array_equal(ds.visible, flagged & inside)
    assert 0.05 < 1 - ds.visible.mean() < 0.35  # flag 1 = visible here; inverted, most joints would be hidden
    assert (ds.joints[ds.visible] >= 0).all()
