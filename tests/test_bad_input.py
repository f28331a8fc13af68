"""Bad input not covered by test_images.py, test_datasets.py, test_profiles.py or test_metrics.py.

Annotation files with odd dtypes or no poses, labels with every joint hidden, poses collapsed to a point (a zero
torso: nothing may divide by zero), image names that do not name a file in the folder, and the command line's
answer to mistakes: exit status 2 and one line naming the problem, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse
import torch
from helpers import SETS, fake_run
from PIL import Image
from torch import nn

from deeppose_lab import cli, metrics
from deeppose_lab import datasets as D
from deeppose_lab.cascade import DisplacementStats, RefineCrops, displacement_stats, refine
from deeppose_lab.crops import PersonCrops
from deeppose_lab.datasets import PoseDataset
from deeppose_lab.geometry import MIN_DIAM, Augmentation, box_side, cascade_boxes, person_box
from deeppose_lab.images import DataError
from deeppose_lab.skeleton import NUM_JOINTS, torso_diameter
from deeppose_lab.train import pose_loss


def coords(n: int) -> np.ndarray:
    """(n, 14, 2) distinct file-unit coordinates inside a 40×30 (h×w) image."""
    j = np.arange(NUM_JOINTS)
    return np.stack([1.0 + j[None] + 0.25 * np.arange(n)[:, None], 20.0 + j[None] + 0.5 * np.arange(n)[:, None]], -1)


def write_image(path: Path, h: int = 40, w: int = 30) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), (90, 90, 90)).save(path, format="PNG")


def lsp_folder(folder: Path, joints: object, n_images: int = 0) -> Path:
    """An LSP-layout folder whose joints.mat holds ``joints`` as given (any dtype), with ``n_images`` images."""
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / "joints.mat", {"joints": joints})
    for i in range(n_images):
        write_image(folder / "images" / f"im{i + 1:04d}.jpg")
    return folder


def lsp_array(c: np.ndarray, flags: np.ndarray) -> np.ndarray:
    return np.stack([c[..., 0].T, c[..., 1].T, flags.T])  # (3, 14, N)


def expect(fn, *args, path: Path, words: str, **kwargs) -> DataError:
    with pytest.raises(DataError) as err:
        fn(*args, **kwargs)
    assert err.value.path == path and str(err.value).startswith(f"{path}: "), str(err.value)
    assert words in str(err.value), str(err.value)
    return err.value


# --- joints.mat with odd dtypes, infinities, no poses --------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.int32, np.int16, np.uint8, np.float32])
def test_integer_and_single_precision_joints_are_read_as_float64(tmp_path, dtype):
    c = coords(2).round()
    folder = lsp_folder(tmp_path / "lsp", lsp_array(c, np.zeros((2, NUM_JOINTS))).astype(dtype), n_images=2)
    ds = D.load_lsp(folder, "all")
    assert ds.joints.dtype == np.float64 and np.array_equal(ds.joints, c - 0.5)
    assert ds.visible.all()


@pytest.mark.parametrize(("joints", "words"), [
    (lsp_array(coords(2), np.zeros((2, NUM_JOINTS))) + 1j, "real numeric array, got complex"),
    (np.array([[1.0, "x"]], dtype=object), "real numeric array"),
    ({"x": np.zeros(3)}, "real numeric array"),
    (scipy.sparse.csc_matrix(np.eye(3)), "real numeric array"),
    (np.zeros((3, NUM_JOINTS, 0)), "holds no poses"),
], ids=["complex", "cell", "struct", "sparse", "no-poses"])
def test_joints_that_are_not_a_real_numeric_pose_array(tmp_path, joints, words):
    folder = lsp_folder(tmp_path / "lsp", joints)
    expect(D.load_lsp, folder, "all", path=folder / "joints.mat", words=words)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
@pytest.mark.parametrize("layout", ["lsp", "lspet"])
def test_infinite_coordinates_name_the_sample(tmp_path, value, layout):
    c = coords(3)
    c[1, 4, 0] = value
    folder = tmp_path / layout
    if layout == "lsp":
        lsp_folder(folder, lsp_array(c, np.zeros((3, NUM_JOINTS))), n_images=3)
        expect(D.load_lsp, folder, "all", path=folder / "joints.mat", words="infinite coordinates (first: sample 2)")
    else:
        folder.mkdir()
        arr = np.stack([c[..., 0].T, c[..., 1].T, np.ones((NUM_JOINTS, 3))], axis=1)  # (14, 3, N)
        scipy.io.savemat(folder / "joints.mat", {"joints": arr + 0j})
        expect(D.load_lspet, folder, verbose=False, path=folder / "joints.mat", words="complex")
        scipy.io.savemat(folder / "joints.mat", {"joints": arr})
        expect(D.load_lspet, folder, verbose=False, path=folder / "joints.mat", words="sample 2")


def test_more_images_than_annotations_uses_the_annotated_ones(tmp_path):
    folder = lsp_folder(tmp_path / "lsp", lsp_array(coords(2), np.zeros((2, NUM_JOINTS))), n_images=5)
    assert D.load_lsp(folder, "all").ids == ["im0001", "im0002"]


# --- every joint hidden, a pose collapsed to a point --------------------------------------------------------------

class ArrayPoses(PoseDataset):
    def __init__(self, images: list[np.ndarray], joints: np.ndarray, visible: np.ndarray) -> None:
        super().__init__([f"img{i}" for i in range(len(images))], joints, visible)
        self.images = images

    def load_image(self, i: int) -> np.ndarray:
        return self.images[i].copy()


class ZeroNet(nn.Module):
    """A refiner that never moves a joint (one parameter, so the cascade can ask it for its device)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(x), 2 * NUM_JOINTS)


def test_a_data_set_with_every_joint_hidden_trains_on_nothing_without_nan(tmp_path):
    folder = lsp_folder(tmp_path / "lsp", lsp_array(coords(2), np.ones((2, NUM_JOINTS))), n_images=2)  # 1 = occluded
    ds = D.load_lsp(folder, "all")
    assert not ds.visible.any()
    with np.errstate(all="raise"):
        box = person_box(ds.joints[0], ds.visible[0])  # falls back to all joints
        item = PersonCrops(ds, 48, Augmentation(shift=0.1, flip=True), box="person").item(0, np.random.default_rng(0))
        stats = displacement_stats(ds.joints + 1.0, ds.joints, ds.visible, sigma=2.0)
    assert np.isfinite(box).all() and box[2] > 0
    assert np.isfinite(item.target).all() and not item.weight.any()
    loss = pose_loss(torch.zeros(1, 2 * NUM_JOINTS), torch.from_numpy(item.target[None]),
                     torch.from_numpy(item.weight[None]))
    assert loss.item() == 0.0
    assert np.array_equal(stats.mean, np.zeros((NUM_JOINTS, 2))) and np.isfinite(stats.cov).all()
    assert stats.count.tolist() == [0] * NUM_JOINTS
    np.linalg.cholesky(stats.cov)  # still a usable sampling distribution


def test_a_pose_collapsed_to_one_point_divides_by_nothing():
    point = np.array([17.25, 30.5])
    collapsed = np.tile(point, (1, NUM_JOINTS, 1))  # (1, 14, 2): every joint, and so the torso, on one pixel
    assert torso_diameter(collapsed)[0] == 0
    pred = np.concatenate([collapsed, collapsed + [0.5, 0.0]])
    true = np.concatenate([collapsed, collapsed])
    with np.errstate(all="raise"):
        for mode in ("strict", "loose"):
            scores = metrics.pcp(pred, true, mode=mode)
            assert scores["mean"] == 0.5 and all(v == 0.5 for v in scores["limbs"].values())
        curve = metrics.pdj(pred, true)
        errors = metrics.limb_errors(pred, true)
        per_image = metrics.per_image_score(pred, true)
        best, worst = metrics.best_and_worst(pred, true, k=1)
        side = box_side(collapsed, sigma=2.0)
        boxes = cascade_boxes(collapsed[0], sigma=2.0)
    assert np.isfinite(curve).all() and (curve[1:] == 0.5).all()
    assert all(np.isfinite(e).all() for e in errors.values())
    assert np.isfinite(per_image).all() and best.tolist() == [0] and worst.tolist() == [1]
    assert side.tolist() == [2.0 * MIN_DIAM]
    assert np.isfinite(boxes).all() and (boxes[:, 2:] == 2.0).all()


def test_refinement_from_a_collapsed_estimate_stays_finite():
    images = [np.random.default_rng(0).integers(0, 256, size=(50, 40, 3), dtype=np.uint8)]
    truth = np.random.default_rng(1).uniform(5, 35, size=(1, NUM_JOINTS, 2))
    data = ArrayPoses(images, truth, np.ones((1, NUM_JOINTS), bool))
    collapsed = np.tile([20.0, 25.0], (1, NUM_JOINTS, 1))  # a stage-1 network that predicts one point
    out = refine(ZeroNet(), data, collapsed, sigma=2.0, size=48)
    assert np.isfinite(out).all() and np.allclose(out, collapsed, atol=1e-6)
    stats = DisplacementStats(np.zeros((NUM_JOINTS, 2)), np.tile(np.eye(2) * 0.01, (NUM_JOINTS, 1, 1)),
                              np.zeros(NUM_JOINTS, np.int64))
    for simulate in (True, False):
        crops = RefineCrops(data, collapsed, stats, 2.0, 48, 1, Augmentation.none(), simulate=simulate)
        box = crops.box(0, 5, np.random.default_rng(0))
        assert np.isfinite(box).all() and box[2] == box[3] == 2.0 * MIN_DIAM
        assert np.isfinite(crops.item(5, np.random.default_rng(0)).target).all()


# --- image names that do not name a file in the folder ------------------------------------------------------------

def own_folder(folder: Path, names: list[str], **sample_fields) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    samples = [{"image": n, "joints": coords(1)[0].tolist(), **sample_fields} for n in names]
    (folder / "annotations.json").write_text(json.dumps({"samples": samples}))
    return folder


@pytest.mark.parametrize(("name", "words"), [
    ("/etc/hostname", "must be relative and stay inside"),
    ("../outside.png", "must be relative and stay inside"),
    ("sub/../../outside.png", "must be relative and stay inside"),
    ("x" * 300 + ".png", "unusable image path"),
    ("A.PNG", "image file not found"),
], ids=["absolute", "dotdot", "nested-dotdot", "name-too-long", "wrong-case"])
def test_image_names_that_leave_the_folder_or_name_nothing(tmp_path, name, words):
    write_image(tmp_path / "outside.png")
    folder = own_folder(tmp_path / "mine", ["a.png", name])
    write_image(folder / "a.png")
    if (folder / "A.PNG").exists():
        pytest.skip("case-insensitive file system")
    expect(D.load_folder, folder, path=folder / "annotations.json", words=words)
    ds = D.load_folder(folder, skip_bad=True)
    assert ds.ids == ["a"] and [p.name for p in ds.paths] == ["a.png"]


def test_an_image_in_a_subfolder_is_fine(tmp_path):
    folder = own_folder(tmp_path / "mine", ["sub/a.png"])
    write_image(folder / "sub" / "a.png")
    assert D.load_folder(folder).paths == [folder / "sub" / "a.png"]


@pytest.mark.parametrize(("visible", "words"), [
    (["false"] * NUM_JOINTS, "true/false or 1/0"),
    ([None] * NUM_JOINTS, "true/false or 1/0"),
    ({"a": 1}, "true/false or 1/0"),
])
def test_visibility_flags_that_are_not_flags(tmp_path, visible, words):
    folder = own_folder(tmp_path / "mine", ["a.png"], visible=visible)
    write_image(folder / "a.png")
    expect(D.load_folder, folder, path=folder / "annotations.json", words=words)


def test_visibility_as_numbers_is_fine(tmp_path):
    folder = own_folder(tmp_path / "mine", ["a.png"], visible=[1, 0] * 7)
    write_image(folder / "a.png")
    assert D.load_folder(folder).visible[0].tolist() == [True, False] * 7


def test_absurdly_nested_json_and_huge_csv_fields(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "annotations.json").write_text("[" * 100_000)
    expect(D.load_folder, folder, path=folder / "annotations.json", words="malformed")
    (folder / "annotations.json").unlink()
    (folder / "annotations.csv").write_text("image,x0\n" + "a" * 200_000 + ",1\n")
    expect(D.load_folder, folder, path=folder / "annotations.csv", words="field larger than field limit")


# --- the command line: exit 2 and one line ------------------------------------------------------------------------

def cli_error(capsys, *argv: str) -> str:
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"deeppose-lab {argv[0]}: error: "), err
    return err





@pytest.mark.parametrize(("sets", "words"), [
    (["--profile", "turbo"], "unknown profile 'turbo'"),
    (["--set", "batchsize=3"], "unknown profile field 'batchsize'"),
    (["--set", "input_size=0"], "input_size must be positive"),
    (["--set", "batch_size=-1"], "batch_size must be positive"),
    (["--set", "input_size=32"], "input sizes below 48 px"),
    (["--set", "refine_input_size=-48"], "refiner.input_size must be positive"),
    (["--set", "stages=0"], "stages must be positive"),
    (["--epochs", "-1"], "epochs must be at least 1"),
    (["--set", "lr=inf"], "lr must be a finite number"),
    (["--set", "width=inf"], "width must be a finite number"),
    (["--set", "weight_decay=nan"], "weight_decay must be a finite number"),
    (["--set", "sigma=1e400"], "sigma must be a finite number"),
    (["--set", "seed=-1"], "seed must not be negative"),
    (["--set", "box_margin=-0.5"], "box_margin must not be negative"),
    (["--set", "dropout=1"], "dropout must be in [0, 1)"),
    (["--set", "batch_size"], "--set expects FIELD=VALUE"),
    (["--set", "epochs=three"], "epochs must be a int"),
    (["--data", "no/such/folder"], "unknown data 'no/such/folder'"),
])
def test_train_refuses_bad_settings_before_any_work(tmp_path, capsys, sets, words):
    profile = [] if "--profile" in sets else ["--profile", "smoke"]
    argv = ["train", *profile, *SETS, "--data", "synthetic", *sets, "--out", str(tmp_path / "run"), "--quiet"]
    assert words in cli_error(capsys, *argv)
    assert not (tmp_path / "run" / "stage1.pt").exists()


def test_train_on_a_folder_with_broken_annotations_names_the_file(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "annotations.json").write_text('{"samples": [')
    err = cli_error(capsys, "train", "--profile", "smoke", "--data", str(folder), "--out", str(tmp_path / "run"))
    assert f"{folder / 'annotations.json'}: malformed" in err


@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_commands_on_a_folder_that_is_not_a_run(tmp_path, capsys, command):
    image = tmp_path / "me.png"
    write_image(image)
    for target in (tmp_path, tmp_path / "absent", image):
        argv = [command, str(target)] + ([str(image)] if command == "predict" else [])
        assert "not a run directory (no run.json)" in cli_error(capsys, *argv)


def test_predict_refuses_bad_images_and_boxes(tmp_path, capsys):
    run_dir = fake_run(tmp_path / "run")
    bad, good = tmp_path / "bad.jpg", tmp_path / "good.png"
    bad.write_bytes(b"<html>not an image</html>")
    write_image(good)
    assert f"{bad}: not a readable image" in cli_error(capsys, "predict", str(run_dir), str(good), str(bad))
    assert f"{tmp_path / 'nope.png'}: image file not found" in cli_error(capsys, "predict", str(run_dir),
                                                                          str(tmp_path / "nope.png"))
    for box, words in [("1,2,3", "four numbers"), ("10,10,5,20", "x1 must exceed x0"),
                       ("nan,0,10,10", "finite"), ("0,0,inf,10", "finite")]:
        assert words in cli_error(capsys, "predict", str(run_dir), str(good), "--box", box)
    assert not (run_dir / "predict").exists()


def test_a_hand_edited_run_json_with_a_wrong_type_is_refused(tmp_path, capsys):
    run_dir = fake_run(tmp_path / "run")
    meta = json.loads((run_dir / "run.json").read_text())
    meta["profile"]["stage1"]["input_size"] = "64"
    (run_dir / "run.json").write_text(json.dumps(meta))
    assert "profile field stage1.input_size must be a int, got '64'" in cli_error(capsys, "evaluate", str(run_dir))
    meta["profile"]["stage1"]["input_size"] = 64
    meta["profile"]["input_size"] = 96  # the old flat form beside the new one: which is meant?
    (run_dir / "run.json").write_text(json.dumps(meta))
    assert "input_size is the old flat form of stage1.input_size" in cli_error(capsys, "evaluate", str(run_dir))


@pytest.mark.parametrize("text", ["[]", "{}", "null"])
def test_a_run_json_that_is_not_a_run_description(tmp_path, capsys, text):
    run_dir = fake_run(tmp_path / "run")
    (run_dir / "run.json").write_text(text)
    assert "run.json" in cli_error(capsys, "evaluate", str(run_dir))


@pytest.mark.parametrize("stages", ["0", "-1"])
def test_evaluate_refuses_a_stage_count_below_one(tmp_path, capsys, stages):
    run_dir = fake_run(tmp_path / "run")
    assert "stages" in cli_error(capsys, "evaluate", str(run_dir), "--stages", stages, "--out", str(tmp_path / "r"))


@pytest.mark.parametrize("stages", ["0", "-1"])
def test_train_refuses_a_stage_count_below_one(tmp_path, capsys, stages):
    run_dir = tmp_path / "run"
    assert "stages" in cli_error(capsys, "train", "--profile", "smoke", *SETS, "--set", "epochs=0", "--set",
                                 "refine_epochs=0", "--data", "synthetic", "--stages", stages, "--out", str(run_dir),
                                 "--quiet")


@pytest.mark.parametrize("argv", [["fly"], ["train", "--out", "x", "--stages", "two"], ["evaluate"],
                                  ["download", "flic"]])
def test_argument_errors_exit_2_with_usage(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: deeppose-lab") and "error:" in err and "Traceback" not in err
