"""number_format: bf16 or fp32 as the profile says, or "auto": the faster one here, kept by the run that took it."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import TINY

from deeppose_lab import crops as crops_mod
from deeppose_lab import number_format, pipeline
from deeppose_lab.errors import ConfigError
from deeppose_lab.profiles import Profile, get_profile


@pytest.fixture
def timed(monkeypatch):
    """A CPU with bf16 kernels whose step times the test sets; every call to the timing counted."""
    calls = []
    seconds = {"fp32": 0.2, "bf16": 0.1}

    def fake(recipe, channels_last, rounds=3):
        calls.append(recipe)
        return dict(seconds)

    monkeypatch.setattr(number_format, "step_seconds", fake)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    number_format.measured_choice.cache_clear()
    yield seconds, calls
    number_format.measured_choice.cache_clear()


@pytest.mark.parametrize(("fp32", "bf16", "chosen"), [
    (0.30, 0.10, "bf16"),  # an AMX Xeon: 3× faster in bf16
    (0.20, 0.13, "bf16"),  # a Zen 4: 1.5×
    (0.20, 0.19, "fp32"),  # within the margin: fp32's precision is worth more than 5 %
    (0.20, 0.33, "fp32"),  # AVX-512 BF16 without AMX: bf16 1.66× slower
])
def test_auto_takes_bf16_only_where_it_is_faster_by_the_margin(timed, fp32, bf16, chosen):
    seconds, calls = timed
    seconds.update(fp32=fp32, bf16=bf16)
    profile = get_profile("classroom")
    assert profile.number_format == "auto"
    assert number_format.chosen_format(profile) == chosen
    assert number_format.use_bf16(profile) is (chosen == "bf16")
    assert len(calls) == 1  # measured once per network and machine, not at every call


def test_an_explicit_format_is_never_timed(timed):
    _, calls = timed
    assert number_format.use_bf16(get_profile("classroom", number_format="bf16")) is True
    assert number_format.use_bf16(get_profile("classroom", number_format="fp32")) is False
    assert calls == []


def test_a_cpu_without_bf16_kernels_takes_fp32_without_timing(timed, monkeypatch):
    _, calls = timed
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert number_format.chosen_format(get_profile("classroom")) == "fp32" and calls == []


def test_a_cpu_question_on_a_gpu_host_is_answered_by_the_cpu(timed, monkeypatch):
    """make bench times CPU steps: a GPU with bf16 must not make it time them in bf16 on a CPU without kernels."""
    seconds, calls = timed
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    profile = get_profile("classroom")
    assert number_format.use_bf16(profile) is True and calls == []  # training on the GPU: its bf16, untimed
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert number_format.use_bf16(profile, cpu=True) is False and calls == []
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    number_format.measured_choice.cache_clear()
    seconds.update(fp32=0.1, bf16=0.3)
    assert number_format.use_bf16(profile, cpu=True) is False and len(calls) == 1  # timed on the CPU


def test_timing_a_step_leaves_the_runs_random_numbers_alone():
    recipe = get_profile("smoke").stage1
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    seconds = number_format.step_seconds(recipe, channels_last=True, rounds=1)
    assert torch.equal(torch.rand(3), expected)  # a run's seeds must not depend on whether it measured
    assert set(seconds) == {"fp32", "bf16"} and all(0 < s < 60 for s in seconds.values())


def test_the_timed_step_makes_its_float_input_from_uint8_crops_as_fit_does(monkeypatch):
    # the data pass hands uint8 crops to the step: a step timed without that conversion would flatter the bench
    made = []
    monkeypatch.setattr(number_format, "model_input", lambda *a: made.append(a) or crops_mod.model_input(*a))
    step = number_format.training_step(get_profile("smoke").stage1, 4, bf16=False, channels_last=True)
    step()
    step()
    assert len(made) == 2 and made[0][0].dtype == torch.uint8 and made[0][1].shape == (4, 4)


def test_a_run_records_the_format_auto_took_and_keeps_it_when_resumed(tmp_path, timed):
    seconds, _ = timed
    profile = get_profile("smoke", **TINY, number_format="auto")
    logs = []
    pipeline.train_run(tmp_path / "run", profile, "synthetic", stages=1, progress=False, log=logs.append)
    stored = json.loads((tmp_path / "run" / "run.json").read_text())["profile"]["number_format"]
    assert stored == "bf16" and any("number format: bf16" in m and "fp32 200 ms" in m for m in logs)
    seconds.update(fp32=0.1, bf16=0.3)  # this machine would now choose fp32 ...
    number_format.measured_choice.cache_clear()
    logs.clear()
    pipeline.train_run(tmp_path / "run", profile, "synthetic", progress=False, log=logs.append)
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["profile"]["number_format"] == "bf16" and "2" in meta["stages"]  # ... but the run goes on in bf16
    assert "number format: bf16, as this run started" in logs


def test_an_old_run_json_with_a_bf16_flag_loads_as_its_number_format():
    old = get_profile("classroom").to_dict()
    del old["number_format"]
    assert Profile.from_dict({**old, "bf16": True}).number_format == "bf16"
    assert Profile.from_dict({**old, "bf16": False}).number_format == "fp32"
    with pytest.raises(ConfigError, match="bf16"):
        Profile.from_dict({**old, "bf16": "yes"})
    assert get_profile("smoke", bf16="no").number_format == "fp32"  # --set bf16=no, as before


def test_an_unknown_format_is_refused_by_name():
    with pytest.raises(ConfigError, match="number_format must be one of auto, bf16, fp32, got 'fp16'"):
        get_profile("classroom", number_format="fp16")


def test_a_run_trained_before_number_format_resumes_in_the_format_its_flag_names(tmp_path, timed):
    profile = get_profile("smoke", **TINY, number_format="fp32")
    pipeline.train_run(tmp_path / "run", profile, "synthetic", stages=1, progress=False, log=lambda m: None)
    path = tmp_path / "run" / "run.json"
    meta = json.loads(path.read_text())
    del meta["profile"]["number_format"]
    meta["profile"]["bf16"] = False  # as run.json stored it before
    path.write_text(json.dumps(meta))
    logs = []
    pipeline.train_run(tmp_path / "run", profile.replace(number_format="auto"), "synthetic", progress=False,
                       log=logs.append)
    assert "number format: fp32, as this run started" in logs and "2" in json.loads(path.read_text())["stages"]
