"""The numbered notebooks are committed in a state that reads well and that ``pytest --nbval`` can check.

nbval itself runs from the Makefile (``pytest --nbval notebooks/`` with ``DEEPPOSE_PROFILE=smoke``); here we
check what nbval cannot: the stored outputs come from one top-to-bottom run (execution counts 1..n), hold no
errors, no widget state and no machine paths, and every cell whose output depends on profile, data or time
carries the ``nbval-ignore-output`` tag. The helpers of ``deeppose_lab.notebook`` are tested at the end.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from deeppose_lab import notebook as nbh
from deeppose_lab import plots
from deeppose_lab.profiles import get_profile

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
IGNORE = "nbval-ignore-output"
KNOWN_TAGS = {IGNORE, "nbval-skip", "raises-exception", "nbval-check-output", "hide-input", "hide-output"}
# Source that makes a cell's output depend on the profile, the data, the run directory, time or randomness.
VOLATILE = ("train_run", "ensure_run", "evaluate_run", "predict_images", "setup_summary", "recorded_times",
            "widgets.", "load_stage", "stage_stats", "lsp_available()", "lspet_folder", "load_lsp", "p.name")
MACHINE_PATH = re.compile(r"(?<![\w.$~])/(?:home|root|work|tmp|Users|var|private|mnt|srv|opt)/")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def code_cells(nb: nbformat.NotebookNode) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


def output_texts(cell) -> list[str]:
    """Every text an output of ``cell`` carries: streams, text/* and JSON data, error values."""
    texts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            texts.append(out.text)
        elif out.output_type == "error":
            texts.append(f"{out.ename}: {out.evalue}")
        else:
            texts += [v if isinstance(v, str) else json.dumps(v) for k, v in out.get("data", {}).items()
                      if not k.startswith("image/")]
    return texts


def test_the_notebooks_are_numbered_00_to_07():
    names = [p.name for p in PATHS]
    assert [int(n[:2]) for n in names] == list(range(8)), names
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", n) for n in names), names
    assert (NOTEBOOKS / "nbval_sanitize.cfg").is_file()


def test_sanitize_file_parses_and_catches_paths_and_addresses():
    from nbval.plugin import get_sanitize_patterns

    patterns = get_sanitize_patterns((NOTEBOOKS / "nbval_sanitize.cfg").read_text())
    assert len(patterns) >= 4
    text = "<object at 0x7f3a2b> saved to /tmp/pytest-1/run/stage1.pt in 12.5 s, 40%|████      | 4/10"
    for regex, replace in patterns:
        text = re.sub(regex, replace, text)
    assert "0x7f" not in text and "/tmp/" not in text and "12.5" not in text and "████" not in text
    kept = "box [cx, cy, w, h]: [ 60.  75.  80. 150.] 58,396,060 parameters"
    for regex, replace in patterns:  # the sanitizer must leave the compared teaching numbers alone
        kept = re.sub(regex, replace, kept)
    assert kept == "box [cx, cy, w, h]: [ 60.  75.  80. 150.] 58,396,060 parameters"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_stored_outputs_come_from_one_clean_run(path: Path):
    nb = load(path)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    assert "widgets" not in nb.metadata, f"{path.name}: widget state saved in metadata; strip metadata['widgets']"
    cells = code_cells(nb)
    counts = [c.execution_count for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name}: execution counts {counts}: re-run the notebook top to bottom (Restart & Run All)")
    for c in cells:
        assert "execution" not in c.metadata, f"{path.name}: per-cell timing metadata; execute with record_timing off"
        for out in c.outputs:
            assert out.output_type != "error", f"{path.name}: stored error {out.get('ename')}: {out.get('evalue')}"
            if out.output_type == "stream" and out.name == "stderr":
                assert "Traceback" not in out.text and "Error" not in out.text, f"{path.name}: {out.text[:300]}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_volatile_cells_are_ignored_by_nbval_and_teaching_cells_are_compared(path: Path):
    nb = load(path)
    cells = code_cells(nb)
    ignored = [c for c in cells if IGNORE in tags(c)]
    compared_with_output = [c for c in cells if IGNORE not in tags(c) and c.outputs]
    assert ignored, f"{path.name}: no cell tagged {IGNORE}"
    if path.name[:2] in ("00", "01", "02", "03", "04", "06"):
        assert compared_with_output, f"{path.name}: no deterministic cell left for nbval to compare"
    for c in cells:
        unknown = set(tags(c)) - KNOWN_TAGS
        assert not unknown, f"{path.name}: unknown tags {unknown}"
        if IGNORE in tags(c):
            continue
        hits = [word for word in VOLATILE if word in c.source]
        assert not hits, f"{path.name}: cell using {hits} must be tagged {IGNORE}:\n{c.source}"
        for out in c.outputs:
            assert WIDGET_VIEW not in out.get("data", {}), f"{path.name}: widget output in a compared cell"
            assert out.output_type != "stream" or out.name != "stderr", f"{path.name}: stderr in a compared cell"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_no_machine_paths_and_the_course_conventions(path: Path):
    nb = load(path)
    cells = code_cells(nb)
    assert cells[0].source.split() == ["%load_ext", "autoreload", "%autoreload", "2"], f"{path.name}: autoreload first"
    assert any("deeppose_lab" in c.source for c in cells), f"{path.name} does not import the library"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.name[:2]} · "), first.source[:60]
    for c in nb.cells:
        for text in [c.source, *output_texts(c)]:
            hit = MACHINE_PATH.search(text)
            assert hit is None, f"{path.name}: machine path {text[max(0, hit.start() - 40):hit.end() + 40]!r}"
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    if "paper" in prose.lower() and re.search(r"\b0\.\d\d?\b|\b\d+ ?M\b|σ = 2", prose):
        assert "recalled" in prose, f"{path.name} quotes the paper's numbers without marking them (recalled)"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_widget_outputs_carry_a_still_and_no_state(path: Path):
    for c in code_cells(load(path)):
        for out in c.outputs:
            data = out.get("data", {})
            if WIDGET_VIEW in data and "progress" not in data.get("text/plain", "") and "%|" not in \
                    data.get("text/plain", ""):
                assert IGNORE in tags(c)
                assert "image/jpeg" in data or "image/png" in data, f"{path.name}: widget without a still picture"


# --- deeppose_lab.notebook -----------------------------------------------------------------------------------

def test_profile_data_and_run_dir_follow_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPPOSE_PROFILE", "smoke")
    monkeypatch.setenv("DEEPPOSE_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("DEEPPOSE_DATA", str(tmp_path / "nodata"))
    monkeypatch.delenv("DEEPPOSE_NB_DATA", raising=False)
    p = nbh.profile()
    assert p.name == "smoke"
    assert nbh.data_spec(p) == "synthetic"  # smoke trains on the synthetic people, whatever is on disk
    assert nbh.data_spec(get_profile("classroom")) == "auto"
    assert nbh.data_name("auto") == "synthetic"  # no LSP in an empty data root
    assert nbh.run_dir(p) == tmp_path / "runs" / "notebooks" / "smoke-synthetic"
    monkeypatch.setenv("DEEPPOSE_NB_DATA", "lspet")
    assert nbh.data_spec(p) == "lspet"
    assert nbh.run_dir(p).name == "smoke-lspet"
    monkeypatch.delenv("DEEPPOSE_PROFILE")
    assert nbh.profile().name == "classroom"
    monkeypatch.delenv("DEEPPOSE_RUNS")
    assert nbh.runs_root() == nbh.REPO_ROOT / "runs"


def test_short_hides_machine_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPPOSE_RUNS", str(tmp_path / "r"))
    monkeypatch.setenv("DEEPPOSE_DATA", str(tmp_path / "d"))
    text = f"wrote {tmp_path}/r/notebooks/x/stage1.pt from {tmp_path}/d/lsp and {nbh.REPO_ROOT}/notebooks"
    assert nbh.short(text) == ("wrote $DEEPPOSE_RUNS/notebooks/x/stage1.pt from $DEEPPOSE_DATA/lsp and "
                               "./notebooks")
    summary = nbh.setup_summary()
    assert summary["run directory"].startswith("$DEEPPOSE_RUNS/notebooks/")
    assert not any(MACHINE_PATH.search(v) for v in summary.values()), summary


def test_ensure_run_trains_what_is_missing_then_reuses_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPPOSE_RUNS", str(tmp_path))
    p = get_profile("smoke", epochs=1, synthetic_train=8, synthetic_test=4, val_images=4, batch_size=8)
    run = nbh.ensure_run(1, p, "synthetic", progress=False)
    assert run == tmp_path / "notebooks" / "smoke-synthetic"
    assert nbh.stage_complete(run, 1) and not nbh.stage_complete(run, 2)
    assert "training stage(s) [1]" in capsys.readouterr().out

    def no_training(*args, **kwargs):
        raise AssertionError("a finished stage must be reused, not retrained")

    monkeypatch.setattr(nbh, "train_run", no_training)
    assert nbh.ensure_run(1, p, "synthetic") == run
    out = capsys.readouterr().out
    assert "stage 1 already trained" in out and str(tmp_path) not in out
    assert set(nbh.recorded_times(run)) == {"stage 1"}
    (run / "stage1.pt").write_bytes(b"not a checkpoint")
    assert not nbh.stage_complete(run, 1)


def test_pictures_show_as_images_with_plain_text():
    sheet = nbh.show([np.zeros((20, 30, 3), np.uint8)] * 3, captions=["a", "b", "c"])
    bundle = sheet._repr_mimebundle_()
    assert set(bundle) == {"image/jpeg", "text/plain"} and bundle["text/plain"] == "<contact sheet>"
    single = nbh.show(np.zeros((10, 10, 3), np.uint8))
    assert single.array.shape == (10, 10, 3)
    fig, axes = plots.new_figure(2, 2)
    axes[0, 0].plot([0, 1], [1, 0])
    assert set(nbh.show(fig)._repr_mimebundle_()) == {"image/png", "text/plain"}
    history = [{"epoch": 1, "train_loss": 1.0, "val_loss": 0.9}, {"epoch": 2, "train_loss": 0.5}]
    assert nbh.show(plots.history(history)).array.ndim == 3


# --- back-links from the library to the lesson ------------------------------------------------------------------

LIBRARY_CALL = re.compile(r"\b(nb|notebook|datasets|drawing|sample|skeleton|synthetic|widgets|geometry|model|train|"
                          r"cascade|pipeline|plots|report|metrics|profiles|crops|rundir|splits)\.([A-Za-z_]\w*)")


def first_callers() -> dict[object, str]:
    """Every library function or class a notebook calls, with the first notebook (in order) that calls it."""
    import importlib
    import inspect

    first: dict[object, str] = {}
    for path in PATHS:
        source = "\n".join(c.source for c in code_cells(load(path)))
        for module, name in LIBRARY_CALL.findall(source):
            obj = getattr(importlib.import_module(f"deeppose_lab.{'notebook' if module == 'nb' else module}"), name,
                          None)
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith("deeppose_lab"):
                first.setdefault(obj, path.name)
    return first


def test_every_function_a_notebook_calls_names_the_notebook_that_introduces_it():
    """d2l's "Defined in" links: a reader of the library finds the lesson that explains a function."""
    first = first_callers()
    assert len(first) > 40  # the check really sees the notebooks' calls
    wrong = {f"{obj.__module__}.{obj.__qualname__}": nb for obj, nb in first.items()
             if f"Introduced in ``notebooks/{nb}``." not in (obj.__doc__ or "")}
    assert not wrong, f"docstrings missing their 'Introduced in ``notebooks/...``.' line: {wrong}"
