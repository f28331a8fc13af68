"""The evaluation report: known scores on hand-made poses, the paper's table, file units, atomic writes."""

from __future__ import annotations

import json
import zipfile

import matplotlib
import numpy as np
import pytest
from helpers import POSE
from PIL import Image

from deeppose_lab import plots, report
from deeppose_lab.datasets import MATLAB_OFFSET, PoseDataset
from deeppose_lab.images import DataError
from deeppose_lab.skeleton import NUM_JOINTS

WRISTS = [6, 11]


class TinyDataset(PoseDataset):
    """Labels as an LSP reader would give them (file units shifted by MATLAB_OFFSET), grey images."""

    name = "tiny"
    file_offset = MATLAB_OFFSET

    def __init__(self, file_joints: np.ndarray) -> None:
        self.file_joints = np.asarray(file_joints, dtype=np.float64)
        n = len(self.file_joints)
        visible = np.ones((n, NUM_JOINTS), bool)
        visible[:, 0] = False
        super().__init__([f"im{i + 1:04d}" for i in range(n)], self.file_joints + self.file_offset, visible)

    def load_image(self, i: int) -> np.ndarray:
        return np.full((170, 100, 3), 90 + 10 * i, np.uint8)


def tiny(n: int = 5) -> TinyDataset:
    return TinyDataset(np.stack([POSE + [2.0 * i, 3.0 * i] for i in range(n)]))


def stages_for(true: np.ndarray) -> np.ndarray:
    """Stage 1 off by 15 px everywhere, stage 2 by 5 px, stage 3 exact except both wrists 20 px off."""
    third = true.copy()
    third[:, WRISTS, 1] += 20.0
    return np.stack([true + [15.0, 0.0], true + [0.0, 5.0], third])


def strict_json(text: str):
    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=no_constants)


# --- evaluate_predictions ----------------------------------------------------------------------------------


def test_perfect_prediction_scores_one_everywhere():
    true = tiny().joints
    res = report.evaluate_predictions(np.stack([true, true]), true)
    assert res["n"] == 5 and res["num_stages"] == 2
    for st in res["stages"]:
        for mode in ("strict", "loose"):
            pcp = st["pcp"][mode]
            assert pcp["mode"] == mode and pcp["mean"] == 1.0
            assert set(pcp["limbs"].values()) == {1.0} and set(pcp["groups"].values()) == {1.0}
        assert np.all(np.asarray(st["pdj_curve"]) == 1.0)
        assert st["pdj_mean_at_0.1"] == st["pdj_mean_at_0.2"] == 1.0
        assert st["mean_pixel_error"] == 0.0 and st["nonfinite_joints"] == 0
    strict_json(json.dumps(res, allow_nan=False))


def test_known_shifts_give_known_scores():
    true = tiny().joints
    s1, s2, s3 = report.evaluate_predictions(stages_for(true), true)["stages"]
    # 15 px everywhere: legs (35 px, tolerance 17.5) and torso (48 px) pass; arms (12.5) and head (10) fail.
    for mode in ("strict", "loose"):
        g = s1["pcp"][mode]["groups"]
        assert (g["upper_arm"], g["lower_arm"], g["upper_leg"], g["lower_leg"]) == (0.0, 0.0, 1.0, 1.0)
        assert g["head"] == 0.0 and g["torso"] == 1.0 and s1["pcp"][mode]["mean"] == 0.5
    assert s1["mean_pixel_error"] == pytest.approx(15.0)
    assert s1["pdj_mean_at_0.2"] == 0.0  # 15 / 48.1 = 0.31 of the torso
    # 5 px everywhere: every part passes; 5 / 48.1 = 0.104 of the torso, so PDJ@0.1 = 0 and PDJ@0.2 = 1.
    assert s2["pcp"]["strict"]["mean"] == 1.0 and s2["mean_pixel_error"] == pytest.approx(5.0)
    assert s2["pdj_mean_at_0.1"] == 0.0 and s2["pdj_mean_at_0.2"] == 1.0
    # Wrists 20 px off: strict fails the lower arms (20 > 12.5), loose forgives them ((0 + 20) / 2 = 10 ≤ 12.5).
    assert s3["pcp"]["strict"]["groups"]["lower_arm"] == 0.0
    assert s3["pcp"]["loose"]["groups"]["lower_arm"] == 1.0
    assert s3["pcp"]["strict"]["mean"] == 0.75 and s3["pcp"]["loose"]["mean"] == 1.0
    assert s3["pdj_at_0.1"][6] == 0.0 and s3["pdj_at_0.1"][0] == 1.0


def test_nan_predictions_stay_valid_json():
    true = tiny().joints
    pred = true.copy()
    pred[0, 3] = np.nan
    st = report.evaluate_predictions(pred[None], true)["stages"][0]
    assert st["nonfinite_joints"] == 1 and st["mean_pixel_error"] == 0.0
    assert st["pcp"]["strict"]["limbs"]["l_upper_leg"] == pytest.approx(0.8)  # NaN counts as wrong
    strict_json(json.dumps(st, allow_nan=False))


def test_stage_preds_shape_is_checked():
    true = tiny().joints
    with pytest.raises(ValueError, match="one stage"):
        report.evaluate_predictions(true, true)
    with pytest.raises(ValueError, match="images"):
        report.evaluate_predictions(true[None, :3], true)


# --- tables ------------------------------------------------------------------------------------------------


def test_paper_rows_are_consistent():
    for s, row in report.PAPER_LSP_PCP.items():
        four = np.mean([row[g] for g in ("upper_arm", "lower_arm", "upper_leg", "lower_leg")])
        assert abs(four - row["mean"]) <= 0.0051, s  # the paper's mean column, to its 2 printed decimals


def test_markdown_table_has_paper_rows_and_ours():
    true = tiny().joints
    res = report.evaluate_predictions(stages_for(true), true)
    base = report.evaluate_predictions((true + [15.0, 0.0])[None], true)
    md = report.markdown_table(res, base, baseline_name="mean pose")
    assert "| Method | Arm upper | Arm lower | Leg upper | Leg lower | Mean |" in md
    assert "| DeepPose stage 1 (paper) | 0.50 | 0.27 | 0.74 | 0.65 | 0.54 |" in md
    assert "| DeepPose stage 2 (paper) | 0.56 | 0.36 | 0.78 | 0.70 | 0.60 |" in md
    assert "| DeepPose stage 3 (paper) | 0.56 | 0.38 | 0.77 | 0.71 | 0.61 |" in md
    assert "| ours, stage 1 (strict) | 0.000 | 0.000 | 1.000 | 1.000 | 0.500 |" in md
    assert "| ours, stage 3 (strict) | 1.000 | 0.000 | 1.000 | 1.000 | 0.750 |" in md
    assert "| ours, stage 3 (loose) | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 |" in md
    assert "| mean pose (strict) | 0.000 | 0.000 | 1.000 | 1.000 | 0.500 |" in md
    assert "recalled" in md and "strict" in md and "loose" in md and "PCP at 0.5" in md
    assert "| ours, stage 2 | 0.000 | 1.000 | 1.000 | 1.000 | 1.000 | 1.000 | 5.0 |" in md


def test_markdown_table_without_baseline():
    true = tiny().joints
    md = report.markdown_table(report.evaluate_predictions(true[None], true))
    assert "mean pose" not in md and md.count("(paper)") == 3 and md.count("ours, stage 1") == 3


# --- predictions file --------------------------------------------------------------------------------------


def test_export_is_in_annotation_file_units(tmp_path):
    ds = tiny(3)
    path = tmp_path / "predictions.npz"
    preds = np.stack([ds.joints, ds.joints + 1.0])
    report.export_predictions(path, ds.ids, preds, ds.file_offset)
    with np.load(path, allow_pickle=False) as npz:
        assert list(npz["image_ids"]) == ds.ids
        joints = npz["joints"]
    assert joints.shape == (2, 3, NUM_JOINTS, 2)
    # A perfect prediction exported must equal what the annotation FILE says (fails if the offset sign flips).
    assert np.array_equal(joints[0], ds.file_joints)
    assert joints[0, 0, 0, 0] == POSE[0, 0] == 43.0
    ids, back = report.load_predictions(path, ds.file_offset)
    assert ids == ds.ids and np.allclose(back, preds)


def test_export_checks_ids_against_predictions(tmp_path):
    ds = tiny(3)
    with pytest.raises(ValueError, match="images"):
        report.export_predictions(tmp_path / "p.npz", ds.ids[:2], ds.joints[None], ds.file_offset)


def write_npz(path, **arrays):
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


@pytest.mark.parametrize("case", ["missing_key", "bad_shape", "ids_length", "pickled", "not_a_zip", "absent"])
def test_load_predictions_names_the_file_when_malformed(tmp_path, case):
    path = tmp_path / f"{case}.npz"
    good_ids, good = np.array(["a", "b"]), np.zeros((1, 2, NUM_JOINTS, 2))
    if case == "missing_key":
        write_npz(path, image_ids=good_ids)
    elif case == "bad_shape":
        write_npz(path, image_ids=good_ids, joints=np.zeros((2, NUM_JOINTS, 2)))
    elif case == "ids_length":
        write_npz(path, image_ids=np.array(["a"]), joints=good)
    elif case == "pickled":
        write_npz(path, image_ids=np.array(["a", None], dtype=object), joints=good)
    elif case == "not_a_zip":
        path.write_bytes(b"this is not an npz")
    with pytest.raises(DataError, match=case):
        report.load_predictions(path, 0.0)


# --- figures -----------------------------------------------------------------------------------------------


def test_plot_pdj_writes_a_png_and_leaves_the_backend_alone(tmp_path):
    backend = matplotlib.get_backend()
    true = tiny().joints
    res = report.evaluate_predictions(stages_for(true), true)
    plots.save(plots.pdj(res, baseline=res), tmp_path / "pdj.png")
    assert matplotlib.get_backend() == backend
    with Image.open(tmp_path / "pdj.png") as img:
        assert img.format == "PNG" and img.width > 400


def test_best_worst_sheet(tmp_path):
    ds = tiny(5)
    pred = stages_for(ds.joints)[0]
    pred[2] += 30.0  # image 3 is the worst
    sheet = report.best_worst_sheet(ds, pred, ds.joints, tmp_path / "bw.png", k=2, tile_size=64)
    assert sheet.ndim == 3 and sheet.shape[1] == 2 * 64 + 3 * 4
    assert np.array_equal(np.asarray(Image.open(tmp_path / "bw.png")), sheet)


# --- the whole report --------------------------------------------------------------------------------------


def make_report(out, ds, meta=None):
    preds = stages_for(ds.joints)
    base = np.broadcast_to(ds.joints.mean(axis=0), ds.joints.shape)
    return report.write_report(out, preds, ds, meta or {"profile": "smoke", "sigma": np.float32(2.0)}, base, k=2)


def test_write_report_writes_everything(tmp_path):
    ds = tiny()
    res = make_report(tmp_path, ds)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(report.REPORT_FILES)
    doc = strict_json((tmp_path / "report.json").read_text())
    assert doc["meta"] == {"profile": "smoke", "sigma": 2.0}
    assert doc["dataset"] == {"name": "tiny", "n": 5, "file_offset": MATLAB_OFFSET}
    assert doc["stages"][0]["pcp"]["strict"]["mean"] == 0.5 == res["stages"][0]["pcp"]["strict"]["mean"]
    assert doc["baseline"]["name"] == "mean pose" and len(doc["baseline"]["stages"]) == 1
    md = (tmp_path / "report.md").read_text()
    assert "DeepPose stage 3 (paper)" in md and "ours, stage 3 (loose)" in md and "mean pose (strict)" in md
    ids, back = report.load_predictions(tmp_path / "predictions.npz", ds.file_offset)
    assert ids == ds.ids and np.allclose(back, stages_for(ds.joints))
    for name in ("pdj.png", "best_worst.png"):
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG"


def test_failure_while_writing_report_json_keeps_the_previous_one(tmp_path, monkeypatch):
    ds = tiny()
    make_report(tmp_path, ds)
    before = (tmp_path / "report.json").read_bytes()

    def half_then_crash(doc):
        yield '{"stages": ['
        raise OSError("disk full")

    monkeypatch.setattr(report, "json_chunks", half_then_crash)
    with pytest.raises(OSError, match="disk full"):
        make_report(tmp_path, ds, {"profile": "changed"})
    assert (tmp_path / "report.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(report.REPORT_FILES)  # no temporary files left


def test_failure_before_report_json_keeps_the_previous_one(tmp_path, monkeypatch):
    ds = tiny()
    make_report(tmp_path, ds)
    before = (tmp_path / "report.json").read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(plots, "pdj", crash)
    with pytest.raises(RuntimeError, match="plot failed"):
        make_report(tmp_path, ds, {"profile": "changed"})
    assert (tmp_path / "report.json").read_bytes() == before  # report.json is written last


def test_unserialisable_meta_is_a_clear_error(tmp_path):
    with pytest.raises(TypeError, match="report.json"):
        make_report(tmp_path, tiny(), {"model": object()})
    assert not (tmp_path / "report.json").exists()


def test_npz_is_a_plain_zip_of_npy_files(tmp_path):
    ds = tiny(2)
    report.export_predictions(tmp_path / "p.npz", ds.ids, ds.joints[None], ds.file_offset)
    assert sorted(zipfile.ZipFile(tmp_path / "p.npz").namelist()) == ["image_ids.npy", "joints.npy"]
