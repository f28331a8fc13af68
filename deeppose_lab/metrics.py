"""PCP and PDJ, the two scores in the DeepPose paper, plus per-joint and per-image errors.

Everything here is plain numpy on image-pixel joints of shape (N, 14, 2), predicted and true in the SAME
pixel units. Three rules hold throughout, because each is a classic way to get a flattering wrong number:

* distances are Euclidean (``np.linalg.norm`` over x and y), never per-axis (``max(|dx|, |dy|)`` or ``|dx|``);
* PCP divides by the TRUE limb length, never the predicted one (a prediction could otherwise stretch a limb
  to make its own errors look small);
* PDJ divides by the TRUE torso diameter, never the predicted one, for the same reason.

Degenerate ground truth (a limb whose endpoints coincide, a torso of zero diameter) must neither raise nor
give NaN. Such lengths are floored at ``MIN_LENGTH`` pixels, so the tolerance is a vanishing
``threshold * MIN_LENGTH``: a prediction that lands exactly on the true point still counts as correct, and
any visible error counts as wrong. That is the honest reading of "within half of a zero length".

NaN in a prediction compares false everywhere, so a NaN joint is simply counted as wrong.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from .skeleton import LIMB_GROUPS, LIMBS, NUM_JOINTS, PAPER_GROUPS, torso_diameter

# Floor (in pixels) for true limb lengths and torso diameters, so degenerate labels never divide by zero.
MIN_LENGTH = 1e-6

# The PDJ curve's x axis in the paper's figures: f from 0 to 0.5 of the torso diameter. Read-only so a
# caller cannot change every later default by writing into it.
DEFAULT_PDJ_FRACTIONS = np.linspace(0.0, 0.5, 51)
DEFAULT_PDJ_FRACTIONS.setflags(write=False)

PcpMode = Literal["strict", "loose"]


def _check_pair(pred: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays as float64 (N, 14, 2) of the same shape; a clear error beats a silent broadcast."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if true.ndim != 3 or true.shape[1:] != (NUM_JOINTS, 2):
        raise ValueError(f"true joints must have shape (N, {NUM_JOINTS}, 2), got {true.shape}")
    if pred.shape != true.shape:
        raise ValueError(f"pred and true must have the same shape, got {pred.shape} and {true.shape}")
    return pred, true


def _select(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate, then keep the images chosen by ``mask``; an empty selection has no score, so it raises."""
    pred, true = _check_pair(pred, true)
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != (true.shape[0],):
            raise ValueError(f"mask must be a bool array of shape ({true.shape[0]},), got {mask.dtype} {mask.shape}")
        pred, true = pred[mask], true[mask]
    if true.shape[0] == 0:
        raise ValueError("no images to score (empty input or all-False mask)")
    return pred, true


def joint_errors(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(N, 14) Euclidean pixel distance of every predicted joint from its true position."""
    pred, true = _check_pair(pred, true)
    return np.linalg.norm(pred - true, axis=-1)


def _limb_distances(pred: np.ndarray, true: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per limb: (N, 2) endpoint pixel errors and (N,) floored TRUE limb length, the raw inputs of PCP."""
    err = np.linalg.norm(pred - true, axis=-1)
    out = {}
    for name, (a, b) in LIMBS.items():
        length = np.linalg.norm(true[:, a] - true[:, b], axis=-1)  # the TRUE limb, never the predicted one
        out[name] = (err[:, [a, b]], np.maximum(length, MIN_LENGTH))
    return out


def limb_errors(pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """Per limb in ``LIMBS``: (N, 2) endpoint errors divided by the true limb length.

    Column 0 is the limb's first joint in ``LIMBS``, column 1 its second. A value of 0.5 is exactly the
    strict-PCP tolerance, so these numbers show how far from "correct" each endpoint was. Zero-length true
    limbs are floored at ``MIN_LENGTH`` pixels (finite, and huge for any visible error).
    """
    pred, true = _check_pair(pred, true)
    return {name: err / length[:, None] for name, (err, length) in _limb_distances(pred, true).items()}


def pcp(
    pred: np.ndarray,
    true: np.ndarray,
    threshold: float = 0.5,
    mode: PcpMode = "strict",
    mask: np.ndarray | None = None,
) -> dict:
    """Percentage of Correct Parts, as in the paper's LSP table (which reports PCP at 0.5).

    strict: a limb is correct when BOTH endpoint errors are ≤ ``threshold`` × true limb length.
    loose: a limb is correct when the MEAN of its two endpoint errors is ≤ that tolerance; it forgives one
    bad endpoint, so it is never below strict. Papers differ on which they report, hence ``mode`` is in
    the result and should be printed next to the numbers.

    Returns ``{"limbs": {limb: fraction}, "groups": {group: fraction}, "mean": float, "mode": str,
    "threshold": float, "n": int}``. A group is the mean over its limbs in ``LIMB_GROUPS`` (left and right
    averaged); "mean" is the mean of the four ``PAPER_GROUPS`` (arms and legs, not head or torso), the
    paper's "mean" column. ``mask`` (N,) bool scores only the selected images; ``n`` says how many.
    Zero-length true limbs: see the module docstring (correct only if the prediction is exactly right).

    Introduced in ``notebooks/06_evaluation.ipynb``.
    """
    if mode not in ("strict", "loose"):
        raise ValueError(f"mode must be 'strict' or 'loose', got {mode!r}")
    pred, true = _select(pred, true, mask)
    limbs: dict[str, float] = {}
    for name, (err, length) in _limb_distances(pred, true).items():
        # Compare pixels with pixels (err ≤ t·L) rather than err / L ≤ t: one rounding fewer at the boundary.
        tol = threshold * length
        if mode == "strict":
            correct = (err[:, 0] <= tol) & (err[:, 1] <= tol)
        else:
            correct = err.mean(axis=1) <= tol
        limbs[name] = float(np.mean(correct))
    groups = {g: float(np.mean([limbs[n] for n in members])) for g, members in LIMB_GROUPS.items()}
    mean = float(np.mean([groups[g] for g in PAPER_GROUPS]))
    return {"limbs": limbs, "groups": groups, "mean": mean, "mode": mode, "threshold": float(threshold),
            "n": int(true.shape[0])}


def _normalised_by_torso(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(N, 14) joint errors divided by each image's TRUE torso diameter (floored at ``MIN_LENGTH``)."""
    diam = np.maximum(torso_diameter(true), MIN_LENGTH)  # the TRUE torso, never the predicted one
    return np.linalg.norm(pred - true, axis=-1) / diam[:, None]


def pdj(
    pred: np.ndarray,
    true: np.ndarray,
    fractions: np.ndarray = DEFAULT_PDJ_FRACTIONS,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Percentage of Detected Joints: (F, 14), the fraction of images whose joint j is within f × diam.

    diam is the TRUE torso diameter (``skeleton.torso_diameter`` of the true pose), so the score is scale
    free without letting a prediction choose its own yardstick. Row i belongs to ``fractions[i]``; plotting
    a column against ``fractions`` gives the paper's per-joint PDJ curve. A zero true diameter is floored at
    ``MIN_LENGTH`` pixels: only an exact prediction counts as detected. ``mask`` as in ``pcp``.
    """
    pred, true = _select(pred, true, mask)
    fractions = np.atleast_1d(np.asarray(fractions, dtype=np.float64))
    if fractions.ndim != 1:
        raise ValueError(f"fractions must be a 1-D array, got shape {fractions.shape}")
    err = np.linalg.norm(pred - true, axis=-1)  # (N, 14) pixels
    diam = np.maximum(torso_diameter(true), MIN_LENGTH)  # (N,) the TRUE torso, never the predicted one
    # Pixels against pixels (err ≤ f·diam), for the same boundary reason as in pcp.
    detected = err[None, :, :] <= fractions[:, None, None] * diam[None, :, None]  # (F, N, 14)
    return detected.mean(axis=1)


def pdj_at(pred: np.ndarray, true: np.ndarray, f: float, mask: np.ndarray | None = None) -> np.ndarray:
    """(14,) PDJ at one fraction ``f`` of the true torso diameter, per joint.

    Introduced in ``notebooks/06_evaluation.ipynb``.
    """
    return pdj(pred, true, np.array([f]), mask=mask)[0]


def mean_pdj(pred: np.ndarray, true: np.ndarray, f: float = 0.2, mask: np.ndarray | None = None) -> float:
    """PDJ at ``f`` averaged over the 14 joints: one number for a table or a progress bar."""
    return float(np.mean(pdj_at(pred, true, f, mask=mask)))


def per_image_score(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """(N,) mean joint error divided by the true torso diameter; lower is better.

    Dividing by the torso makes a 10-pixel miss on a small person count as much as a 20-pixel miss on a
    person twice the size, so the "best" and "worst" examples are not simply the smallest and largest people.
    """
    pred, true = _check_pair(pred, true)
    return _normalised_by_torso(pred, true).mean(axis=1)


def best_and_worst(pred: np.ndarray, true: np.ndarray, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` best (lowest ``per_image_score``, best first) and ``k`` worst (worst first) images.

    A stable sort makes ties resolve by image order, so a notebook shows the same pictures on every run;
    images with a NaN prediction rank as the worst.
    """
    score = per_image_score(pred, true)
    score = np.where(np.isnan(score), np.inf, score)  # a NaN prediction is the worst, not silently skipped
    k = max(0, min(k, score.size))
    best = np.argsort(score, kind="stable")[:k]
    worst = np.argsort(-score, kind="stable")[:k]
    return best, worst
