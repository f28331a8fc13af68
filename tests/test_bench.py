"""`make bench` must keep running: every figure is produced and positive on tiny settings (no timing asserted)."""

from __future__ import annotations

import json

import torch

from deeppose_lab import bench
from deeppose_lab.profiles import get_profile


def test_every_figure_is_measured_on_tiny_settings(tmp_path):
    smoke = get_profile("smoke")
    mm, mm_flops = bench.matmul(torch.float32, n=64)
    step, flops = bench.train_step(smoke, batch=4, bf16=True, channels_last=False)
    threads = torch.get_num_threads()
    mm_s, step_s, data_s = bench.interleaved_best([mm, step, bench.data_pass(smoke, n=8)], rounds=1)
    assert torch.get_num_threads() == threads  # the one-core data pass gives the step its threads back
    figures = bench.step_figures(smoke, 4, True, False, step_s, flops)
    assert figures["images_per_s"] > 0 and figures["step_gflop"] > 0 and mm_flops / mm_s > 0 and data_s > 0
    assert bench.matmul_limit(torch.float32, n=64, repeats=1) > 0
    latency = bench.inference_latencies(smoke, images=2, rounds=1)
    assert set(latency["ms_per_image"]) == {"fp32", "bf16", "bf16_compiled"}
    assert min(latency["ms_per_image"].values()) > 0 and latency["compiled_first_call_s"] > 0
    assert latency["bf16_matmul_limit_beside"] > 0


def test_figures_compared_with_each_other_are_timed_in_turn():
    calls = []
    best = bench.interleaved_best([lambda: calls.append("step"), lambda: calls.append("limit")], rounds=3)
    assert calls == ["step", "limit"] * 4  # a warm-up call each, then three rounds taking turns
    assert len(best) == 2 and all(t >= 0 for t in best)


def test_step_flops_count_forward_and_backward():
    model = get_profile("smoke").stage1.build_model()
    one, two = bench.step_flops(model, 1), bench.step_flops(model, 2)
    assert two == 2 * one > 0


def test_time_to_accuracy_reads_a_finished_run(tmp_path):
    assert bench.time_to_accuracy(tmp_path) is None
    (tmp_path / "report").mkdir()
    stage = {"pcp": {"strict": {"mean": 0.3}, "loose": {"mean": 0.4}}}
    (tmp_path / "report" / "report.json").write_text(json.dumps({"dataset": {"name": "lsp-test"},
                                                                 "stages": [stage, stage]}))
    (tmp_path / "run.json").write_text(json.dumps({"profile": {"name": "classroom"}, "data": "lsp",
                                                   "stages": {"1": {"seconds": 120}, "2": {"seconds": 60}}}))
    t = bench.time_to_accuracy(tmp_path)
    assert t["minutes"] == {"1": 2.0, "2": 1.0} and t["strict_pcp"] == [0.3, 0.3]


def test_data_is_compared_with_the_step_the_profile_really_runs():
    classroom, paper = get_profile("classroom"), get_profile("paper")
    assert bench.feeding_batch(classroom, (32, 64, 128)) == classroom.stage1.batch_size == 64  # its own batch
    assert paper.stage1.batch_size not in (16, 32) and bench.feeding_batch(paper, (16, 32)) == 32  # else the largest


def test_the_table_prints_every_figure_of_a_result():
    step = {"profile": "classroom", "batch": 64, "bf16": True, "channels_last": True, "images_per_s": 1000.0,
            "gflop_per_s": 500.0, "matmul_limit_beside": 800.0, "fraction_of_matmul_limit": 0.625}
    result = {"threads": 2, "matmul_gflop_per_s": {"fp32": 300.0, "bf16": 900.0}, "train_steps": [step],
              "data_beside_step": {"classroom": {"samples_per_s_one_core": 5000.0, "step_images_per_s": 1000.0,
                                                 "ratio": 5.0, "batch": 64, "bf16": True, "channels_last": True}},
              "cascade_inference": {"paper": {"ms_per_image": {"fp32": 400.0, "bf16": 200.0, "bf16_compiled": 99.0},
                                              "compiled_first_call_s": 12.0, "bf16_matmul_limit_beside": 1234.0}},
              "time_to_accuracy": None}
    text = bench.table(result)
    for figure in ("62%", "5.0× the step it feeds", "bf16_compiled 99.0", "12 s", "1234 GFLOP/s",
                   "no finished `make demo`"):
        assert figure in text
