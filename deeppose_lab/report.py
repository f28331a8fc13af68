"""The evaluation report: every number in one JSON, the paper's LSP table beside ours, PDJ curves, pictures.

A researcher should be able to trust a report without rerunning it, so it says which PCP (strict or loose)
each row is, puts the paper's own numbers in the same layout (marked as recalled until checked against the
PDF), and exports the predictions in the annotation file's own pixel units so outside tools can score them.
Every file is written atomically, ``report.json`` last, so a crash never leaves a JSON that describes files
that were not written.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import atomic, metrics, plots
from .datasets import PoseDataset
from .drawing import contact_sheet, draw_poses, save_png
from .images import DataError
from .sample import from_file_units, to_file_units
from .skeleton import JOINT_NAMES, NUM_JOINTS, PAPER_GROUPS

# DeepPose on LSP, PCP at 0.5, per stage (Toshev & Szegedy 2014), recalled (not re-read for this course; README).
PAPER_LSP_PCP: dict[int, dict[str, float]] = {
    1: {"upper_arm": 0.50, "lower_arm": 0.27, "upper_leg": 0.74, "lower_leg": 0.65, "mean": 0.54},
    2: {"upper_arm": 0.56, "lower_arm": 0.36, "upper_leg": 0.78, "lower_leg": 0.70, "mean": 0.60},
    3: {"upper_arm": 0.56, "lower_arm": 0.38, "upper_leg": 0.77, "lower_leg": 0.71, "mean": 0.61},
}
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("upper_arm", "Arm upper"), ("lower_arm", "Arm lower"), ("upper_leg", "Leg upper"),
    ("lower_leg", "Leg lower"), ("mean", "Mean"),
)
PCP_THRESHOLD = 0.5
REPORT_FILES = ("predictions.npz", "pdj.png", "best_worst.png", "report.md", "report.json")


# --- numbers -----------------------------------------------------------------------------------------------

def _check_stage_preds(stage_preds: np.ndarray, n: int | None = None) -> np.ndarray:
    preds = np.asarray(stage_preds, dtype=np.float64)
    if preds.ndim != 4 or preds.shape[2:] != (NUM_JOINTS, 2):
        raise ValueError(f"stage_preds must be (S, N, {NUM_JOINTS}, 2); got {preds.shape} (one stage: preds[None])")
    if n is not None and preds.shape[1] != n:
        raise ValueError(f"stage_preds has {preds.shape[1]} images but the truth has {n}")
    return preds


def _finite_or_none(x: float) -> float | None:
    """JSON has no NaN; a number that does not exist is written as null."""
    return float(x) if math.isfinite(x) else None


def evaluate_stage(pred: np.ndarray, true: np.ndarray) -> dict:
    """Strict and loose PCP@0.5, the per-joint PDJ curve, PDJ@0.1/0.2 and pixel errors for one stage."""
    err = metrics.joint_errors(pred, true)  # (N, 14)
    finite = np.isfinite(err)
    per_joint = [_finite_or_none(np.mean(err[finite[:, j], j])) if finite[:, j].any() else None
                 for j in range(NUM_JOINTS)]
    at = {f: metrics.pdj_at(pred, true, f) for f in (0.1, 0.2)}
    return {
        "pcp": {mode: metrics.pcp(pred, true, PCP_THRESHOLD, mode=mode) for mode in ("strict", "loose")},
        "pdj_curve": metrics.pdj(pred, true).tolist(),  # (F, 14), rows follow "pdj_fractions"
        "pdj_at_0.1": at[0.1].tolist(),
        "pdj_at_0.2": at[0.2].tolist(),
        "pdj_mean_at_0.1": float(at[0.1].mean()),
        "pdj_mean_at_0.2": float(at[0.2].mean()),
        "mean_pixel_error": _finite_or_none(np.mean(err[finite])) if finite.any() else None,
        "per_joint_pixel_error": per_joint,
        "nonfinite_joints": int((~finite).sum()),  # NaN predictions: counted wrong by PCP/PDJ, left out of px errors
        "n": int(true.shape[0]),
    }


def evaluate_predictions(stage_preds: np.ndarray, true: np.ndarray) -> dict:
    """Every score for every stage of (S, N, 14, 2) predictions against (N, 14, 2) truth, JSON-serialisable.

    ``stages[s]`` holds stage s + 1; PCP is at 0.5 in both modes, PDJ is against the TRUE torso diameter.
    """
    true = np.asarray(true, dtype=np.float64)
    preds = _check_stage_preds(stage_preds, true.shape[0] if true.ndim == 3 else None)
    return {
        "n": int(true.shape[0]),
        "num_stages": int(preds.shape[0]),
        "pcp_threshold": PCP_THRESHOLD,
        "joint_names": list(JOINT_NAMES),
        "pdj_fractions": metrics.DEFAULT_PDJ_FRACTIONS.tolist(),
        "stages": [{"stage": s + 1, **evaluate_stage(p, true)} for s, p in enumerate(preds)],
    }


# --- tables ------------------------------------------------------------------------------------------------

def _row(label: str, values: Sequence[float | None], digits: int | Sequence[int]) -> str:
    places = [digits] * len(values) if isinstance(digits, int) else list(digits)
    cells = ["–" if v is None else f"{v:.{d}f}" for v, d in zip(values, places, strict=True)]
    return "| " + " | ".join([label, *cells]) + " |"


def _pcp_values(pcp: dict) -> list[float]:
    return [pcp["groups"][k] if k in PAPER_GROUPS else pcp["mean"] for k, _ in TABLE_COLUMNS]


def pcp_table(results: dict, baseline: dict | None = None, baseline_name: str = "mean pose",
              digits: int = 3) -> str:
    """The paper's LSP table layout: the paper's three stages (2 decimals, as printed), then ours, both modes."""
    header = "| Method | " + " | ".join(name for _, name in TABLE_COLUMNS) + " |"
    rule = "|---|" + "---:|" * len(TABLE_COLUMNS)
    rows = [_row(f"DeepPose stage {s} (paper)", [PAPER_LSP_PCP[s][k] for k, _ in TABLE_COLUMNS], 2)
            for s in sorted(PAPER_LSP_PCP)]
    for st in results["stages"]:
        for mode in ("strict", "loose"):
            rows.append(_row(f"ours, stage {st['stage']} ({mode})", _pcp_values(st["pcp"][mode]), digits))
    if baseline is not None:
        for mode in ("strict", "loose"):
            rows.append(_row(f"{baseline_name} ({mode})", _pcp_values(baseline["stages"][-1]["pcp"][mode]), digits))
    return "\n".join([header, rule, *rows])


def extra_table(results: dict, baseline: dict | None = None, baseline_name: str = "mean pose",
                digits: int = 3) -> str:
    """PDJ@0.1 and @0.2 (mean over joints), head and torso PCP in both modes, mean pixel error, per stage."""
    header = ("| Stage | `PDJ@0.1` | `PDJ@0.2` | Head PCP (strict) | Torso PCP (strict) | Head PCP (loose) "
              "| Torso PCP (loose) | Mean error (px) |")
    rule = "|---|" + "---:|" * 7

    def values(st: dict) -> list[float | None]:
        s, lo = st["pcp"]["strict"]["groups"], st["pcp"]["loose"]["groups"]
        return [st["pdj_mean_at_0.1"], st["pdj_mean_at_0.2"], s["head"], s["torso"], lo["head"], lo["torso"],
                st["mean_pixel_error"]]

    places = [digits] * 6 + [1]  # pixels to a tenth; more would be noise
    rows = [_row(f"ours, stage {st['stage']}", values(st), places) for st in results["stages"]]
    if baseline is not None:
        rows.append(_row(baseline_name, values(baseline["stages"][-1]), places))
    return "\n".join([header, rule, *rows])


def markdown_table(results: dict, baseline: dict | None = None, baseline_name: str = "mean pose",
                   digits: int = 3) -> str:
    """Both tables with captions that say which PCP each row is and where the paper's numbers come from.

    ``baseline`` is an ``evaluate_predictions`` result (its last stage is used), e.g. for the mean pose.

    Introduced in ``notebooks/06_evaluation.ipynb``.
    """
    n = results["n"]
    caption = (
        f"**PCP at {PCP_THRESHOLD} (n = {n} images).** strict: a limb is correct when BOTH predicted endpoints "
        f"lie within {PCP_THRESHOLD} × the true limb length of their true positions; loose: when the MEAN of the "
        "two endpoint errors does. Left and right limbs averaged; Mean = the four limb columns. "
        "Paper rows: DeepPose on LSP as Toshev & Szegedy (CVPR 2014) report it (recalled: quoted from the paper's "
        "table, not re-read for this course). The paper does not say plainly whether its PCP is the strict or the "
        "loose one; the public re-implementation asanakoy/deeppose_tf scores the loose one as \"PCP as in DeepPose\", "
        "so compare the paper's rows with our loose rows first."
    )
    caption2 = ("**PDJ and the other parts.** `PDJ@f`: fraction of joints within f × the TRUE torso diameter "
                "(left shoulder to right hip), averaged over the 14 joints. Mean error: Euclidean joint error in "
                "pixels, over finite predictions.")
    return "\n\n".join([caption, pcp_table(results, baseline, baseline_name, digits),
                        caption2, extra_table(results, baseline, baseline_name, digits)]) + "\n"


def best_worst_sheet(dataset: PoseDataset, pred: np.ndarray, true: np.ndarray, path: Path | str, k: int = 8,
                     tile_size: int = 200, columns: int = 4) -> np.ndarray:
    """The ``k`` best and ``k`` worst images (error / true torso), truth green and prediction magenta; PNG.

    ``columns`` a row (the best rows first): four 200 px tiles make a sheet a notebook shows at its own size, so
    the 12 px captions stay readable (eight 160 px tiles were shrunk to 74 %, the captions to about 6 px).
    Returns the sheet as well, so a notebook can show exactly what was saved.
    """
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    best, worst = metrics.best_and_worst(pred, true, k)
    score = metrics.per_image_score(pred, true)
    tiles, captions = [], []
    for tag, indices in (("best", best), ("worst", worst)):
        for rank, i in enumerate(indices, start=1):
            img = dataset.image(int(i))
            # Draw at about twice the tile size, with lines that come out ~2 px wide once the tile is shrunk.
            side = max(img.shape[:2])
            scale = max(1, math.ceil(2 * tile_size / side))
            thickness = max(1, round(2 * side * scale / tile_size))
            tiles.append(draw_poses(img, [true[i], pred[i]], visible=[dataset.visible[i], None], scale=scale,
                                    thickness=thickness))
            captions.append(f"{tag} {rank}: {dataset.ids[i]}\nerr/torso {score[i]:.3f}")
    cols = max(1, min(columns, len(best)))
    rows = -(-len(best) // cols)
    title = (f"first {rows} row{'s' if rows > 1 else ''}: best, then worst (error / torso); "
             "green truth (rings hidden), magenta prediction")
    tiles = tiles[:len(best)] + [np.full((8, 8, 3), 255, np.uint8)] * (rows * cols - len(best)) + tiles[len(best):]
    captions = captions[:len(best)] + [""] * (rows * cols - len(best)) + captions[len(best):]
    sheet = contact_sheet(tiles, columns=cols, captions=captions, tile_size=tile_size, title=title)
    save_png(path, sheet)
    return sheet


# --- predictions file --------------------------------------------------------------------------------------

def export_predictions(path: Path | str, image_ids: Sequence[str], stage_preds: np.ndarray, file_offset: float) -> None:
    """Write the predictions file: ``image_ids`` (N,), ``joints`` (S, N, 14, 2) in the ANNOTATION FILE's units.

    Datasets define internal = file + file_offset, so file = internal − file_offset (LSP: internal + 0.5,
    MATLAB's 1-based pixel centres), and an outside tool can score the file against ``joints.mat`` directly.
    """
    preds = _check_stage_preds(stage_preds, len(image_ids))
    ids = np.asarray([str(i) for i in image_ids], dtype=str)
    joints = to_file_units(preds, float(file_offset))
    atomic.write_with(path, lambda fh: np.savez(fh, image_ids=ids, joints=joints))


def load_predictions(path: Path | str, file_offset: float) -> tuple[list[str], np.ndarray]:
    """Read an ``export_predictions`` file back: (image ids, (S, N, 14, 2) joints in INTERNAL pixels).

    Raises ``DataError`` naming the file when it is missing, not an ``.npz``, or has the wrong keys or shapes.

    Introduced in ``notebooks/06_evaluation.ipynb``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "predictions file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"image_ids", "joints"} - set(npz.files)
            if missing:
                raise DataError(path, f"missing {sorted(missing)} (found {sorted(npz.files)})")
            ids, joints = npz["image_ids"], npz["joints"]
    except DataError:
        raise
    except Exception as exc:  # zipfile, pickle and format errors come as several unrelated types
        raise DataError(path, f"not a readable predictions .npz ({exc})") from None
    if joints.ndim != 4 or joints.shape[2:] != (NUM_JOINTS, 2) or not np.issubdtype(joints.dtype, np.number):
        raise DataError(path, f"'joints' must be numeric (S, N, {NUM_JOINTS}, 2), got {joints.shape} {joints.dtype}")
    if ids.ndim != 1 or ids.shape[0] != joints.shape[1] or ids.dtype.kind not in "US":
        raise DataError(path, f"'image_ids' must be ({joints.shape[1]},) strings, got {ids.shape} {ids.dtype}")
    return [str(i) for i in ids], from_file_units(joints, float(file_offset))


# --- the whole report --------------------------------------------------------------------------------------

def to_jsonable(obj: Any) -> Any:
    """numpy scalars and arrays, paths and tuples to plain JSON values; NaN and infinities to null."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return _finite_or_none(obj)
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} to report.json: {obj!r}")


def json_chunks(doc: Any) -> Iterator[str]:
    """The JSON text in pieces, so a large report streams into its (temporary) file."""
    return json.JSONEncoder(indent=2, allow_nan=False).iterencode(doc)


def write_json(path: Path | str, doc: Any) -> None:
    """Atomic JSON: a failure halfway through leaves the previous file as it was."""
    doc = to_jsonable(doc)

    def writer(fh) -> None:
        for chunk in json_chunks(doc):
            fh.write(chunk.encode("utf-8"))
        fh.write(b"\n")

    atomic.write_with(path, writer)


def _meta_lines(meta: dict) -> list[str]:
    return [f"- **{k}**: {v}" for k, v in to_jsonable(meta).items()]


def _signed(x: float) -> str:
    return f"{'+' if x >= 0 else '−'} {abs(x):g}"


def report_markdown(results: dict, meta: dict, baseline_name: str = "mean pose") -> str:
    ds = results["dataset"]
    parts = [
        f"# DeepPose evaluation: {ds['name']} ({results['n']} images, {results['num_stages']} stages)",
        "\n".join(_meta_lines(meta)) if meta else "",
        markdown_table(results, results.get("baseline"), baseline_name),
        "![PDJ per joint](pdj.png)",
        "![best and worst images](best_worst.png)",
        f"Predictions: `predictions.npz` (`image_ids` (N,), `joints` (S, N, 14, 2)) in the annotation file's own "
        f"pixel units (file = internal {_signed(-ds['file_offset'])} px); every number above is in `report.json`.",
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def write_report(out_dir: Path | str, stage_preds: np.ndarray, dataset: PoseDataset, meta: dict,
                 baseline_preds: np.ndarray | None = None, baseline_name: str = "mean pose",
                 k: int = 8) -> dict:
    """Write ``REPORT_FILES`` into ``out_dir`` (each atomically, ``report.json`` last) and return the results.

    ``stage_preds`` (S, N, 14, 2) and ``baseline_preds`` ((N, 14, 2) or (1, N, 14, 2)) are internal pixels for
    the images of ``dataset`` in order; the best/worst sheet shows the last stage.
    """
    out = Path(out_dir)
    true = np.asarray(dataset.joints, dtype=np.float64)
    preds = _check_stage_preds(stage_preds, len(dataset))
    results = evaluate_predictions(preds, true)
    if baseline_preds is not None:
        base = np.asarray(baseline_preds, dtype=np.float64)
        results["baseline"] = {"name": baseline_name, **evaluate_predictions(base[None] if base.ndim == 3 else base,
                                                                              true)}
    results["dataset"] = {"name": dataset.name, "n": len(dataset), "file_offset": float(dataset.file_offset)}
    results["paper_lsp_pcp"] = {"note": "recalled from the paper's table; its PCP is most likely the loose one",
                                **{f"stage {s}": v for s, v in PAPER_LSP_PCP.items()}}
    results["meta"] = to_jsonable(meta)
    export_predictions(out / "predictions.npz", dataset.ids, preds, dataset.file_offset)
    plots.save(plots.pdj(results, results.get("baseline"), baseline_name,
                         title=f"PDJ per joint on {dataset.name} (n = {len(dataset)})"), out / "pdj.png")
    best_worst_sheet(dataset, preds[-1], true, out / "best_worst.png", k=k)
    curve = plots.time_to_accuracy(meta.get("training_seconds", {}))
    if curve is not None:
        plots.save(curve, out / "time_to_accuracy.png")
    atomic.write_text(out / "report.md", report_markdown(results, meta, baseline_name))
    write_json(out / "report.json", results)
    return results
