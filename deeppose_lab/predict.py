"""Your own images through a trained cascade: draw the pose, write the coordinates.

Coordinates are written in the same convention as the your-own-images annotation format (pixel centres
at integers, top-left pixel (0, 0), as image viewers and OpenCV report them), so a prediction can be
corrected by hand and fed back as training data.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .atomic import write_text
from .cascade import diam_floor
from .datasets import ZERO_BASED_OFFSET, PoseDataset
from .drawing import draw_pose, save_png
from .geometry import cascade_boxes
from .images import load_image
from .report import export_predictions
from .runs import load_cascade
from .skeleton import JOINT_NAMES, NUM_JOINTS


class UnlabelledImages(PoseDataset):
    """Images without labels (joints unknown, marked hidden), for prediction only."""

    name = "images"
    file_offset = ZERO_BASED_OFFSET

    def __init__(self, paths: Sequence[Path]) -> None:
        self.paths = [Path(p) for p in paths]
        n = len(self.paths)
        super().__init__([p.stem for p in self.paths], np.zeros((n, NUM_JOINTS, 2)), np.zeros((n, NUM_JOINTS), bool))

    def load_image(self, i: int) -> np.ndarray:
        return load_image(self.paths[i])


def predict_images(run_dir: Path | str, paths: Sequence[Path], out: Path | str | None = None,
                   box: np.ndarray | None = None, stages: int | None = None, compile: bool = False,
                   flip_test: bool | None = None) -> Path:
    """Predict every image (with ``box`` [cx, cy, w, h] or the whole image), draw and export; returns the folder.

    ``compile`` and ``flip_test`` as in ``runs.load_cascade``."""
    cascade = load_cascade(run_dir, stages, compile, flip_test)
    images = UnlabelledImages(paths)
    images.decode_all()  # now, so a bad file is named before any work is done
    boxes = None if box is None else np.tile(box, (len(images), 1))
    poses = cascade.predict(images, boxes)  # (S, N, 14, 2) internal pixels
    out = Path(out) if out is not None else Path(run_dir) / "predict"
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for n, path in enumerate(images.paths):
        final = poses[-1, n]
        floor = diam_floor(images[n], None if boxes is None else boxes[n])  # the boxes the last stage cropped
        boxes_n = cascade_boxes(poses[-2, n], cascade.sigma, floor) if cascade.stages > 1 else None
        save_png(out / f"{path.stem}_pose.png", draw_pose(images.image(n), final, scale=2, boxes=boxes_n))
        file_units = poses[:, n] - ZERO_BASED_OFFSET
        records.append({"image": str(path), "joint_names": list(JOINT_NAMES),
                        "joints": file_units[-1].round(2).tolist(),
                        "stages": file_units.round(2).tolist()})
    write_text(out / "predictions.json", json.dumps({"convention": "pixel centres at integers, (0, 0) top-left",
                                                    "predictions": records}, indent=1))
    export_predictions(out / "predictions.npz", images.ids, poses, images.file_offset)
    return out
