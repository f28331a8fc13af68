"""The orchestration layer's contracts: old run files load with their old meaning, one error base class decides
what the command line prints, and loading, evaluation and prediction run where they are told."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import TINY, fake_run

from deeppose_lab import cli, errors, pipeline, rundir
from deeppose_lab.profiles import REFINER_ONLY, STAGE1_ONLY, Profile, get_profile


def flat_profile(profile: Profile) -> dict:
    """The profile as run.json held it before per-stage recipes (one flat object, ``refine_*`` for the refiner)."""
    d = profile.to_dict()
    stage1, refiner = d.pop("stage1"), d.pop("refiner")
    d.update(stage1)
    d.update({old: refiner[new] for old, new in REFINER_ONLY.items()})
    assert {k: stage1[k] for k in stage1 if k not in STAGE1_ONLY} == \
        {k: refiner[k] for k in refiner if k not in STAGE1_ONLY}  # the old format could not say otherwise
    return d


def test_a_run_trained_with_a_flat_run_json_evaluates_and_resumes_as_before(tmp_path):
    run_dir = fake_run(tmp_path / "run")
    nested = pipeline.evaluate_run(run_dir, out=tmp_path / "nested", log=lambda m: None)
    meta = json.loads((run_dir / "run.json").read_text())
    meta["profile"] = flat_profile(Profile.from_dict(meta["profile"]))
    (run_dir / "run.json").write_text(json.dumps(meta))
    flat = pipeline.evaluate_run(run_dir, out=tmp_path / "flat", log=lambda m: None)
    assert flat["stages"] == nested["stages"]
    assert np.array_equal(np.load(tmp_path / "flat" / "predictions.npz")["joints"],
                          np.load(tmp_path / "nested" / "predictions.npz")["joints"])
    # the same settings given the new way are the same run: accepted, nothing retrained
    assert rundir.start_run(run_dir, get_profile("smoke", **TINY), "synthetic")["profile"] == meta["profile"]
    with pytest.raises(errors.RunError, match=r"changed fields \['stage1.lr'\]"):
        rundir.start_run(run_dir, get_profile("smoke", **TINY, lr="0.5"), "synthetic")


def test_a_run_from_before_box_views_resumes_and_keeps_its_one_box(tmp_path):
    run_dir = fake_run(tmp_path / "run")
    meta = json.loads((run_dir / "run.json").read_text())
    del meta["profile"]["view_scale"], meta["profile"]["view_shift"]
    (run_dir / "run.json").write_text(json.dumps(meta))
    viewing = get_profile("smoke", **TINY, view_scale="0.1", view_shift="0.06")  # a test-time choice, not training
    assert rundir.start_run(run_dir, viewing, "synthetic")["profile"] == meta["profile"]
    assert pipeline.load_cascade(run_dir).stage1_views == (0.0, 0.0)
    with pytest.raises(errors.RunError, match=r"changed fields \['stage1.lr'\]"):
        rundir.start_run(run_dir, get_profile("smoke", **TINY, lr="0.5", view_scale="0.1"), "synthetic")


def test_errors_raised_on_purpose_print_one_line_and_bugs_keep_their_traceback(tmp_path, capsys, monkeypatch):
    run_dir = fake_run(tmp_path / "run")
    for on_purpose in (errors.ConfigError("a setting"), errors.RunError("a run folder")):
        def refuse(*args, exc=on_purpose, **kwargs):
            raise exc
        monkeypatch.setattr(pipeline, "load_cascade", refuse)
        assert cli.main(["evaluate", str(run_dir)]) == 2
        assert capsys.readouterr().err.strip() == f"deeppose-lab evaluate: error: {on_purpose}"
    assert issubclass(errors.ConfigError, ValueError)  # code that caught ValueError still catches it

    def bug(*args, **kwargs):
        return np.stack([])  # numpy's own ValueError: not the user's fault, so not dressed as one

    monkeypatch.setattr(pipeline, "load_cascade", bug)
    with pytest.raises(ValueError, match="need at least one array"):
        cli.main(["evaluate", str(run_dir)])


@pytest.mark.parametrize("error", ["DataError", "CheckpointError", "DownloadError", "TrainingDiverged", "RunError",
                                   "ConfigError"])
def test_every_error_the_package_raises_on_purpose_shares_the_base_class(error):
    from deeppose_lab import checkpoint, download, images, train

    where = {"DataError": images, "CheckpointError": checkpoint, "DownloadError": download,
             "TrainingDiverged": train, "RunError": errors, "ConfigError": errors}
    assert issubclass(getattr(where[error], error), errors.DeepPoseError)


def test_loading_puts_every_stage_on_the_device_asked_for(tmp_path):
    run_dir = fake_run(tmp_path / "run")
    cascade = pipeline.load_cascade(run_dir, device="cpu")
    nets = [cascade.stage1, *cascade.refiners]
    assert len(nets) == 2 and all(p.device.type == "cpu" for net in nets for p in net.parameters())
    model, _ = pipeline.load_stage(run_dir, 2, device=torch.device("cpu"))
    assert next(model.parameters()).device.type == "cpu" and not model.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_loading_uses_the_gpu_by_default_when_there_is_one(tmp_path):
    run_dir = fake_run(tmp_path / "run")
    cascade = pipeline.load_cascade(run_dir)
    assert all(p.is_cuda for net in (cascade.stage1, *cascade.refiners) for p in net.parameters())
    gpu = pipeline.evaluate_run(run_dir, out=tmp_path / "gpu", log=lambda m: None)
    cpu = pipeline.evaluate_run(run_dir, out=tmp_path / "cpu", log=lambda m: None, device="cpu")
    assert abs(gpu["stages"][-1]["pcp"]["strict"]["mean"] - cpu["stages"][-1]["pcp"]["strict"]["mean"]) < 0.1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_device_that_is_not_there_is_refused_before_any_work(tmp_path, capsys):
    run_dir = fake_run(tmp_path / "run")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate", str(run_dir), "--device", "cuda"])
    assert exit_.value.code == 2 and "no CUDA GPU is available here" in capsys.readouterr().err
    assert not (run_dir / "report").exists()


def test_a_run_folder_recorded_relative_before_resumes_after(tmp_path, monkeypatch):
    """Runs from before stored a --data folder as typed; resolving it now must not refuse the same command."""
    from deeppose_lab.splits import resolve_data

    (tmp_path / "mine").mkdir()
    monkeypatch.chdir(tmp_path)
    run = fake_run(tmp_path / "run")
    meta = json.loads((run / "run.json").read_text())
    meta["data"] = "mine"
    (run / "run.json").write_text(json.dumps(meta))
    profile = Profile.from_dict(meta["profile"])
    assert rundir.start_run(run, profile, resolve_data("mine"))["data"] == "mine"


def test_a_stored_profile_with_zero_epochs_still_loads_but_a_new_command_cannot_ask_for_it():
    stored = {**get_profile("smoke").to_dict(), "refiner": {**get_profile("smoke").refiner.__dict__, "epochs": 0}}
    assert Profile.from_dict(stored).refiner.epochs == 0
    with pytest.raises(errors.ConfigError, match="at least 1"):
        get_profile("smoke", refine_epochs="0")


@pytest.mark.parametrize("device", ["meta", "cpu:3", "mps"])
def test_devices_the_networks_cannot_run_on_are_refused(tmp_path, capsys, device):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["evaluate", str(fake_run(tmp_path / "run")), "--device", device])
    assert exit_.value.code == 2 and "run on cpu or cuda" in capsys.readouterr().err
