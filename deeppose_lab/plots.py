"""Every matplotlib figure: a stage's loss curve and its displacement statistics (notebooks 04 and 05), the PDJ
curves and the time-to-accuracy plot (the report). Each function returns a ``Figure``; the report saves it
(``save``), a notebook shows it (``notebook.show``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from matplotlib.ticker import MaxNLocator

from . import atomic, rundir
from .cascade import DisplacementStats
from .drawing import joint_colors
from .skeleton import JOINT_NAMES, joint_index

# Left and right joints share a panel in the PDJ figure, as in the paper's per-joint plots.
PDJ_PANELS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("wrists", joint_index("r_wrist", "l_wrist")), ("elbows", joint_index("r_elbow", "l_elbow")),
    ("shoulders", joint_index("r_shoulder", "l_shoulder")), ("head top", joint_index("head_top")),
    ("ankles", joint_index("r_ankle", "l_ankle")), ("knees", joint_index("r_knee", "l_knee")),
    ("hips", joint_index("r_hip", "l_hip")), ("neck", joint_index("neck")),
)


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, dpi: int = 90,
               **kwargs: object) -> tuple[Figure, np.ndarray]:
    """A bare ``Figure`` on the Agg canvas and its (rows, cols) axes: pyplot is never involved, so the user's
    backend and open figures are untouched and nothing is shown twice."""
    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False, **kwargs)


def save(fig: Figure, path: Path | str) -> None:
    """The figure as a PNG, written atomically (a crash leaves the previous file)."""
    atomic.write_with(path, lambda fh: fig.savefig(fh, format="png"))


LOSS_LABELS = {"l2": r"loss $\sum_i \Vert\psi_i - N(\mathbf{y}_i)\Vert_2^2$",
               "l1": r"loss $\sum_i \Vert\psi_i - N(\mathbf{y}_i)\Vert_1$"}


def history(history: Sequence[dict], title: str = "training loss", loss: str = "l2") -> Figure:
    """Training (and validation, where measured) loss per epoch from a checkpoint's ``history``; ``loss`` (the
    recipe's, ``l2`` or ``l1``) names the y axis.

    Introduced in ``notebooks/04_stage1.ipynb``.
    """
    fig, axes = new_figure(6.5, 3.2)
    ax = axes[0, 0]
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="training (augmented, dropout on)")
    val = [(h["epoch"], h["val_loss"]) for h in history if "val_loss" in h]
    if val:
        ax.plot(*zip(*val, strict=True), "s--", label="validation (no augmentation)")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(LOSS_LABELS[loss])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def displacements(stats: DisplacementStats, sigma: float, title: str | None = None) -> Figure:
    """Each joint's fitted normal of stage s−1's errors (units of σ·diam): mean (dot), 1- and 2-sd ellipses.

    Introduced in ``notebooks/05_cascade.ipynb``.
    """
    fig, axes = new_figure(11, 3.6, 2, 7, sharex=True, sharey=True)
    colours = [tuple(c / 255 for c in rgb) for rgb in joint_colors()]
    reach = max(0.25, float(np.max(np.abs(stats.mean) + 2.2 * np.sqrt(np.diagonal(stats.cov, axis1=1, axis2=2)))))
    for j, ax in enumerate(axes.ravel()):
        values, vectors = np.linalg.eigh(stats.cov[j])
        angle = float(np.degrees(np.arctan2(vectors[1, -1], vectors[0, -1])))
        for k in (1, 2):
            w, h = 2 * k * np.sqrt(np.maximum(values[::-1], 0))
            ax.add_patch(Ellipse(stats.mean[j], w, h, angle=angle, fill=False, color=colours[j], alpha=1.2 - 0.4 * k))
        ax.plot(*stats.mean[j], "o", color=colours[j])
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(f"{JOINT_NAMES[j]} (n={int(stats.count[j])})", fontsize=8)
        ax.set_xlim(-reach, reach)
        ax.set_ylim(reach, -reach)  # y down, as in the image
        ax.set_aspect("equal")
        ax.tick_params(labelsize=7)
    fig.suptitle(title or r"$(\mathbf{y}_i^{s-1} - \mathbf{y}_i) / (\sigma\,\mathrm{diam})$, "
                 f"σ = {sigma:g}: mean and 1 and 2 sd ellipses per joint (training images)", fontsize=10)
    return fig


def pdj(results: dict, baseline: dict | None = None, baseline_name: str = "mean pose",
        title: str | None = None) -> Figure:
    """PDJ vs normalised distance (0–0.5 of the true torso) per joint pair, one line per stage (report.md's)."""
    fractions = np.asarray(results["pdj_fractions"])
    fig, grid = new_figure(12, 6.4, 2, len(PDJ_PANELS) // 2, dpi=100, sharex=True, sharey=True)
    axes = grid.ravel()
    series = [(f"stage {st['stage']}", st, "-") for st in results["stages"]]
    if baseline is not None:
        series.append((baseline_name, baseline["stages"][-1], "--"))
    for ax, (name, joints) in zip(axes, PDJ_PANELS, strict=True):
        for label, st, style in series:
            curve = np.asarray(st["pdj_curve"])[:, list(joints)].mean(axis=1)
            ax.plot(fractions, curve, style, label=label, color="grey" if style == "--" else None)
        ax.set_title(name)
        ax.set_xlim(0, fractions.max())
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    for ax in axes[len(axes) // 2:]:
        ax.set_xlabel("normalised distance to truth")
    for ax in axes[:: len(axes) // 2]:
        ax.set_ylabel("detection rate (PDJ)")
    axes[0].legend(loc="lower right", fontsize="small")
    fig.suptitle(title or f"PDJ per joint (n = {results['n']}, distance / true torso diameter)")
    return fig


def time_to_accuracy(stages: dict) -> Figure | None:
    """Dev-split PCP against training minutes, one colour per stage (run.json's ``stages``); None without a curve."""
    points = rundir.dev_points(stages)
    if not points:
        return None
    fig, axes = new_figure(6, 3.5, dpi=100)
    ax = axes[0, 0]
    previous: list[tuple[float, float, float]] = []
    for stage in sorted({p[0] for p in points}):
        pts = np.array(previous + [p[1:] for p in points if p[0] == stage])  # joined to where the last stage ended
        colour = f"C{stage - 1}"
        ax.plot(pts[:, 0], pts[:, 1], "o-", color=colour, label=f"stage {stage} strict")
        ax.plot(pts[:, 0], pts[:, 2], "x--", color=colour, alpha=0.6, label=f"stage {stage} loose")
        previous = [tuple(pts[-1])]
    ax.set_xlabel("training minutes (cascade so far)")
    ax.set_ylabel("PCP@0.5 on the dev split")
    ax.set_title("Time to accuracy (dev split: training images held out)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=3)
    return fig
