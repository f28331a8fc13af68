"""`make bench` must keep running: every figure is produced and positive on tiny settings (no timing asserted)."""

from __future__ import annotations

import json
import re

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from deeppose_lab import bench, limits
from deeppose_lab.profiles import get_profile
from deeppose_lab.synthetic import SyntheticPoses


def test_every_figure_is_measured_on_tiny_settings(tmp_path):
    smoke = get_profile("smoke")
    probe = limits.limit_probe(torch.float32, scale=32)
    step, flops = bench.train_step(smoke, batch=4, bf16=True, channels_last=False)
    threads = torch.get_num_threads()
    limit, (step_s, data_s) = bench.timed_with_limit(probe, [step, bench.data_pass(smoke, n=8)], rounds=1)
    assert torch.get_num_threads() == threads  # the one-core data pass gives the step its threads back
    figures = bench.step_figures(smoke, 4, True, False, step_s, flops)
    assert figures["images_per_s"] > 0 and figures["step_gflop"] > 0 and limit.gflop_per_s > 0 and data_s > 0
    latency = bench.inference_latencies(smoke, images=2, rounds=1, bf16=True)
    assert set(latency["ms_per_image"]) == {"fp32", "bf16", "bf16_compiled"}
    assert min(latency["ms_per_image"].values()) > 0 and latency["compiled_first_call_s"] > 0
    assert latency["gflop_per_image"] > 0 and 0 < latency["least_ms_at_limit"] and latency["limit_format"] == "bf16"


def test_a_cpu_without_bf16_kernels_is_measured_in_fp32_only(monkeypatch):
    # bf16 on torch's reference loops (an AVX2 CPU) took the bench past 20 minutes, in a format never run there.
    smoke = get_profile("smoke")
    for kernels, formats in ((False, {False}), (True, {False, True})):
        monkeypatch.setattr(bench, "bf16_kernels", lambda kernels=kernels: kernels)
        probes = bench.limit_probes(scale=32)
        assert set(probes) == formats and all(p.dtype == (torch.bfloat16 if b else torch.float32)
                                              for b, p in probes.items())
    monkeypatch.setattr(bench, "bf16_kernels", lambda: False)
    assert set(bench.inference_latencies(smoke, images=1, rounds=1)["ms_per_image"]) == {"fp32", "fp32_compiled"}
    rows = bench.step_rows(smoke, (2,), 1, {False: limits.limit_probe(torch.float32, scale=32)})
    assert [(r["bf16"], r["channels_last"]) for r in rows] == [(False, False), (False, True)]
    latency = bench.inference_latencies(smoke, images=2, rounds=1, bf16=False)
    assert set(latency["ms_per_image"]) == {"fp32", "fp32_compiled"} and latency["limit_format"] == "fp32"
    r = result()
    del r["limits"]["bf16"]
    r["cascade_inference"]["paper"]["limit_format"] = "fp32"
    text = bench.table(r)
    assert "bf16 not timed: oneDNN has no bf16 kernels" in text.splitlines()[1] and "at the fp32 limit" in text
    assert "bf16 not timed" not in bench.table(result())


def test_the_peer_epoch_and_the_package_epoch_train_on_the_same_files(tmp_path):
    smoke = get_profile("smoke")
    data = bench.peer_images(6, tmp_path)  # LSP 1-6 where LSP is present, else synthetic people written as JPEGs
    assert len(data) == 6 and all(p.is_file() for p in data.paths)
    x, y, w = bench.StudentCrops(data.paths, data.joints, data.visible, 32, 0.16)[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= float(x.min()) <= float(x.max()) <= 1
    assert y.shape == (14, 2) and w.shape == (14,)
    bench.student_epoch(smoke, data)()
    bench.package_epoch(smoke, data)()


def test_the_training_set_is_decoded_once_and_its_cache_measured(monkeypatch):
    smoke = get_profile("smoke")
    decoded = []
    real = SyntheticPoses.load_image
    monkeypatch.setattr(SyntheticPoses, "load_image", lambda self, i: decoded.append(i) or real(self, i))
    train, figures = bench.decoded_training_set(smoke, "synthetic")
    n = smoke.synthetic_train  # the synthetic training images (their dev split among them), each decoded once
    assert figures["images"] == len(decoded) == len(set(decoded)) == n and figures["decode_s"] > 0
    pixels = sum(train[i].image.shape[0] * train[i].image.shape[1] for i in range(len(train)))
    pixels += sum(s.image.shape[0] * s.image.shape[1] for s in bench.load_data("synthetic", smoke, print).dev)
    assert figures["cache_gib"] * 2**30 == 4 * pixels  # four bytes a pixel, every image


def test_every_widget_redraw_is_timed():
    times = bench.widget_redraws(get_profile("smoke"), SyntheticPoses(4, seed=0), moves=2)
    assert set(times) == {"sample_browser", "crop_explorer", "cascade_stepper", "error_inspector", "box_picker"}
    assert all(0 < t["best_ms"] <= t["median_ms"] for t in times.values())


def test_figures_compared_with_each_other_are_timed_in_turn():
    calls = []
    best = bench.interleaved_best([lambda: calls.append("step"), lambda: calls.append("limit")], rounds=3)
    assert calls == ["step", "limit"] * 4  # a warm-up call each, then three rounds taking turns
    assert len(best) == 2 and all(t >= 0 for t in best)


def test_step_flops_count_forward_and_backward():
    model = get_profile("smoke").stage1.build_model()
    one, two = bench.step_flops(model, 1), bench.step_flops(model, 2)
    assert two == 2 * one > 0


def test_flops_are_counted_as_a_direct_convolution_executes_them():
    conv = torch.nn.Conv2d(4, 8, 3, padding=1)
    assert bench.valid_tap_fraction(conv, (7, 7)) == pytest.approx((19 / 21) ** 2)  # border outputs: 2 of 3 taps
    assert bench.valid_tap_fraction(torch.nn.Conv2d(4, 8, 3), (7, 7)) == 1.0
    x = torch.rand(2, 4, 7, 7)
    with FlopCounterMode(display=False) as counter:
        conv(x)
    assert bench.executed_flops(lambda: conv(x)) == round(counter.get_total_flops() * (19 / 21) ** 2)
    x.requires_grad_(True)  # forward, weight gradient and input gradient: three times the forward's skipped taps
    with FlopCounterMode(display=False) as counter:
        conv(x).sum().backward()
    assert bench.executed_flops(lambda: conv(x).sum().backward()) == round(counter.get_total_flops() * (19 / 21) ** 2)


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
    line = bench.time_to_accuracy_line(t)  # minutes add up stage after stage
    assert line.endswith("stage 1 after 2.0 min: 0.300 strict, 0.400 loose; stage 2 after 3.0 min: 0.300 strict, "
                         "0.400 loose")


def test_data_is_compared_with_the_step_the_profile_really_runs():
    classroom, paper = get_profile("classroom"), get_profile("paper")
    assert bench.feeding_batch(classroom, (32, 64, 128)) == classroom.stage1.batch_size == 64  # its own batch
    assert paper.stage1.batch_size not in (16, 32) and bench.feeding_batch(paper, (16, 32)) == 32  # else the largest


LIMIT = {"limit_gflop_per_s": 800.0, "bound": "nominal", "nominal_gflop_per_s": 800.0, "best_gemm_gflop_per_s": 700.0,
         "ghz": 3.6}


def result(step_fraction: float = 0.625, inference_fraction: float = 0.5) -> dict:
    step = {"profile": "classroom", "batch": 64, "bf16": True, "channels_last": True, "images_per_s": 1000.0,
            "gflop_per_s": 800.0 * step_fraction, **LIMIT, "fraction_of_limit": step_fraction}
    limit = {"gflop_per_s": 800.0, "bound": "nominal", "nominal": 800.0, "best_gemm": 700.0, "ghz": 3.6}
    return {"threads": 2, "cores": 2, "flops_per_cycle": {"fp32": 32, "bf16": 64},
            "limits": {"fp32": limit, "bf16": limit}, "train_steps": [step],
            "number_format": {"profile": "classroom", "batch": 64, "chosen": "bf16",
                              "step_ms": {"fp32": 183.4, "bf16": 60.0}},
            "training_set": {"data": "lsp-train+lspet", "images": 11000, "decode_s": 9.5, "ms_per_image": 0.86,
                             "cache_gib": 3.3, "peak_rss_gib_before": 1.0, "peak_rss_gib_after": 4.5},
            "data_beside_step": {"classroom": {"data": "synthetic", "samples_per_s_one_core": 5000.0,
                                               "step_images_per_s": 1000.0, "ratio": 5.0, "batch": 64, "bf16": True,
                                               "channels_last": True}},
            "peer_epoch": {"images": 1000, "data": "lsp-train", "package_images_per_s": 600.0,
                           "plain_pytorch_images_per_s": 100.0, "ratio": 6.0},
            "cascade_inference": {"paper": {"ms_per_image": {"fp32": 400.0, "bf16": 200.0, "bf16_compiled": 99.0},
                                            "compiled_first_call_s": 12.0, "gflop_per_image": 40.0,
                                            "limit_format": "bf16", "least_ms_at_limit": 50.0, **LIMIT,
                                            "fraction_of_limit": inference_fraction}},
            "widget_redraw_ms": {"box_picker": {"best_ms": 31.0, "median_ms": 35.0}},
            "time_to_accuracy": None, "bench_minutes": 7.3}


def test_the_table_prints_every_figure_of_a_result():
    text = bench.table(result())
    for figure in ("62%", "5.0× the step it feeds", "bf16_compiled 99.0", "12 s", "at least 50.0 ms at the bf16 limit",
                   "11000 images in 9.5 s", "3.30 GiB", "plain PyTorch", "6.0×", "box_picker 31 / 35",
                   "no finished `make demo`", "auto takes bf16", "fp32 183 ms, bf16 60 ms",
                   "the bench took 7.3 minutes"):
        assert figure in text
    assert "BROKEN" not in text and not bench.broken_bounds(result())


def test_no_row_can_print_above_its_limit():
    # A figure above its limit would mean the limit is no bound: the table says so, never "1xx%".
    for step, inference in ((1.0, 1.0), (1.3, 0.5), (0.5, 2.7), (1.0000001, 1.0)):
        r = result(step, inference)
        text = bench.table(r)
        percents = [int(m) for m in re.findall(r"(\d+)%", text)]
        assert all(p <= 100 for p in percents), text
        above = [f for f in (step, inference) if f > 1]
        assert len(bench.broken_bounds(r)) == len(above)
        assert ("BROKEN BOUNDS" in text) == bool(above) and text.count("ABOVE LIMIT") == len(above)


@pytest.mark.parametrize("number_format", ["fp32", "bf16"])
def test_the_step_account_names_every_part_and_convolution(number_format):
    smoke = get_profile("smoke").replace(number_format=number_format)
    text = bench.step_account(smoke, 4, steps=1, scale=32)
    assert text.startswith(f"smoke, batch 4, {number_format} + channels_last") and f"; {number_format} limit" in text
    for part in bench.STEP_PARTS:
        assert f"| {part} |" in text
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in smoke.stage1.build_model().modules())
    assert text.count("| forward |") == convs and text.count("| backward |") == convs


def test_the_bench_times_the_cpu_step_in_the_cpus_format_on_a_gpu_host(monkeypatch):
    """A GPU's bf16 must not make the CPU bench time its step in bf16 where oneDNN has no bf16 kernels."""
    from deeppose_lab import number_format

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    cascades = []
    real = bench.cascade_for
    monkeypatch.setattr(bench, "cascade_for", lambda *a, **k: cascades.append(real(*a, **k)) or cascades[-1])
    auto = get_profile("smoke", number_format="auto")
    number_format.measured_choice.cache_clear()
    try:
        row = bench.data_beside_step(auto, 4, 1, None, 8)
        choice = bench.number_format_choice(auto)
        bench.widget_redraws(auto, SyntheticPoses(2, seed=0), moves=1)
    finally:
        number_format.measured_choice.cache_clear()
    assert row["bf16"] is False and choice["chosen"] == "fp32"
    assert [c.bf16 for c in cascades] == [False]  # the widgets' networks run on the CPU, in its format


def test_the_talks_epoch_trains_on_the_device_the_package_trains_on(monkeypatch, tmp_path):
    """On a GPU host the peer comparison must not set the package's GPU epoch against a CPU one."""
    devices = []
    real_to = torch.nn.Module.to
    monkeypatch.setattr(bench, "default_device", lambda: torch.device("meta"))  # shapes only: a stand-in GPU
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: devices.append(a[0]) or real_to(self, *a, **k))
    bench.student_epoch(get_profile("smoke"), bench.peer_images(4, tmp_path))()
    assert devices == [torch.device("meta")]
