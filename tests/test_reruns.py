"""A finished run reruns in seconds: no training, no poses recomputed, and a report reused only when nothing changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeppose_lab import cascade, pipeline, train
from deeppose_lab.profiles import get_profile
from tests.helpers import TINY, fake_run


def refuse(what: str):
    def fail(*args, **kwargs):
        raise AssertionError(f"{what} ran on a finished run")
    return fail


@pytest.fixture()
def run(tmp_path: Path) -> Path:
    return fake_run(tmp_path / "run")


def test_train_run_on_a_finished_run_trains_nothing_and_predicts_nothing(run: Path, monkeypatch) -> None:
    monkeypatch.setattr(train, "fit", refuse("training"))
    monkeypatch.setattr(pipeline, "fit", refuse("training"))
    monkeypatch.setattr(cascade.Cascade, "first_pose", refuse("stage 1 over the training images"))
    lines: list[str] = []
    loaded = pipeline.train_run(run, get_profile("smoke", **TINY), "synthetic", log=lines.append)
    assert loaded.stages == 2 and "nothing recomputed" in lines[-1]


def test_a_report_is_reused_only_when_made_from_the_same_stage_files_and_images(run: Path, monkeypatch) -> None:
    first = pipeline.evaluate_run(run, log=lambda _: None, reuse=True)
    lines: list[str] = []
    with monkeypatch.context() as m:
        m.setattr(cascade.Cascade, "predict", refuse("the full evaluation"))
        again = pipeline.evaluate_run(run, log=lines.append, reuse=True)
    assert again["meta"]["key"] == first["meta"]["key"] and "reused it, nothing recomputed" in lines[-1]
    assert again["stages"][-1]["pdj_at_0.2"] == first["stages"][-1]["pdj_at_0.2"]

    stage2 = run / "stage2.pt"
    stage2.write_bytes(stage2.read_bytes())  # the same bytes: still the same report
    with monkeypatch.context() as m:
        m.setattr(cascade.Cascade, "predict", refuse("the full evaluation"))
        pipeline.evaluate_run(run, log=lambda _: None, reuse=True)

    calls = []
    real_predict = cascade.Cascade.predict
    monkeypatch.setattr(cascade.Cascade, "predict",
                        lambda self, *a, **k: calls.append(1) or real_predict(self, *a, **k))
    pipeline.evaluate_run(run, log=lambda _: None, reuse=True, split="all")  # other images: computed
    assert calls
    calls.clear()
    pipeline.evaluate_run(run, log=lambda _: None)  # the command line's default: always computed
    assert calls
    (run / "report" / "pdj.png").unlink()  # a report with a file missing is made again
    calls.clear()
    pipeline.evaluate_run(run, log=lambda _: None, reuse=True)
    assert calls and (run / "report" / "pdj.png").is_file()


def test_the_report_key_follows_the_weights(run: Path) -> None:
    loaded = pipeline.load_cascade(run)
    images = pipeline.load_data("synthetic", get_profile("smoke", **TINY)).test
    key = pipeline.report_key(run, loaded, "synthetic", images)
    stage2 = run / "stage2.pt"
    stage2.write_bytes(stage2.read_bytes() + b" ")  # other bytes in a stage file
    assert pipeline.report_key(run, loaded, "synthetic", images) != key


def test_a_corrected_label_is_scored_again(run: Path) -> None:
    loaded = pipeline.load_cascade(run)
    images = pipeline.load_data("synthetic", get_profile("smoke", **TINY)).test
    key = pipeline.report_key(run, loaded, "synthetic", images)
    moved = images.subset(range(len(images)), images.name)
    moved.joints = moved.joints + 1.0  # the same images and ids, one pixel different labels
    assert pipeline.report_key(run, loaded, "synthetic", moved) != key


def test_auto_on_data_the_run_never_saw_scores_each_training_image_once(run: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    from tests.test_own_data import own_folder

    folder = own_folder(tmp_path / "mine", 10)
    meta = pipeline.read_run(run)
    meta["profile"]["lsp_repeats"] = 4  # a run that trained LSP several times an epoch, as the classroom does
    (run / "run.json").write_text(__import__("json").dumps(meta))
    repeats = []
    real = pipeline.load_data
    monkeypatch.setattr(pipeline, "load_data", lambda spec, p, *a, **k: repeats.append(p.lsp_repeats)
                        or real(spec, p, *a, **k))
    assert pipeline.evaluate_run(run, data=str(folder), log=lambda _: None)["n"] == 10  # auto: all of it
    assert 1 in repeats  # the images scored were loaded with each training image once
