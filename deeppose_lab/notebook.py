"""What the numbered notebooks share: which profile, data and run directory they use, and pictures in cells.

Settings come from the environment, so the same notebooks serve a student, the test suite and the lead's
committed run:

- ``DEEPPOSE_PROFILE``: ``classroom`` by default, ``smoke`` under test (see ``profiles.py``).
- ``DEEPPOSE_DATA``: where LSP and LSP-extended live (see ``datasets.data_root``).
- ``DEEPPOSE_NB_DATA``: the ``--data`` the notebooks train on; default ``auto`` (LSP when present, else the
  synthetic people), except that the ``smoke`` profile trains on the synthetic people so a check of every
  notebook stays within minutes (notebook 01 still shows LSP when it is there).
- ``DEEPPOSE_RUNS``: the folder of run directories, default ``runs/`` at the repository root. The notebooks
  share ``$DEEPPOSE_RUNS/notebooks/<profile>-<data>``: notebook 04 trains stage 1 there, 05 adds the
  refinement stages, 06 and 07 reuse them, and ``ensure_run`` trains whatever is missing (so any notebook can
  be run on its own).

Printed paths go through ``short`` so that no machine's absolute paths end up in a saved notebook.
"""

from __future__ import annotations

import base64
import functools
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .datasets import data_root, lsp_available, lspet_folder
from .drawing import contact_sheet
from .pipeline import train_run
from .profiles import Profile, get_profile
from .rundir import stage_complete, stage_seconds
from .splits import Splits, load_data, resolve_data

REPO_ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_RUNS = "notebooks"


def profile(**overrides: object) -> Profile:
    """The profile the notebooks use: ``$DEEPPOSE_PROFILE`` (default ``classroom``), fields overridable.

    Introduced in ``notebooks/03_model.ipynb``.
    """
    return get_profile(None, **overrides)


def data_spec(p: Profile | None = None) -> str:
    """The ``--data`` the notebooks train on (``$DEEPPOSE_NB_DATA``; see the module docstring).

    Introduced in ``notebooks/04_stage1.ipynb``.
    """
    env = os.environ.get("DEEPPOSE_NB_DATA")
    if env:
        return env
    p = p or profile()
    return "synthetic" if p.name == "smoke" else "auto"


def data_name(spec: str) -> str:
    """What a notebook run directory is named after: ``auto`` made concrete (``splits.resolve_data``), a folder
    by its name.

    Introduced in ``notebooks/04_stage1.ipynb``.
    """
    spec = resolve_data(spec)
    return Path(spec).name if Path(spec).is_dir() else spec


def runs_root() -> Path:
    """``$DEEPPOSE_RUNS``, else ``runs/`` at the repository root."""
    env = os.environ.get("DEEPPOSE_RUNS")
    return Path(env).expanduser() if env else REPO_ROOT / "runs"


def run_dir(p: Profile | None = None, data: str | None = None) -> Path:
    """The run directory the notebooks share for this profile and data: ``runs/notebooks/<profile>-<data>``.

    Introduced in ``notebooks/00_overview.ipynb``.
    """
    p = p or profile()
    return runs_root() / NOTEBOOK_RUNS / f"{p.name}-{data_name(data or data_spec(p))}"


def short(text: object) -> str:
    """``text`` with this machine's folders replaced by names that mean the same on every machine.

    Introduced in ``notebooks/01_data.ipynb``.
    """
    out = str(text)
    env_runs = os.environ.get("DEEPPOSE_RUNS")
    env_data = os.environ.get("DEEPPOSE_DATA")
    places = [(str(runs_root()), "$DEEPPOSE_RUNS" if env_runs else "runs"),
              (str(data_root()), "$DEEPPOSE_DATA" if env_data else "data"),
              (str(REPO_ROOT), "."), (str(Path.home()), "~")]
    for path, name in sorted(places, key=lambda pn: -len(pn[0])):
        if path and path != "/":
            out = out.replace(path, name)
    return out


def log(message: str) -> None:
    """The ``log`` the notebooks hand to ``train_run`` and ``evaluate_run``: printing, with short paths.

    Introduced in ``notebooks/04_stage1.ipynb``.
    """
    print(short(message))


def ensure_run(stages: int | None = None, p: Profile | None = None, data: str | None = None,
               progress: bool = True) -> Path:
    """The shared run directory with stages 1..``stages`` trained (default: the profile's), training what is missing.

    A notebook opened on its own therefore still works: it trains (and checkpoints) the stages an earlier
    notebook would have trained, then later notebooks reuse them.

    Introduced in ``notebooks/05_cascade.ipynb``.
    """
    p = p or profile()
    data = data or data_spec(p)
    stages = stages or p.stages
    run = run_dir(p, data)
    missing = [s for s in range(1, stages + 1) if not stage_complete(run, s)]
    if missing:
        print(f"{short(run)}: training stage(s) {missing} first (profile {p.name}, data {data})")
        train_run(run, p, data, stages=stages, progress=progress, log=log)
    else:
        which = "stage 1" if stages == 1 else f"stages 1-{stages}"
        print(f"{short(run)}: {which} already trained, reusing {'it' if stages == 1 else 'them'}")
    return run


@functools.cache
def _splits(p: Profile, data: str) -> Splits:
    return load_data(data, p, log=lambda message: None)


def splits(p: Profile | None = None, data: str | None = None) -> Splits:
    """Train and test sets for the profile and data, silently (made once per kernel: images decode once).

    Introduced in ``notebooks/04_stage1.ipynb``.
    """
    p = p or profile()
    return _splits(p, data or data_spec(p))


def setup_summary() -> dict[str, str]:
    """What the notebooks will use here: versions, profile, data, run directory, CPU threads.

    Introduced in ``notebooks/00_overview.ipynb``.
    """
    import torch

    p = profile()
    data = data_spec(p)
    lspet = lspet_folder()
    run = run_dir(p, data)
    trained = [s for s in range(1, p.stages + 1) if stage_complete(run, s)]
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu threads": str(torch.get_num_threads()),
        "profile": f"{p.name} ({'$DEEPPOSE_PROFILE' if os.environ.get('DEEPPOSE_PROFILE') else 'default'})",
        "data root": short(data_root()),
        "LSP": "found" if lsp_available() else "not found",
        "LSP-extended": short(lspet) if lspet else "not found",
        "training data": f"{data} → {data_name(data)}",
        "run directory": short(run),
        "stages trained": ", ".join(map(str, trained)) or "none yet",
    }


def print_table(rows: dict[str, object] | Sequence[tuple[object, ...]], header: Sequence[str] | None = None) -> None:
    """A plain fixed-width table: a dict prints as ``key  value`` lines, a list of tuples as columns.

    Introduced in ``notebooks/00_overview.ipynb``.
    """
    lines = [tuple(map(str, r)) for r in (rows.items() if isinstance(rows, dict) else rows)]
    if header:
        lines = [tuple(header), *lines]
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for k, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
        if header and k == 0:
            print("  ".join("-" * w for w in widths))


# --- pictures in cells ---------------------------------------------------------------------------------------

class Picture:
    """An RGB array that a notebook shows as an image, with a short text form free of addresses.

    Photos and contact sheets are stored as JPEG (a saved notebook stays small), line figures as PNG (crisp).
    """

    def __init__(self, array: np.ndarray, label: str = "picture", fmt: str = "jpeg") -> None:
        self.array = np.asarray(array)
        self.label = label
        self.fmt = fmt

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        from .widgets import encode_image

        data = base64.b64encode(encode_image(self.array, self.fmt)).decode("ascii")
        return {f"image/{self.fmt}": data, "text/plain": repr(self)}

    def __repr__(self) -> str:
        return f"<{self.label}>"


def show(images: np.ndarray | Sequence[np.ndarray] | Figure, captions: Sequence[str] | None = None, columns: int = 4,
         tile_size: int = 192, title: str | None = None) -> Picture:
    """One picture, a matplotlib figure (``plots``), or several pictures as a contact sheet
    (``drawing.contact_sheet``), ready to be a cell's output.

    Introduced in ``notebooks/01_data.ipynb``.
    """
    if isinstance(images, Figure):
        return figure_picture(images)
    if isinstance(images, np.ndarray) and images.ndim == 3 and captions is None and title is None:
        return Picture(images)
    tiles = [images] if isinstance(images, np.ndarray) and images.ndim == 3 else list(images)
    sheet = contact_sheet(tiles, columns=columns, captions=captions, tile_size=tile_size, title=title)
    return Picture(sheet, "contact sheet")


def show_file(path: Path | str, fmt: str = "jpeg") -> Picture:
    """An image written by the library (a report figure, a drawn pose), shown in the notebook.

    ``fmt`` is how the notebook stores it: ``png`` suits line plots, ``jpeg`` photos.

    Introduced in ``notebooks/06_evaluation.ipynb``.
    """
    from .images import load_image

    return Picture(load_image(path), Path(path).name, fmt=fmt)


def figure_picture(fig: Figure) -> Picture:
    """A matplotlib ``Figure`` rendered to a ``Picture`` (no pyplot state, no backend set-up needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return Picture(np.asarray(canvas.buffer_rgba())[..., :3].copy(), "figure", fmt="png")


def recorded_times(run: Path) -> dict[str, str]:
    """Training minutes per stage as the run recorded them (``rundir.stage_seconds``), for a table.

    Introduced in ``notebooks/00_overview.ipynb``.
    """
    return {f"stage {s}": f"{seconds / 60:.1f} min" for s, seconds in stage_seconds(run).items()}
