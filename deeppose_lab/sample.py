"""The one sample type every data set yields, and the pixel convention its joints use.

Pixel convention (internal): continuous image coordinates with the origin at the top-left CORNER of
the top-left pixel, x to the right, y down; the centre of pixel (row r, column c) is (c + 0.5, r + 0.5).
Annotation files put pixel centres on integers: LSP's MATLAB files start at 1, image viewers, OpenCV and our own
annotation format at 0. A data set's ``file_offset`` says which: internal = file + file_offset, the one sign
convention every reader and exporter uses (``from_file_units`` / ``to_file_units``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .skeleton import NUM_JOINTS

MATLAB_OFFSET = -0.5  # MATLAB (LSP's joints.mat) puts the first pixel centre at 1.0, we put it at 0.5
ZERO_BASED_OFFSET = 0.5  # image viewers, OpenCV and our own annotation files put it at 0.0


def from_file_units(joints: np.ndarray, offset: float = MATLAB_OFFSET) -> np.ndarray:
    """Annotation-file coordinates to internal ones: internal = file + offset (default: LSP's MATLAB files).

    Introduced in ``notebooks/01_data.ipynb``.
    """
    return np.asarray(joints, dtype=np.float64) + offset


def to_file_units(joints: np.ndarray, offset: float = MATLAB_OFFSET) -> np.ndarray:
    """Internal coordinates back to the annotation file's own units (``offset``: the data set's ``file_offset``).

    Introduced in ``notebooks/01_data.ipynb``.
    """
    return np.asarray(joints, dtype=np.float64) - offset


@dataclass(frozen=True)
class Sample:
    """An RGB image (H, W, 3) uint8, its joints (14, 2) float64 in internal pixels, visibility (14,) bool."""

    image: np.ndarray
    joints: np.ndarray
    visible: np.ndarray
    id: str

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"sample {self.id}: image must be (H, W, 3) uint8, "
                             f"got {self.image.shape} {self.image.dtype}")
        if self.joints.shape != (NUM_JOINTS, 2):
            raise ValueError(f"sample {self.id}: joints must be ({NUM_JOINTS}, 2), got {self.joints.shape}")
        if self.visible.shape != (NUM_JOINTS,) or self.visible.dtype != bool:
            raise ValueError(f"sample {self.id}: visible must be ({NUM_JOINTS},) bool")

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
