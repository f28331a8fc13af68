"""``deeppose-lab`` end to end: train → evaluate → predict on a tiny smoke run, and the user errors that must end
in exit status 2 with one line naming the problem.

One module-scoped run trained through ``cli.main`` serves every test. ``$DEEPPOSE_DATA`` points at an empty
folder for the whole module, so ``auto`` means the synthetic people and no real data is ever touched.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from deeppose_lab import framing, pipeline, rundir
from deeppose_lab.cli import main
from deeppose_lab.profiles import get_profile
from deeppose_lab.splits import load_data
from deeppose_lab.synthetic import SyntheticPoses

TINY = ["--set", "epochs=1", "--set", "refine_epochs=1", "--set", "synthetic_train=16", "--set", "synthetic_test=6",
        "--set", "val_images=3", "--set", "stages=2"]


@pytest.fixture(scope="module", autouse=True)
def no_real_data(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPPOSE_DATA", str(tmp_path_factory.mktemp("empty_data")))
        mp.delenv("DEEPPOSE_PROFILE", raising=False)
        yield


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, no_real_data):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--profile", "smoke", "--data", "synthetic", "--out", str(out), "--quiet", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pngs")
    people = SyntheticPoses(2, seed=11)
    paths = []
    for i in range(2):
        path = folder / f"person{i}.png"
        Image.fromarray(people.image(i)).save(path)
        paths.append(path)
    return paths


def test_train_writes_a_run_directory(run_dir, capsys):
    assert (run_dir / "stage1.pt").is_file() and (run_dir / "stage2.pt").is_file()
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["data"] == "synthetic" and meta["profile"]["name"] == "smoke"
    assert meta["profile"]["synthetic_train"] == 16 and meta["profile"]["stage1"]["epochs"] == 1
    assert set(meta["stages"]) == {"1", "2"}


def test_evaluate_writes_the_report(run_dir, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run_dir)]) == 0
    assert "|" in capsys.readouterr().out  # the markdown table
    report = run_dir / "report"
    for name in ("report.json", "report.md", "pdj.png", "best_worst.png", "predictions.npz"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    with np.load(report / "predictions.npz", allow_pickle=False) as npz:
        assert npz["joints"].shape == (2, 6, 14, 2)
        assert npz["image_ids"].shape == (6,)
        assert np.all(np.isfinite(npz["joints"]))
    results = json.loads((report / "report.json").read_text())
    assert results["dataset"]["n"] == 6


def test_predict_on_png_files_with_and_without_a_box(run_dir, pngs, tmp_path, capsys):
    whole, boxed = tmp_path / "whole", tmp_path / "boxed"
    assert main(["predict", str(run_dir), *map(str, pngs), "--out", str(whole)]) == 0
    assert main(["predict", str(run_dir), *map(str, pngs), "--out", str(boxed), "--box", "5,10,60,95"]) == 0
    outputs = {}
    for folder in (whole, boxed):
        for path in pngs:
            assert (folder / f"{path.stem}_pose.png").stat().st_size > 0
        records = json.loads((folder / "predictions.json").read_text())["predictions"]
        assert [r["image"] for r in records] == [str(p) for p in pngs]
        assert all(np.array(r["joints"]).shape == (14, 2) and np.array(r["stages"]).shape == (2, 14, 2)
                   for r in records)
        with np.load(folder / "predictions.npz", allow_pickle=False) as npz:
            assert npz["joints"].shape == (2, 2, 14, 2) and np.all(np.isfinite(npz["joints"]))
            assert npz["image_ids"].tolist() == [p.stem for p in pngs]
            outputs[folder] = npz["joints"]
    assert not np.allclose(outputs[whole], outputs[boxed])  # the box changes what stage 1 sees


def test_evaluation_times_the_cascade_with_every_image_already_decoded(run_dir, tmp_path, monkeypatch):
    from deeppose_lab.cascade import Cascade

    phase, decoded_while_predicting = ["loading"], []
    real_load, real_predict = SyntheticPoses.load_image, Cascade.predict

    def load_image(self, i):
        if phase[0] == "predicting":
            decoded_while_predicting.append(i)
        return real_load(self, i)

    def predict(self, *args, **kwargs):
        phase[0] = "predicting"
        try:
            return real_predict(self, *args, **kwargs)
        finally:
            phase[0] = "done"

    monkeypatch.setattr(SyntheticPoses, "load_image", load_image)
    monkeypatch.setattr(Cascade, "predict", predict)
    assert main(["evaluate", str(run_dir), "--out", str(tmp_path / "report")]) == 0
    assert phase[0] == "done" and decoded_while_predicting == []  # decoding is not counted as inference
    meta = json.loads((tmp_path / "report" / "report.json").read_text())["meta"]
    assert meta["decoding_ms_per_image"] >= 0 and meta["inference_ms_per_image"] > 0 and meta["compile"] is False


def test_no_flip_evaluates_and_predicts_a_flip_averaging_run_as_the_paper_did(run_dir, pngs, tmp_path, capsys):
    flipping = tmp_path / "flipping"  # the same networks, recorded as trained with flip averaging at test time
    shutil.copytree(run_dir, flipping, ignore=shutil.ignore_patterns("report", "predict"))
    meta = json.loads((flipping / "run.json").read_text())
    meta["profile"]["flip_test"] = True
    (flipping / "run.json").write_text(json.dumps(meta))
    joints = {}
    for name, folder, extra in (("plain", run_dir, []), ("flip", flipping, []), ("no-flip", flipping, ["--no-flip"])):
        out = tmp_path / f"report-{name}"
        assert main(["evaluate", str(folder), "--out", str(out), *extra]) == 0
        assert json.loads((out / "report.json").read_text())["meta"]["flip_test"] is (name == "flip")
        with np.load(out / "predictions.npz", allow_pickle=False) as npz:
            joints[name] = npz["joints"]
    np.testing.assert_array_equal(joints["no-flip"], joints["plain"])  # the override, not another network
    assert not np.allclose(joints["flip"], joints["plain"])
    predicted = {}
    for extra in ([], ["--no-flip"]):
        out = tmp_path / f"predict{len(extra)}"
        assert main(["predict", str(flipping), *map(str, pngs), "--out", str(out), *extra]) == 0
        with np.load(out / "predictions.npz", allow_pickle=False) as npz:
            predicted[len(extra)] = npz["joints"]
    assert not np.allclose(predicted[0], predicted[1])
    assert pipeline.load_cascade(flipping).flip_test and not pipeline.load_cascade(flipping, flip_test=False).flip_test


def test_views_and_one_box_override_the_runs_box_views_at_test_time(run_dir, pngs, tmp_path, capsys):
    viewing = tmp_path / "viewing"  # the same networks, recorded with every stage's jittered box views at test time
    shutil.copytree(run_dir, viewing, ignore=shutil.ignore_patterns("report", "predict"))
    meta = json.loads((viewing / "run.json").read_text())
    meta["profile"].update(view_scale=0.1, view_shift=0.06, refine_view_scale=0.1, refine_view_shift=0.06)
    (viewing / "run.json").write_text(json.dumps(meta))
    joints, counts = {}, {}
    for name, folder, extra in (("plain", run_dir, []), ("views", viewing, []), ("one-box", viewing, ["--one-box"]),
                                ("--views", run_dir, ["--views", "0.1,0.06", "--refine-views", "0.1,0.06"]),
                                ("0,0", viewing, ["--views", "0,0"]),
                                ("refiners", run_dir, ["--refine-views", "0,0.06"])):
        out = tmp_path / f"report-{name}"
        assert main(["evaluate", str(folder), "--out", str(out), *extra]) == 0
        meta = json.loads((out / "report.json").read_text())["meta"]
        counts[name] = meta["stage1_views"], meta["refine_views"]
        with np.load(out / "predictions.npz", allow_pickle=False) as npz:
            joints[name] = npz["joints"]
    assert counts == {"plain": (1, 1), "views": (15, 15), "one-box": (1, 1), "--views": (15, 15), "0,0": (1, 15),
                      "refiners": (1, 5)}
    np.testing.assert_array_equal(joints["one-box"], joints["plain"])
    np.testing.assert_array_equal(joints["0,0"][0], joints["plain"][0])
    np.testing.assert_array_equal(joints["--views"], joints["views"])
    np.testing.assert_array_equal(joints["refiners"][0], joints["plain"][0])  # stage 1 as it was, the refiners not
    assert not np.allclose(joints["views"], joints["plain"]) and not np.allclose(joints["refiners"], joints["plain"])
    out = tmp_path / "predict"
    assert main(["predict", str(viewing), *map(str, pngs), "--out", str(out), "--one-box", "--whole-image"]) == 0
    for bad in ("0.1", "1,0", "a,b"):
        for option in ("--views", "--refine-views"):
            with pytest.raises(SystemExit):
                main(["evaluate", str(run_dir), option, bad])
    capsys.readouterr()
    for both in (["--views", "0.1,0", "--one-box"], ["--refine-views", "0.1,0", "--one-box"]):
        with pytest.raises(SystemExit) as refused:  # a usage error either way, as argparse reports one
            main(["evaluate", str(run_dir), *both])
        err = capsys.readouterr().err
        assert refused.value.code == 2 and "--one-box" in err and "not allowed with argument" in err
        assert "deeppose-lab evaluate: error:" in err  # the subcommand's usage, not the top-level one
    with pytest.raises(SystemExit) as refused:
        framing.main([str(run_dir), "--one-box", "--refine-views", "0,0.06"])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "not allowed with argument --one-box" in err and "framing: error:" in err


def test_unknown_profile_is_a_user_error(tmp_path, capsys):
    assert main(["train", "--profile", "nope", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "error" in err and "unknown profile 'nope'" in err and "smoke" in err
    assert not (tmp_path / "r").exists()


def test_unknown_set_field_is_a_user_error(tmp_path, capsys):
    assert main(["train", "--profile", "smoke", "--set", "learning_rate=0.1", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown profile field 'learning_rate'" in err
    assert main(["train", "--profile", "smoke", "--set", "epochs=many", "--out", str(tmp_path / "r")]) == 2
    assert "epochs must be a int, got 'many'" in capsys.readouterr().err
    assert main(["train", "--profile", "smoke", "--set", "noequals", "--out", str(tmp_path / "r")]) == 2
    assert "FIELD=VALUE" in capsys.readouterr().err


def test_evaluate_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    assert main(["evaluate", str(folder)]) == 2
    err = capsys.readouterr().err
    assert str(folder) in err and "not a run directory" in err


def test_predict_on_a_corrupt_image(run_dir, pngs, tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    assert main(["predict", str(run_dir), str(pngs[0]), str(bad), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and ("corrupt" in err or "not a readable image" in err)
    assert main(["predict", str(run_dir), str(tmp_path / "missing.png"), "--out", str(tmp_path / "p")]) == 2
    assert "missing.png" in capsys.readouterr().err


def test_predict_with_a_bad_box(run_dir, pngs, tmp_path, capsys):
    assert main(["predict", str(run_dir), str(pngs[0]), "--box", "50,10,20,90", "--out", str(tmp_path)]) == 2
    assert "x1 must exceed x0" in capsys.readouterr().err
    assert main(["predict", str(run_dir), str(pngs[0]), "--box", "1,2,3", "--out", str(tmp_path)]) == 2
    assert "four numbers" in capsys.readouterr().err


def test_training_into_a_locked_run_directory_is_refused(tmp_path, capsys):
    out = tmp_path / "busy"
    with rundir.run_lock(out):
        assert main(["train", "--profile", "smoke", "--data", "synthetic", "--out", str(out), "--quiet", *TINY]) == 2
    err = capsys.readouterr().err
    assert "another training is using this run directory" in err and str(out) in err
    assert not (out / "stage1.pt").exists() and not (out / "run.json").exists()


def test_resuming_with_other_settings_is_refused(run_dir, capsys):
    args = ["train", "--profile", "smoke", "--data", "synthetic", "--out", str(run_dir), "--quiet", *TINY]
    assert main([*args, "--set", "lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "lr" in err


def test_auto_data_is_synthetic_when_no_lsp_is_on_disk():
    profile = get_profile("smoke", synthetic_train=3, synthetic_test=2)
    splits = load_data("auto", profile, log=lambda msg: None)
    assert splits.name == "synthetic" and (len(splits.train), len(splits.dev), len(splits.test)) == (2, 1, 2)
