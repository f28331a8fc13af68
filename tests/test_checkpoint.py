"""Checkpoints: an exact round trip, and a refusal that names the file for anything else.

The pickled-code test carries a live payload (it would create a marker file when unpickled); the control at
the end proves it is live, so the refusal test cannot pass by accident.
"""

from __future__ import annotations

import io

import pytest
import torch
from helpers import Payload

from deeppose_lab import __version__
from deeppose_lab.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from deeppose_lab.model import DeepPoseNet


@pytest.fixture(scope="module")
def net() -> DeepPoseNet:
    torch.manual_seed(0)
    return DeepPoseNet(input_size=48, width=0.125, dropout=0.0)


def payload(net: DeepPoseNet, stage: int = 1, **extra) -> dict:
    return {"stage": stage, "model_config": net.config, "model": net.state_dict(), "epoch": 4, "complete": True,
            "history": [{"epoch": 1, "train_loss": 0.5, "val_loss": float("nan")}], **extra}


def test_round_trip(tmp_path, net):
    path = tmp_path / "stage2.pt"
    stats = {"mean": torch.randn(14, 2, dtype=torch.float64), "cov": torch.eye(2).repeat(14, 1, 1),
             "count": torch.arange(14)}
    save_checkpoint(path, payload(net, stage=2, displacement=stats, sigma=2.0, settings={"lr": 1e-3, "bf16": False}))
    ckpt = load_checkpoint(path, stage=2)
    assert ckpt["format"] == FORMAT and ckpt["version"] == __version__
    assert ckpt["stage"] == 2 and ckpt["epoch"] == 4 and ckpt["complete"] is True and ckpt["sigma"] == 2.0
    assert ckpt["model_config"] == net.config  # tuples survive, so resume can compare configs
    assert ckpt["settings"] == {"lr": 1e-3, "bf16": False}
    assert ckpt["history"][0]["train_loss"] == 0.5
    for key, value in stats.items():
        assert torch.equal(ckpt["displacement"][key], value) and ckpt["displacement"][key].dtype == value.dtype
    rebuilt = DeepPoseNet.from_config(ckpt["model_config"])
    rebuilt.load_state_dict(ckpt["model"])
    for key, value in net.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[key], value)
    assert [p.name for p in tmp_path.iterdir()] == ["stage2.pt"]  # no temporary files left behind


def test_pickled_code_is_refused_without_running_it(tmp_path, net):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    torch.save({**payload(net), "format": FORMAT, "version": __version__, "history": [Payload(marker)]}, path)
    with pytest.raises(CheckpointError, match="refused") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "not loaded" in str(err.value)
    assert not marker.exists(), "loading a checkpoint ran code from the file"
    # control: an unsafe load of the same file does run the payload, so the test above is meaningful
    torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


def test_a_foreign_torch_file_is_refused(tmp_path, net):
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)  # a plain state dict: loadable by torch, but not ours
    with pytest.raises(CheckpointError, match="not a deeppose_lab checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="not a deeppose_lab checkpoint.*list"):
        load_checkpoint(path)
    torch.save({"format": FORMAT, "stage": 1}, path)
    with pytest.raises(CheckpointError, match="lacks") as err:
        load_checkpoint(path)
    assert "model_config" in str(err.value) and str(path) in str(err.value)


def test_truncated_and_corrupt_files_are_refused_with_their_name(tmp_path, net):
    buf = io.BytesIO()
    torch.save({**payload(net), "format": FORMAT, "version": __version__}, buf)
    blob = buf.getvalue()
    cases = {f"cut{n}.pt": blob[:n] for n in (0, 1, 10, 100, len(blob) // 2, len(blob) - 1)}
    cases["text.pt"] = b"hello, I am not a checkpoint\n"
    cases["zip.pt"] = b"PK\x03\x04" + bytes(200)
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match="not a readable checkpoint") as err:
            load_checkpoint(path)
        assert str(err.value).startswith(f"{path}: "), name
        assert err.value.path == path


def test_missing_file_and_wrong_stage(tmp_path, net):
    with pytest.raises(CheckpointError, match="checkpoint not found") as err:
        load_checkpoint(tmp_path / "nope.pt")
    assert str(tmp_path / "nope.pt") in str(err.value)
    path = tmp_path / "stage2.pt"
    save_checkpoint(path, payload(net, stage=2))
    with pytest.raises(CheckpointError, match="holds stage 2, expected stage 1") as err:
        load_checkpoint(path, stage=1)
    assert str(path) in str(err.value)
    assert load_checkpoint(path)["stage"] == 2  # no stage asked: any stage is fine


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, net):
    path = tmp_path / "stage1.pt"
    save_checkpoint(path, payload(net))
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - torch.save's error for an unpicklable value is not ours to fix
        save_checkpoint(path, payload(net, history=[lambda: 0]))
    assert path.read_bytes() == before
    assert load_checkpoint(path, stage=1)["epoch"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["stage1.pt"]
