"""`make bench` must keep running: every figure is produced and positive on tiny settings (no timing asserted)."""

from __future__ import annotations

import json

from deeppose_lab import bench
from deeppose_lab.profiles import get_profile
from deeppose_lab.runs import build_stage_model


def test_every_figure_is_measured_on_tiny_settings(tmp_path):
    smoke = get_profile("smoke")
    assert bench.matmul_limit(__import__("torch").float32, n=64, repeats=1) > 0
    step = bench.train_step_rate(smoke, batch=4, bf16=True, channels_last=False, repeats=1)
    assert step["images_per_s"] > 0 and step["step_gflop"] > 0
    assert bench.data_rate(smoke, n=8) > 0
    latency = bench.inference_latency(smoke, images=2)
    assert latency["seconds_per_image"] > 0 and latency["first_call_seconds"] > 0


def test_step_flops_count_forward_and_backward():
    model = build_stage_model(get_profile("smoke"), 1)
    one, two = bench.step_flops(model, 1), bench.step_flops(model, 2)
    assert two == 2 * one > 0


def test_time_to_accuracy_reads_a_finished_run(tmp_path):
    assert bench.time_to_accuracy(tmp_path) is None
    (tmp_path / "report").mkdir()
    stage = {"pcp": {"strict": {"mean": 0.3}, "loose": {"mean": 0.4}}}
    (tmp_path / "report" / "report.json").write_text(json.dumps({"dataset": {"name": "lsp-test"},
                                                                 "stages": [stage, stage]}))
    (tmp_path / "run.json").write_text(json.dumps({"profile": {"name": "classroom"},
                                                   "stages": {"1": {"seconds": 120}, "2": {"seconds": 60}}}))
    t = bench.time_to_accuracy(tmp_path)
    assert t["minutes"] == {"1": 2.0, "2": 1.0} and t["strict_pcp"] == [0.3, 0.3]


def test_data_is_compared_with_the_step_the_profile_really_runs():
    def fake_steps(name, batches):
        return [{"profile": name, "batch": b, "bf16": bf, "channels_last": cl,
                 "images_per_s": 100.0 * b + 1000 * bf + 10 * cl}
                for b in batches for bf in (False, True) for cl in (False, True)]
    classroom, paper = get_profile("classroom"), get_profile("paper")
    steps = fake_steps("classroom", (32, 64, 128)) + fake_steps("paper", (16, 32))
    mine = bench.data_over_step(2000.0, steps, classroom)  # its own batch and modes
    assert (mine["batch"], mine["bf16"], mine["channels_last"]) == (64, classroom.bf16, classroom.channels_last)
    assert mine["ratio"] == 2000.0 / (6400 + 1000 * classroom.bf16 + 10 * classroom.channels_last)
    theirs = bench.data_over_step(2000.0, steps, paper)  # batch 128 not measured: the largest that was
    assert theirs["batch"] == 32 and theirs["bf16"] == paper.bf16
