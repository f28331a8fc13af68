"""Reliability, second round: each class of defect found by trying the package as a new user would.

1 silent wrong results, 2 output that cannot be written, 3 paths stored as typed, 4 dead ends after a mistake,
5 internal errors dressed as user errors, 6 work that trains nothing, 7 data that leaks or collides, 8 messages
that mislead. Every test here failed before its fix. The fuzz test at the end mutates run folders.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from helpers import SETS, fake_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deeppose_lab import cli, datasets, pipeline
from deeppose_lab.cascade import Cascade
from deeppose_lab.drawing import save_png
from deeppose_lab.skeleton import NUM_JOINTS
from deeppose_lab.synthetic import SyntheticPoses

UNWRITABLE = Path("/sys/deeppose_lab_test_output")  # refused even to root (sysfs), unlike a chmod-ed folder


def one_line_error(capsys, argv: list[str], code: int = 2) -> str:
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def no_inference(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("inference ran before the output folder was checked")

    monkeypatch.setattr(Cascade, "predict", fail)


def own_folder(folder: Path, n: int = 6, names: list[str] | None = None) -> Path:
    """Your-own-images folder: synthetic people saved as PNGs with an annotations.json (0-based pixels)."""
    data = SyntheticPoses(n, seed=3)
    folder.mkdir(parents=True)
    names = names or [f"p{i}.png" for i in range(n)]
    for i, name in enumerate(names):
        save_png(folder / name, data[i].image)
    samples = [{"image": name, "joints": (data.joints[i] - 0.5).tolist()} for i, name in enumerate(names)]
    (folder / "annotations.json").write_text(json.dumps({"samples": samples}))
    return folder


# --- 1 silent wrong results ----------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_a_checkpoint_of_another_network_is_refused_by_every_loader(tmp_path, capsys, command):
    wide = fake_run(tmp_path / "wide", **{"stage1.width": "0.25", "refiner.width": "0.25"})
    narrow = fake_run(tmp_path / "narrow")
    shutil.copy(narrow / "stage1.pt", wide / "stage1.pt")  # a width-0.125 network in a width-0.25 run
    image = tmp_path / "x.png"
    save_png(image, SyntheticPoses(1)[0].image)
    argv = ["evaluate", str(wide)] if command == "evaluate" else ["predict", str(wide), str(image)]
    err = one_line_error(capsys, argv)
    assert "stage1.pt" in err and "width" in err and "another run" in err


def test_a_refiner_trained_with_another_sigma_is_refused(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    other = fake_run(tmp_path / "other", sigma="2.5")
    shutil.copy(other / "stage2.pt", run / "stage2.pt")
    err = one_line_error(capsys, ["evaluate", str(run)])
    assert "stage2.pt" in err and "sigma" in err


# --- 2 output that cannot be written ---------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["evaluate", "predict"])
def test_an_output_folder_that_cannot_be_written_is_one_line_before_any_inference(tmp_path, capsys, monkeypatch,
                                                                                 command):
    run = fake_run(tmp_path / "run")
    image = tmp_path / "x.png"
    save_png(image, SyntheticPoses(1)[0].image)
    no_inference(monkeypatch)
    head = ["evaluate", str(run)] if command == "evaluate" else ["predict", str(run), str(image)]
    existing = tmp_path / "a_file"
    existing.write_text("not a folder")
    for out in (UNWRITABLE, existing, existing / "below"):
        err = one_line_error(capsys, [*head, "--out", str(out)])
        assert str(out) in err or str(existing) in err, err
    assert existing.read_text() == "not a folder"


def test_a_run_folder_that_cannot_be_written_is_one_line(tmp_path, capsys):
    err = one_line_error(capsys, ["train", "--profile", "smoke", *SETS, "--data", "synthetic", "--out",
                                  str(UNWRITABLE), "--quiet"])
    assert str(UNWRITABLE) in err


# --- 3 paths stored as typed ------------------------------------------------------------------------------------

def test_a_relative_data_folder_is_stored_resolved(tmp_path, monkeypatch, capsys):
    own_folder(tmp_path / "own" / "good")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--profile", "smoke", *SETS, "--data", "own/good", "--out", "run", "--quiet"]) == 0
    stored = json.loads((tmp_path / "run" / "run.json").read_text())["data"]
    assert stored == str((tmp_path / "own" / "good").resolve())
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "own" / "good").mkdir(parents=True)  # a different folder with the same relative name
    monkeypatch.chdir(elsewhere)
    assert cli.main(["evaluate", str(tmp_path / "run"), "--out", str(tmp_path / "report")]) == 0
    assert json.loads((tmp_path / "report" / "report.json").read_text())["dataset"]["name"] == "good-test"


# --- 4 dead ends after a mistake --------------------------------------------------------------------------------

def test_a_run_folder_with_no_finished_work_accepts_the_corrected_command(tmp_path, capsys):
    out = str(tmp_path / "run")
    err = one_line_error(capsys, ["train", "--profile", "smoke", *SETS, "--data", "no/such/folder", "--out", out])
    assert "unknown data 'no/such/folder'" in err
    assert cli.main(["train", "--profile", "smoke", *SETS, "--data", "synthetic", "--out", out, "--quiet"]) == 0
    fake_run(tmp_path / "done")  # a run that has finished work keeps refusing other settings, and says what to do
    err = one_line_error(capsys, ["train", "--profile", "smoke", *SETS, "--set", "sigma=1.5", "--data", "synthetic",
                                  "--out", str(tmp_path / "done")])
    assert "changed fields ['sigma']" in err and "another --out" in err


def test_a_truncated_checkpoint_says_what_to_do(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    data = (run / "stage2.pt").read_bytes()
    (run / "stage2.pt").write_bytes(data[: len(data) // 2])
    err = one_line_error(capsys, ["evaluate", str(run)])
    assert "stage2.pt" in err and "delete it and run `deeppose-lab train` again" in err


# --- 5 internal errors dressed as user errors ----------------------------------------------------------------

def test_lsp_with_too_few_poses_for_a_test_split_is_named(tmp_path, monkeypatch, capsys):
    lsp = tmp_path / "data" / "lsp"
    coords = np.random.default_rng(0).uniform(5, 25, size=(1000, NUM_JOINTS, 2))
    arr = np.stack([coords[..., 0].T, coords[..., 1].T, np.zeros((NUM_JOINTS, 1000))])
    (lsp / "images").mkdir(parents=True)
    scipy.io.savemat(lsp / "joints.mat", {"joints": arr})
    for i in range(1000):
        (lsp / "images" / f"im{i + 1:04d}.jpg").write_bytes(b"")
    monkeypatch.setenv("DEEPPOSE_DATA", str(tmp_path / "data"))
    err = one_line_error(capsys, ["train", "--profile", "smoke", *SETS, "--data", "lsp", "--out",
                                  str(tmp_path / "run")])
    assert "joints.mat" in err and "1000 poses" in err and "test" in err


# --- 6 work that trains nothing ---------------------------------------------------------------------------------

def test_data_with_every_joint_hidden_is_refused(tmp_path, capsys):
    folder = own_folder(tmp_path / "hidden")
    doc = json.loads((folder / "annotations.json").read_text())
    for s in doc["samples"]:
        s["visible"] = [False] * NUM_JOINTS
    (folder / "annotations.json").write_text(json.dumps(doc))
    err = one_line_error(capsys, ["train", "--profile", "smoke", *SETS, "--data", str(folder), "--out",
                                  str(tmp_path / "run")])
    assert "no visible joint" in err and not (tmp_path / "run" / "stage1.pt").exists()


@pytest.mark.parametrize("field", ["epochs", "refine_epochs", "stage1.epochs", "refiner.epochs"])
def test_zero_epochs_is_refused(tmp_path, capsys, field):
    err = one_line_error(capsys, ["train", "--profile", "smoke", *SETS, "--set", f"{field}=0", "--data", "synthetic",
                                  "--out", str(tmp_path / "run")])
    assert "epochs must be at least 1" in err


def test_more_stages_than_the_run_has_is_refused(tmp_path, capsys):
    err = one_line_error(capsys, ["evaluate", str(fake_run(tmp_path / "run")), "--stages", "99"])
    assert "2 finished stages" in err


# --- 7 data that leaks or collides -----------------------------------------------------------------------------

def test_an_image_listed_twice_is_refused(tmp_path):
    folder = own_folder(tmp_path / "twice")
    doc = json.loads((folder / "annotations.json").read_text())
    doc["samples"].append(dict(doc["samples"][0]))
    (folder / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(datasets.DataError, match=r"p0.png is listed twice \(entries 1 and 7\)"):
        datasets.load_folder(folder)


def test_images_with_the_same_name_in_different_folders_keep_apart(tmp_path):
    run = fake_run(tmp_path / "run")
    image = SyntheticPoses(2).image
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    save_png(tmp_path / "a" / "x.png", image(0))
    save_png(tmp_path / "b" / "x.png", image(1))
    out = pipeline.predict_images(run, [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"], tmp_path / "out")
    ids = list(np.load(out / "predictions.npz")["image_ids"])
    assert len(set(ids)) == 2
    assert len(list(out.glob("*_pose.png"))) == 2


@pytest.mark.parametrize(("bom", "delimiter"), [(True, ","), (False, ";"), (True, "\t")])
def test_annotation_csv_as_spreadsheets_save_it(tmp_path, bom, delimiter):
    folder = own_folder(tmp_path / "sheet", n=3)
    samples = json.loads((folder / "annotations.json").read_text())["samples"]
    (folder / "annotations.json").unlink()
    header = ["image"] + [f"{a}{j}" for j in range(NUM_JOINTS) for a in ("x", "y", "v")]
    rows = [[s["image"]] + [v for xy in s["joints"] for v in (*xy, 1)] for s in samples]
    text = "\n".join(delimiter.join(map(str, r)) for r in [header, *rows]) + "\n"
    (folder / "annotations.csv").write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    ds = datasets.load_folder(folder)
    assert len(ds) == 3 and np.allclose(ds.joints[0], np.array(samples[0]["joints"]) + 0.5)


# --- 8 messages that mislead ------------------------------------------------------------------------------------

def test_a_nan_box_is_reported_as_typed(tmp_path, capsys):
    image = tmp_path / "x.png"
    save_png(image, SyntheticPoses(1)[0].image)
    err = one_line_error(capsys, ["predict", str(fake_run(tmp_path / "run")), str(image), "--box=nan,0,10,10"])
    assert "--box 'nan,0,10,10'" in err and "finite" in err


def test_an_os_error_while_writing_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    from deeppose_lab import atomic

    run = fake_run(tmp_path / "run")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(run / "report" / "report.md"))

    monkeypatch.setattr(atomic, "write_text", disk_full)
    monkeypatch.setattr("deeppose_lab.report.atomic.write_text", disk_full)
    err = one_line_error(capsys, ["evaluate", str(run)])
    assert f"{run / 'report' / 'report.md'}: No space left on device" in err


def test_a_folder_without_images_given_to_predict_is_named(tmp_path, capsys):
    run = fake_run(tmp_path / "run")  # predict takes folders of images (tests/test_own_data.py); this one has none
    err = one_line_error(capsys, ["predict", str(run), str(tmp_path)])
    assert f"{tmp_path}: folder holds no image files" in err


@pytest.mark.parametrize("command", ["evaluate", "download"])
def test_ctrl_c_outside_training_does_not_promise_checkpoints(tmp_path, capsys, monkeypatch, command):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "evaluate_run", interrupted)
    from deeppose_lab import download
    monkeypatch.setattr(download, "download_dataset", interrupted)
    argv = ["evaluate", str(fake_run(tmp_path / "run"))] if command == "evaluate" else \
        ["download", "lsp", "--root", str(tmp_path / "data")]
    err = one_line_error(capsys, argv, code=130)
    assert "interrupted" in err and "checkpointed" not in err


def test_the_checksum_hint_names_the_real_flag():
    from deeppose_lab import download

    source = Path(download.__file__).read_text()
    assert "sha256=..." not in source and "--sha256" in source


def test_a_matlab_v73_file_is_told_how_to_save_it_readably(tmp_path):
    path = tmp_path / "joints.mat"
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116) + b"\x00" * 8 + b"\x00\x02IM"  # version 0x0200: v7.3, an HDF5 file from byte 512
    path.write_bytes(header + b"\x00" * 384 + b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(datasets.DataError) as info:
        datasets.read_joints_mat(path, "3x14xN")
    assert "-v7" in str(info.value) and "h5py" not in str(info.value)


# --- fuzz: mutated run folders ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """A finished run and its report, made once."""
    run = fake_run(tmp_path_factory.mktemp("fuzz") / "run")
    report = pipeline.evaluate_run(run, out=run.parent / "reference", log=lambda m: None)
    return run, report["stages"]


MUTATIONS = st.one_of(
    st.tuples(st.just("profile"), st.sampled_from(["sigma", "stages", "flip_test", "seed", "name", "stage1",
                                                    "refiner", "augment", "bf16", "number_format",
                                                    "train_box"]),
              st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True),
                        st.text(max_size=5), st.just({}), st.just([]), st.sampled_from(["auto", "bf16", "fp32"]))),
    st.tuples(st.just("recipe"), st.sampled_from(["stage1", "refiner"]),
              st.sampled_from(["input_size", "width", "dropout", "lrn", "batchnorm", "loss", "epochs", "speed"]),
              st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(allow_nan=True),
                        st.text(max_size=5))),
    st.tuples(st.just("top"), st.sampled_from(["data", "stages", "profile"]),
              st.one_of(st.none(), st.integers(), st.text(max_size=8), st.just({}))),
    st.tuples(st.just("bytes"), st.sampled_from(["stage1.pt", "stage2.pt"]), st.integers(0, 10**9),
              st.sampled_from(["truncate", "flip"])),
    st.tuples(st.just("config"), st.sampled_from(["stage1.pt", "stage2.pt"]),
              st.sampled_from(["input_size", "width", "lrn", "hidden", "channels", "unknown_key"]),
              st.one_of(st.integers(1, 300), st.floats(0.01, 2), st.booleans(), st.just((8, 8, 8, 8, 8)))),
)


def mutate(run: Path, mutation: tuple) -> None:
    kind = mutation[0]
    meta_path = run / "run.json"
    if kind in ("profile", "recipe", "top"):
        meta = json.loads(meta_path.read_text())
        if kind == "profile":
            meta["profile"][mutation[1]] = mutation[2]
        elif kind == "recipe":
            meta["profile"][mutation[1]][mutation[2]] = mutation[3]
        else:
            meta[mutation[1]] = mutation[2]
        meta_path.write_text(json.dumps(meta))
    elif kind == "bytes":
        path = run / mutation[1]
        data = bytearray(path.read_bytes())
        at = mutation[2] % len(data)
        if mutation[3] == "truncate":
            data = data[:at]
        else:
            data[at] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path = run / mutation[1]
        ckpt = torch.load(path, weights_only=False)
        ckpt["model_config"][mutation[2]] = mutation[3]
        torch.save(ckpt, path)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=MUTATIONS)
def test_a_mutated_run_folder_gives_one_line_or_the_intended_result(pristine, tmp_path_factory, mutation):
    source, reference = pristine
    run = tmp_path_factory.mktemp("mutated") / "run"
    shutil.copytree(source, run)
    mutate(run, mutation)
    try:
        result = pipeline.evaluate_run(run, out=run / "report", log=lambda m: None)
    except cli.USER_ERRORS as exc:  # what the command line prints as one line
        assert str(exc) and "\n" not in str(exc).strip(), str(exc)
        return
    if mutation[:2] in TEST_TIME_CHOICES | DATA_CHOICES:
        return  # a valid test-time or data setting written into run.json is meant to change the numbers
    assert result["stages"] == reference, f"{mutation} changed the numbers"


# Fields of run.json that choose how the cascade is RUN, not what it learned: a new valid value changes the numbers.
TEST_TIME_CHOICES = {("profile", "flip_test"), ("profile", "number_format")}
# ... and fields that choose the test images (the synthetic people are drawn from the seed): other data, other numbers.
DATA_CHOICES = {("profile", "seed")}


def test_a_digest_over_weights_that_are_not_tensors_is_refused_not_a_traceback(tmp_path, capsys):
    run = fake_run(tmp_path / "run")
    ckpt = torch.load(run / "stage1.pt", weights_only=True)
    ckpt["model"] = {"a": 1}  # not names → tensors, but carrying a digest
    torch.save(ckpt, run / "stage1.pt")
    err = one_line_error(capsys, ["evaluate", str(run)])
    assert "stage1.pt" in err and "digest" in err
