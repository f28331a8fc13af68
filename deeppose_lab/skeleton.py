"""The 14-joint LSP skeleton: joint names and order, PCP limbs, flip pairs and the torso pair.

Every other module takes its joint indices from here, so the order is written down exactly once.
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle",
    "r_wrist", "r_elbow", "r_shoulder", "l_shoulder", "l_elbow", "l_wrist",
    "neck", "head_top",
)
NUM_JOINTS = len(JOINT_NAMES)


def joint_index(*names: str) -> tuple[int, ...]:
    """Indices of the named joints, e.g. ``joint_index("r_wrist", "l_wrist")``: code names joints, not numbers."""
    unknown = [n for n in names if n not in JOINT_NAMES]
    if unknown:
        raise KeyError(f"unknown joint names {unknown}; the joints are {list(JOINT_NAMES)}")
    return tuple(JOINT_NAMES.index(n) for n in names)


# Left/right partners, swapped whenever an image is mirrored.
FLIP_PAIRS: tuple[tuple[int, int], ...] = ((0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9))

# diam(y) in the paper: the distance between opposing torso joints (left shoulder to right hip).
TORSO_PAIR: tuple[int, int] = (9, 2)

# Limbs scored by PCP, grouped the way the paper's LSP table reports them (left and right averaged).
LIMBS: dict[str, tuple[int, int]] = {
    "r_upper_arm": (8, 7), "l_upper_arm": (9, 10),
    "r_lower_arm": (7, 6), "l_lower_arm": (10, 11),
    "r_upper_leg": (2, 1), "l_upper_leg": (3, 4),
    "r_lower_leg": (1, 0), "l_lower_leg": (4, 5),
    "head": (12, 13),
    "torso": (8, 3),  # right shoulder to left hip; the other diagonal is TORSO_PAIR
}
LIMB_GROUPS: dict[str, tuple[str, ...]] = {
    "upper_arm": ("r_upper_arm", "l_upper_arm"),
    "lower_arm": ("r_lower_arm", "l_lower_arm"),
    "upper_leg": ("r_upper_leg", "l_upper_leg"),
    "lower_leg": ("r_lower_leg", "l_lower_leg"),
    "head": ("head",),
    "torso": ("torso",),
}
# The four groups whose mean is the paper's "mean" column.
PAPER_GROUPS: tuple[str, ...] = ("upper_arm", "lower_arm", "upper_leg", "lower_leg")

# Lines drawn for a skeleton picture: the limbs plus the torso outline.
BONES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11),
    (2, 3), (8, 9), (2, 8), (3, 9), (12, 13), (8, 12), (9, 12),
)


def flip_permutation() -> np.ndarray:
    """Index array p such that joints[p] relabels a mirrored pose (left becomes right).

    Introduced in ``notebooks/01_data.ipynb``.
    """
    perm = np.arange(NUM_JOINTS)
    for a, b in FLIP_PAIRS:
        perm[a], perm[b] = b, a
    return perm


FLIP = flip_permutation()  # the same, computed once for per-crop code; read-only
FLIP.setflags(write=False)


def torso_diameter(joints: np.ndarray) -> np.ndarray:
    """diam(y): Euclidean distance between left shoulder and right hip, for (..., 14, 2) arrays.

    Introduced in ``notebooks/06_evaluation.ipynb``.
    """
    a, b = TORSO_PAIR
    return np.linalg.norm(joints[..., a, :] - joints[..., b, :], axis=-1)
