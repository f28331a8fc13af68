"""Fixtures shared by several test files: a standing pose, a finished fake run, a pickle payload, tar members."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import torch

from deeppose_lab import rundir
from deeppose_lab.cascade import DisplacementStats
from deeppose_lab.checkpoint import save_checkpoint
from deeppose_lab.profiles import get_profile
from deeppose_lab.skeleton import NUM_JOINTS

# A standing person in pixels (x, y), y down. Arm limbs 25 px, leg limbs 35 px, head 20 px.
POSE = np.array(
    [
        [43, 150], [43, 115], [43, 80],  # r_ankle, r_knee, r_hip
        [57, 80], [57, 115], [57, 150],  # l_hip, l_knee, l_ankle
        [40, 85], [40, 60], [40, 35],  # r_wrist, r_elbow, r_shoulder
        [60, 35], [60, 60], [60, 85],  # l_shoulder, l_elbow, l_wrist
        [50, 30], [50, 10],  # neck, head_top
    ],
    dtype=np.float64,
)

TINY = {"epochs": "1", "refine_epochs": "1", "synthetic_train": "8", "synthetic_test": "3", "val_images": "2",
        "stages": "2"}
SETS = [arg for key, value in TINY.items() for arg in ("--set", f"{key}={value}")]


def fake_run(run_dir: Path, **sets: str) -> Path:
    """A finished run of untrained tiny networks (no training needed to test the commands that read it);
    ``sets`` override profile fields as ``--set`` does."""
    profile = get_profile("smoke", **{**TINY, **sets})
    run_dir.mkdir(parents=True)
    rundir.start_run(run_dir, profile, "synthetic")
    for stage in (1, 2):
        torch.manual_seed(stage)
        model = profile.recipe(stage).build_model()
        extra = {}
        if stage == 2:
            stats = DisplacementStats(np.zeros((NUM_JOINTS, 2)), np.tile(np.eye(2) * 0.01, (NUM_JOINTS, 1, 1)),
                                      np.zeros(NUM_JOINTS, np.int64))
            extra = {"displacement": stats.to_payload(), "sigma": profile.sigma}
        save_checkpoint(rundir.stage_path(run_dir, stage), {"stage": stage, "model_config": model.config,
                                                         "model": model.state_dict(), "epoch": 0, "complete": True,
                                                         **extra})
    return run_dir


def leave_marker(path: str) -> str:
    """What every payload runs when unpickled: proof of code execution."""
    Path(path).write_text("code ran")
    return "payload"


class Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (leave_marker, (self.marker,))


def tar_bytes(members: list[tarfile.TarInfo]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for info in members:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return buf.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, linkname, size
    return info
