"""torchrun with the gloo back end on the CPU: two processes give one process's result, rank 0 writes.

Each rank takes every second item of a batch and DistributedDataParallel averages the gradients, so with
dropout off the two-process stage 1 equals the one-process stage 1 up to float summation order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

# 33 synthetic samples: the last 3 are the dev split, the other 30 split evenly over two processes (an odd count
# would leave one out of every epoch with two processes and not with one).
TINY = ["--profile", "smoke", "--data", "synthetic", "--stages", "1", "--quiet", "--set", "dropout=0",
        "--set", "synthetic_train=33", "--set", "synthetic_test=8", "--set", "val_images=4", "--set", "epochs=2"]


def train(out: Path, nproc: int, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DEEPPOSE_DATA": str(tmp_path / "no-data")}
    if nproc == 1:
        cmd = [sys.executable, "-m", "deeppose_lab.cli", "train", *TINY, "--out", str(out)]
    else:
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
        cmd = [torchrun, "--standalone", "--nproc_per_node", str(nproc), "-m", "deeppose_lab.cli", "train",
               *TINY, "--out", str(out)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def test_two_processes_match_one(tmp_path):
    single, double = tmp_path / "one", tmp_path / "two"
    r1 = train(single, 1, tmp_path)
    assert r1.returncode == 0, r1.stderr[-2000:]
    r2 = train(double, 2, tmp_path)
    assert r2.returncode == 0, r2.stderr[-2000:]
    a = torch.load(single / "stage1.pt", weights_only=True)
    b = torch.load(double / "stage1.pt", weights_only=True)
    assert a["complete"] and b["complete"]
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), atol=1e-4), key
    assert a["history"][-1]["train_loss"] == pytest.approx(b["history"][-1]["train_loss"], rel=1e-4)
    assert not list(double.glob(".*.tmp")), "rank 0 alone writes, atomically"
    assert r2.stdout.count("trained 1 stage(s)") == 1, "only rank 0 reports"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_training_uses_the_gpu_when_present(tmp_path):
    from deeppose_lab.crops import PersonCrops
    from deeppose_lab.geometry import Augmentation
    from deeppose_lab.model import DeepPoseNet
    from deeppose_lab.profiles import StageRecipe
    from deeppose_lab.synthetic import SyntheticPoses
    from deeppose_lab.train import FitSettings, fit

    model = DeepPoseNet(input_size=48, width=0.125)
    data = SyntheticPoses(8)
    s = FitSettings(StageRecipe(epochs=1, lr=1e-4, batch_size=4))
    fit(model, PersonCrops(data, 48, Augmentation.none()), None, s, tmp_path / "s1.pt", progress=False)
    assert next(model.parameters()).is_cuda
