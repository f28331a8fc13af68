"""The dev split and the per-set framing of training boxes (the accuracy issue's data side).

A training crop must show the framing the test box will show: LSP's whole image for LSP, a person box of about
the same margin for LSP-extended (framed 2.5x the person, off centre). A recipe is chosen on a dev split of
TRAINING images, never on LSP test, and the validation loss comes from it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_datasets import distinct_coords, write_lsp, write_lspet

from deeppose_lab import crops as C
from deeppose_lab import geometry as g
from deeppose_lab import pipeline, rundir
from deeppose_lab.datasets import Concat, load_lsp, load_lspet
from deeppose_lab.profiles import get_profile
from deeppose_lab.splits import load_data


@pytest.fixture
def lsp_and_lspet(tmp_path, monkeypatch):
    """A 1000+100-image LSP (the standard split needs 1000 training images) and a 6-image LSP-extended."""
    n = 1100
    write_lsp(tmp_path / "lsp", distinct_coords(n), np.zeros((n, 14)))
    write_lspet(tmp_path / "lspet", distinct_coords(6), np.ones((6, 14)), h=120, w=90)
    monkeypatch.setenv("DEEPPOSE_DATA", str(tmp_path))
    return tmp_path


def test_lsp_dev_split_is_lsp_801_to_1000_and_never_in_training_or_test(lsp_and_lspet):
    splits = load_data("lsp", get_profile("smoke", lsp_repeats=1), log=lambda m: None)
    assert splits.dev.ids == [f"im{i:04d}" for i in range(801, 1001)]
    assert len(splits.train) == 800 + 6 and len(splits.test) == 100
    train_ids = {i.split("/")[-1] for i in splits.train.ids}
    assert not train_ids & set(splits.dev.ids) and not set(splits.test.ids) & set(splits.dev.ids)


def test_lsp_without_lsp_extended_says_what_it_trained_on(lsp_and_lspet):
    import shutil
    shutil.rmtree(lsp_and_lspet / "lspet")
    said = []
    splits = load_data("lsp", get_profile("smoke", lsp_repeats=1), log=said.append)
    assert len(splits.train) == 800 and "LSP 1-800 only" in said[0] and "no LSP-extended" in said[0]


def test_validation_comes_from_the_dev_split_not_the_test_set(tmp_path):
    """train_run's val loss: the dev split of the training images (synthetic: their last tenth)."""
    profile = get_profile("smoke", synthetic_train=20, synthetic_test=4, epochs=1, stages=1, val_images=16)
    splits = load_data("synthetic", profile, log=lambda m: None)
    assert len(splits.train) == 18 and len(splits.dev) == 2
    full = load_data("synthetic", profile.replace(val_images=0), log=lambda m: None)  # one at least
    assert len(full.dev) == 1
    seen = []
    original = pipeline.train_stage1
    pipeline.train_stage1 = lambda run_dir, p, train, val, progress: seen.append(val.ids) or original(
        run_dir, p, train, val, progress)
    try:
        pipeline.train_run(tmp_path / "run", profile, "synthetic", progress=False, log=lambda m: None)
    finally:
        pipeline.train_stage1 = original
    assert seen == [splits.dev.ids] and not set(seen[0]) & set(splits.test.ids)


def test_lspet_is_framed_by_the_person_and_lsp_by_the_whole_image(lsp_and_lspet):
    lsp, lspet = load_lsp(split="train"), load_lspet(verbose=False)
    both = Concat([lsp.subset(range(3)), lspet])
    assert [both.framing_of(i) for i in (0, 2, 3, 8)] == ["image", "image", "person", "person"]
    assert both.subset([4, 1]).framing_of(0) == "person" and both.subset([4, 1]).framing_of(1) == "image"
    boxes = C.training_boxes(both, "auto", 0.16)
    np.testing.assert_allclose(boxes[0], g.image_box(40, 30))
    np.testing.assert_allclose(boxes[3], g.person_box(both[3].joints, both[3].visible, 0.16))
    assert boxes[3][2] < 0.5 * g.image_box(120, 90)[2]  # the person, not LSP-extended's loose whole image
    np.testing.assert_allclose(C.training_boxes(both, "image", 0.16)[3], g.image_box(120, 90))


def test_person_crops_use_the_framing_of_each_sample(lsp_and_lspet):
    both = Concat([load_lsp(split="train").subset(range(2)), load_lspet(verbose=False)])
    crops = C.PersonCrops(both, 32, g.Augmentation.none(), "auto", 0.16)
    for n in (0, 4):  # an LSP and an LSP-extended sample: the target is N(y; its framing box)
        box = C.training_boxes(both, "auto", 0.16)[n]
        np.testing.assert_allclose(crops.item(n, None).target, g.normalise(both[n].joints, box), atol=1e-6)


def test_mean_pose_baseline_normalises_each_training_pose_in_its_own_framing(lsp_and_lspet):
    """LSP-extended poses normalised in their loose whole images would shrink the mean pose towards the centre."""
    both = Concat([load_lsp(split="train").subset(range(2)), load_lspet(verbose=False)])
    test = load_lsp(split="test").subset(range(3))
    profile = get_profile("smoke", train_box="auto", box_margin=0.16)
    baseline = pipeline.mean_pose_baseline(both, test, profile)
    boxes = C.training_boxes(both, "auto", 0.16)
    mean = np.mean([g.normalise(both[n].joints, boxes[n]) for n in range(len(both))], axis=0)
    np.testing.assert_allclose(baseline[0], g.denormalise(mean, C.inference_box(test[0])))
    whole = pipeline.mean_pose_baseline(both, test, profile.replace(train_box="image"))
    assert np.ptp(whole[0], axis=0).max() < np.ptp(baseline[0], axis=0).max()


def test_refiners_learn_from_a_fixed_subset_when_asked(lsp_and_lspet):
    splits = load_data("lsp", get_profile("smoke", lsp_repeats=1), log=lambda m: None)
    assert pipeline.refiner_images(splits.train, get_profile("smoke")) is splits.train
    chosen = pipeline.refiner_images(splits.train, get_profile("smoke", refine_images=50))
    again = pipeline.refiner_images(splits.train, get_profile("smoke", refine_images=50))
    assert len(chosen) == 50 and chosen.ids == again.ids and len(set(chosen.ids)) == 50
    assert set(chosen.ids) <= set(splits.train.ids)
    other = pipeline.refiner_images(splits.train, get_profile("smoke", refine_images=50, seed=1))
    assert other.ids != chosen.ids


def test_time_to_accuracy_chains_the_stages_minutes():
    from deeppose_lab.plots import time_to_accuracy as figure
    from deeppose_lab.rundir import dev_points as time_to_accuracy

    history = [{"seconds": 30.0}, {"seconds": 30.0, "dev_strict_pcp": 0.1, "dev_loose_pcp": 0.2},
               {"seconds": 60.0, "dev_strict_pcp": 0.15, "dev_loose_pcp": 0.25}]
    curve = rundir.dev_curve(history)
    assert curve == [[60.0, 0.1, 0.2], [120.0, 0.15, 0.25]]
    stages = {"1": {"seconds": 120.0, "dev_curve": curve}, "2": {"seconds": 60.0, "dev_curve": [[60.0, 0.2, 0.3]]}}
    assert time_to_accuracy(stages) == [(1, 1.0, 0.1, 0.2), (1, 2.0, 0.15, 0.25), (2, 3.0, 0.2, 0.3)]
    assert time_to_accuracy({"1": {"seconds": 5.0, "epochs": 1}}) == []  # a run from before the curve
    assert figure({"1": {"seconds": 5.0, "epochs": 1}}) is None


def test_training_records_the_dev_curve_and_the_report_draws_it(tmp_path):
    profile = get_profile("smoke", synthetic_train=20, synthetic_test=4, epochs=2, refine_epochs=1, stages=2,
                          val_images=4)
    pipeline.train_run(tmp_path / "run", profile, "synthetic", progress=False, log=lambda m: None)
    meta = rundir.read_run(tmp_path / "run")
    assert [len(meta["stages"][s]["dev_curve"]) for s in ("1", "2")] == [2, 1]
    assert all(0.0 <= p[1] <= p[2] <= 1.0 for s in ("1", "2") for p in meta["stages"][s]["dev_curve"])
    pipeline.evaluate_run(tmp_path / "run", log=lambda m: None)
    assert (tmp_path / "run" / "report" / "time_to_accuracy.png").stat().st_size > 1000


def test_lsp_repeats_weighs_lsp_against_lsp_extended(lsp_and_lspet):
    said = []
    splits = load_data("lsp", get_profile("smoke", lsp_repeats=3), log=said.append)
    assert len(splits.train) == 3 * 800 + 6 and "x3 each epoch" in said[0]
    assert splits.train.ids[:800] == splits.train.ids[800:1600]
    assert [splits.train.framing_of(i) for i in (0, 2399, 2400)] == ["image", "image", "person"]
    assert splits.train.image(5) is splits.train.image(805)  # one decoded copy, however many repeats


def test_a_study_trial_scores_every_stage_on_the_dev_split(tmp_path):
    from deeppose_lab import study

    row = study.trial("t", 2, {"synthetic_train": "20", "synthetic_test": "4", "epochs": "1", "refine_epochs": "1"},
                      tmp_path, profile_name="smoke", data="synthetic")
    assert row["name"] == "t" and len(row["dev"]) == 2 and set(row["stage_seconds"]) == {"1", "2"}
    assert all(0.0 <= d["strict"] <= d["loose"] <= 1.0 for d in row["dev"])
    again = study.score_run(tmp_path / "t", "t again")  # the same run scored afterwards: the same numbers
    assert again["dev"] == row["dev"] and again["overrides"]["stage1.epochs"] == "1"
    viewed = study.score_run(tmp_path / "t", "t with views", {"view_scale": "0.1", "view_shift": "0.06"})
    assert viewed["overrides"]["view_scale"] == "0.1" and len(viewed["dev"]) == 2  # the numbers: test_cascade
    with pytest.raises(ValueError, match="view_scale"):
        study.score_run(tmp_path / "t", "bad", {"sigma": "2"})


def test_refiners_learn_from_stage_1_looking_where_its_training_crops_were_framed(lsp_and_lspet, tmp_path,
                                                                                 monkeypatch):
    """LSP-extended's training poses for stage 2 come from stage 1 on the person box, not its loose whole image."""
    from deeppose_lab.cascade import Cascade

    calls = []
    original = Cascade.first_pose

    def spy(self, dataset, boxes=None):
        calls.append((dataset, boxes))
        return original(self, dataset, boxes)

    monkeypatch.setattr(Cascade, "first_pose", spy)
    profile = get_profile("smoke", lsp_repeats=1, epochs=1, refine_epochs=1, stages=2, val_images=4, batch_size=64,
                          val_every=0, refine_images=0)
    pipeline.train_run(tmp_path / "run", profile, "lsp", progress=False, log=lambda m: None)
    (train, boxes), (val, val_boxes) = calls
    assert len(train) == 806 and val_boxes is None and len(val) == 4
    np.testing.assert_allclose(boxes, C.training_boxes(train, "auto", profile.box_margin))
    person = [n for n in range(len(train)) if train.framing_of(n) == "person"]
    assert len(person) == 6
    for n in person:
        assert boxes[n][2] < g.image_box(120, 90)[2]


def test_paper_check_reports_the_training_loss_beside_the_mean_pose_loss(tmp_path):
    from deeppose_lab import study

    row = study.paper_check(images=8, epochs=2, batch_size=4, overrides={"input_size": 64, "width": 0.125,
                            "synthetic_train": 20, "synthetic_test": 4}, out=tmp_path / "p", data="synthetic")
    assert row["steps"] == 4 and len(row["train_loss"]) == 2 and row["loss"] == "l2"
    assert row["optimizer"] == "adagrad" and row["mean_pose_loss"] > 0 and row["final_loss"] > 0
    assert row["dev_mean_pose_loss"] > 0 and row["dev_loss"] > 0  # held out: the synthetic data's dev split
    assert 0 < row["dev_best_constant_loss"] <= row["dev_mean_pose_loss"]  # dev's own mean is the best constant


def test_paper_check_command_line_takes_its_sizes_apart_from_the_profile_fields(monkeypatch):
    from deeppose_lab import study

    seen = {}
    monkeypatch.setattr(study, "paper_check", lambda **kw: seen.update(kw) or {})
    monkeypatch.setattr(study, "print_and_keep", lambda row, path: None)
    study.main(["--paper-check", "images=64", "epochs=5", "batch_size=8", "optimizer=adam", "lr=0.001"])
    assert seen == {"images": 64, "epochs": 5, "batch_size": 8, "overrides": {"optimizer": "adam", "lr": "0.001"}}


def test_the_mean_pose_line_is_the_best_constant_prediction_under_l2():
    from deeppose_lab import study
    from deeppose_lab.crops import PersonCrops
    from deeppose_lab.geometry import Augmentation
    from deeppose_lab.synthetic import SyntheticPoses

    crops = PersonCrops(SyntheticPoses(12, seed=5), 32, Augmentation.none(), "person")
    mean = study.mean_target(crops)
    line = study.constant_loss(mean, crops, "l2")
    assert 0 < line < study.constant_loss(torch.zeros_like(mean), crops, "l2")
    for joint, axis in [(0, 0), (7, 1), (13, 0)]:
        moved = mean.clone()
        moved[joint, axis] += 0.05
        assert study.constant_loss(moved, crops, "l2") > line


def test_the_study_command_line_shows_its_usage_instead_of_a_traceback(capsys):
    from deeppose_lab import study

    study.main(["--help"])
    assert "python -m deeppose_lab.study NAME STAGES" in capsys.readouterr().out
    for argv, named in [([], "NAME STAGES"), (["AK"], "NAME STAGES"), (["AK", "three"], "'three'"),
                        (["AK", "3", "epochs"], "'epochs'"), (["--score", "runs/demo"], "--score RUN NAME"),
                        (["--tabel", "3"], "'--tabel'"), (["AK", "\u00b2"], "STAGES"),
                        (["--paper-check", "images=abc"], "images")]:
        with pytest.raises(SystemExit) as stop:
            study.main(argv)
        assert named in str(stop.value) and "usage" in str(stop.value), argv
