"""Files from elsewhere: checkpoints carrying code, foreign or mismatched checkpoints, crafted joints.mat files and
hostile downloads. Only cases that test_checkpoint.py, test_datasets.py and test_download.py do not cover.

Every payload here is live (a control shows it runs when loaded unsafely), so a refusal test cannot pass by
accident; "refused" means a clear error naming the file and the payload's marker file never appearing.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import pickle
import stat
import subprocess
import sys
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from helpers import SETS, Payload, fake_run, tar_bytes, tar_member
from PIL import Image

from deeppose_lab import __version__, cli, download, rundir
from deeppose_lab.checkpoint import FORMAT, CheckpointError, load_checkpoint, weights_digest
from deeppose_lab.download import DownloadError, download_dataset, safe_extract
from deeppose_lab.model import DeepPoseNet
from deeppose_lab.skeleton import NUM_JOINTS


def cli_error(capsys, *argv: str) -> str:
    """Run the command line, expect exit status 2, return its one-line error (never a traceback)."""
    assert cli.main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def rewrite(path: Path, change) -> None:
    """Load a checkpoint (it is our own), change it, and write it back with a digest that fits its new weights, as
    a file written by another run would have."""
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    if "model_sha256" in ckpt:
        ckpt["model_sha256"] = weights_digest(ckpt["model"])
    torch.save(ckpt, path)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return fake_run(tmp_path / "run")


# --- checkpoints that carry code ---------------------------------------------------------------------------------

def our_checkpoint(**changes) -> dict:
    net = DeepPoseNet(input_size=48, width=0.125, dropout=0.0)
    return {"format": FORMAT, "version": __version__, "stage": 1, "model_config": net.config,
            "model": net.state_dict(), "epoch": 0, "complete": True, **changes}


def write_payload(path: Path, marker: Path, how: str) -> None:
    if how == "top-level":
        torch.save(Payload(marker), path)
    elif how == "in-weights":
        ckpt = our_checkpoint()
        ckpt["model"]["head.fc8.bias"] = Payload(marker)
        torch.save(ckpt, path)
    elif how == "in-optimizer":
        torch.save(our_checkpoint(optimizer={"state": {0: {"step": Payload(marker)}}, "param_groups": []}), path)
    elif how == "legacy-format":  # torch's pre-1.6 non-zip serialisation
        torch.save(our_checkpoint(history=[Payload(marker)]), path, _use_new_zipfile_serialization=False)
    elif how == "raw-pickle":
        path.write_bytes(pickle.dumps({"format": FORMAT, "x": Payload(marker)}, protocol=2))
    else:
        raise AssertionError(how)


@pytest.mark.parametrize("how", ["top-level", "in-weights", "in-optimizer", "legacy-format", "raw-pickle"])
def test_pickled_code_anywhere_in_the_file_is_refused_without_running(tmp_path, how):
    marker, path = tmp_path / "marker.txt", tmp_path / "stage1.pt"
    write_payload(path, marker, how)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ")
    assert "refused" in str(err.value) or "not a readable checkpoint" in str(err.value)
    assert not marker.exists(), "loading the checkpoint ran code from it"
    # control: an unsafe load runs the payload, so the refusal above is meaningful
    if how == "raw-pickle":
        pickle.loads(path.read_bytes())
    else:
        torch.load(path, weights_only=False)
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("command", ["evaluate", "predict", "train"])
def test_a_run_directory_with_a_booby_trapped_checkpoint_is_refused_by_every_command(tmp_path, run_dir, capsys,
                                                                                    command):
    marker = tmp_path / "marker.txt"
    write_payload(rundir.stage_path(run_dir, 1), marker, "in-weights")
    image = tmp_path / "me.png"
    Image.new("RGB", (40, 60)).save(image)
    argv = {"evaluate": ["evaluate", str(run_dir), "--out", str(tmp_path / "report")],
            "predict": ["predict", str(run_dir), str(image), "--out", str(tmp_path / "pred")],
            "train": ["train", "--profile", "smoke", "--data", "synthetic", *SETS, "--out", str(run_dir), "--quiet"]}
    err = cli_error(capsys, *argv[command])
    assert str(rundir.stage_path(run_dir, 1)) in err and "refused" in err
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated, and still a file people have
def test_a_torchscript_archive_is_refused(tmp_path):
    class Net(torch.nn.Module):
        def forward(self, x):
            return x + 1

    path = tmp_path / "stage1.pt"
    torch.jit.save(torch.jit.trace(Net(), torch.zeros(2)), path)  # carries code (TorchScript), not just weights
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="not a readable checkpoint") as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: ")


# --- foreign and mismatched checkpoints ----------------------------------------------------------------------------

@pytest.mark.parametrize(("content", "found"), [
    ({"features.0.weight": torch.zeros(64, 3, 11, 11), "classifier.6.bias": torch.zeros(1000)}, "None"),
    ({"state_dict": {"w": torch.zeros(2)}, "epoch": 3, "pytorch-lightning_version": "2.0.0"}, "None"),
    ({**our_checkpoint(), "format": "deeppose_lab.checkpoint/2"}, "'deeppose_lab.checkpoint/2'"),
    (torch.zeros(3), "'Tensor'"),
], ids=["torchvision-state-dict", "lightning-checkpoint", "future-format", "bare-tensor"])
def test_foreign_checkpoints_say_what_they_are_not(tmp_path, content, found):
    path = tmp_path / "stage1.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"{path}: not a deeppose_lab checkpoint (format {found}, expected {FORMAT!r})"


def test_a_numpy_archive_named_like_a_checkpoint_is_refused(tmp_path):
    path = tmp_path / "stage1.pt"
    with path.open("wb") as fh:
        np.savez(fh, joints=np.zeros(3))  # a zip file, but not a PyTorch one
    with pytest.raises(CheckpointError, match=r"not a readable checkpoint"):
        load_checkpoint(path)


def test_swapped_stage_files_are_named(run_dir, capsys):
    one, two = rundir.stage_path(run_dir, 1), rundir.stage_path(run_dir, 2)
    data1, data2 = one.read_bytes(), two.read_bytes()
    one.write_bytes(data2)
    two.write_bytes(data1)
    err = cli_error(capsys, "evaluate", str(run_dir))
    assert err == f"deeppose-lab evaluate: error: {one}: holds stage 2, expected stage 1"


def test_weights_that_do_not_fit_their_recorded_config_are_named(run_dir, capsys):
    rewrite(rundir.stage_path(run_dir, 1), lambda c: c["model_config"].update(width=0.25))
    err = cli_error(capsys, "evaluate", str(run_dir))
    assert f"{rundir.stage_path(run_dir, 1)}: holds a stage 1 network with width 0.25" in err and "another run" in err


def test_resuming_from_a_checkpoint_of_another_model_is_refused(run_dir, capsys):
    path = rundir.stage_path(run_dir, 1)
    other = DeepPoseNet(input_size=64, width=0.25, dropout=0.0)
    rewrite(path, lambda c: c.update(model_config=other.config, model=other.state_dict(), complete=False))
    err = cli_error(capsys, "train", "--profile", "smoke", "--data", "synthetic", *SETS, "--out", str(run_dir),
                    "--quiet")
    assert f"{path}: was trained with model" in err and "'width': 0.25" in err


def test_a_checkpoint_with_unknown_model_config_keys_is_named(run_dir, capsys):
    rewrite(rundir.stage_path(run_dir, 1), lambda c: c["model_config"].update(bogus=1))
    err = cli_error(capsys, "evaluate", str(run_dir))
    assert str(rundir.stage_path(run_dir, 1)) in err and "bogus" in err


def test_a_stage_checkpoint_for_another_input_size_is_named(run_dir, capsys):
    path = rundir.stage_path(run_dir, 1)
    other = DeepPoseNet(input_size=48, width=0.125, dropout=0.0)  # the run's profile says 64 px
    rewrite(path, lambda c: c.update(model_config=other.config, model=other.state_dict()))
    err = cli_error(capsys, "evaluate", str(run_dir))
    assert str(path) in err and "input_size" in err


# --- crafted joints.mat: refused, never a crash (checked in a child process) ---------------------------------------

def mat_bytes(compress: bool = False, **variables) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables, do_compression=compress)
    return buf.getvalue()


def with_data_type(data: bytes, name: bytes, code: int) -> bytes:
    """An uncompressed MAT file whose variable ``name`` declares data type ``code`` (scipy indexes a table by it)."""
    at = data.index(name) + 8  # the name element is padded to 8 bytes; the data element's tag follows
    return data[:at] + code.to_bytes(4, "little") + data[at + 4:]


def compressed_with_data_type(code: int) -> bytes:
    plain = with_data_type(mat_bytes(joints=np.ones((3, NUM_JOINTS, 2))), b"joints", code)
    packed = zlib.compress(plain[128:])
    return plain[:128] + (15).to_bytes(4, "little") + len(packed).to_bytes(4, "little") + packed


CRAFTED_CHILD = """
import json, sys, warnings
from pathlib import Path
from deeppose_lab.datasets import read_joints_mat
from deeppose_lab.images import DataError
out = {}
for path in sorted(Path(sys.argv[1]).glob("*.mat")):
    print(path.name, file=sys.stderr, flush=True)  # the last name printed is the one that crashed
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coords, flags = read_joints_mat(path, "3x14xN")
        out[path.name] = ["ok", list(coords.shape)]
    except DataError as err:
        out[path.name] = ["DataError", str(err)]
    except Exception as err:
        out[path.name] = [type(err).__name__, str(err)]
print(json.dumps(out))
"""


def test_crafted_joints_mat_files_are_refused_without_crashing(tmp_path):
    good = np.ones((3, NUM_JOINTS, 2))
    cases = {
        **{f"type{code}.mat": with_data_type(mat_bytes(joints=good), b"joints", code)
           for code in (0, 8, 10, 14, 15, 19, 48, 0xBB09)},  # NULL slots and past-the-end of scipy's type table
        "compressed-type48.mat": compressed_with_data_type(48),
        "char.mat": with_data_type(mat_bytes(joints="hello"), b"joints", 48),
        "cell.mat": mat_bytes(joints=np.array([[1.0, "x"]], dtype=object)),
        "struct.mat": mat_bytes(joints={"x": np.zeros(3)}),
        "complex.mat": mat_bytes(joints=good + 1j),
        # a corrupt variable that is NOT joints: scipy never parses its body, so the file still reads
        "other-corrupt.mat": with_data_type(mat_bytes(aaa=np.ones(3), joints=good), b"aaa", 48),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    proc = subprocess.run([sys.executable, "-c", CRAFTED_CHILD, str(tmp_path)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"reading {proc.stderr.split()[-1:]} crashed the interpreter (exit {proc.returncode})"
    result = json.loads(proc.stdout)
    assert result.pop("other-corrupt.mat") == ["ok", [2, NUM_JOINTS, 2]]
    for name, (kind, message) in result.items():
        assert kind == "DataError", (name, kind, message)
        assert message.startswith(str(tmp_path / name)), message
    assert "invalid data type code 48" in result["type48.mat"][1]
    assert "invalid data type code 48" in result["compressed-type48.mat"][1]
    for name in ("char.mat", "cell.mat", "struct.mat", "complex.mat"):
        assert "real numeric array" in result[name][1], result[name]


# --- downloads ------------------------------------------------------------------------------------------------------

def zip_bytes(members: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for info, data in members:
            zf.writestr(info, data)
    return buf.getvalue()


LSP_MEMBERS = [("joints.mat", b"mat"), ("images/im0001.jpg", b"\xff\xd8")]


def serve_locally(monkeypatch, body: bytes, fail: BaseException | None = None, after: int = 0) -> list[str]:
    """Replace the network: ``_fetch`` writes ``body`` (or its first ``after`` bytes, then raises ``fail``)."""
    urls = []

    def fetch(url, dest, timeout, progress):
        urls.append(url)
        if fail is not None:
            dest.write(body[:after])
            dest.flush()
            raise fail
        dest.write(body)
        return hashlib.sha256(body).hexdigest()

    monkeypatch.setattr(download, "_fetch", fetch)
    return urls


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.mark.parametrize("fail", [KeyboardInterrupt(), OSError(errno.ENOSPC, "No space left on device")],
                         ids=["ctrl-c", "disk-full"])
def test_an_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch, fail):
    body = zip_bytes(LSP_MEMBERS)
    serve_locally(monkeypatch, body, fail, after=len(body) // 2)
    expected = KeyboardInterrupt if isinstance(fail, KeyboardInterrupt) else DownloadError
    with pytest.raises(expected) as err:
        download_dataset("lsp", tmp_path, mirrors=["http://127.0.0.1:9/lsp.zip"], sha256="a" * 64, progress=False)
    if expected is DownloadError:
        assert "No space left on device" in str(err.value) and "DEEPPOSE_DATA" in str(err.value)
    assert leftovers(tmp_path) == []


def test_a_file_url_mirror_is_never_read(tmp_path, monkeypatch):
    urls = serve_locally(monkeypatch, b"")
    secret = tmp_path / "secret.zip"
    secret.write_bytes(zip_bytes(LSP_MEMBERS))
    with pytest.raises(DownloadError, match="only http:// and https://"):
        download_dataset("lsp", tmp_path / "data", mirrors=[secret.as_uri()], sha256="a" * 64, progress=False)
    assert urls == [] and leftovers(tmp_path / "data") == []


def test_an_archive_with_a_duplicate_member_is_refused_before_writing(tmp_path, monkeypatch):
    with pytest.warns(UserWarning, match="Duplicate name"):
        body = zip_bytes([*LSP_MEMBERS, ("joints.mat", b"the second copy")])
    serve_locally(monkeypatch, body)
    with pytest.raises(DownloadError, match="joints.mat"):
        download_dataset("lsp", tmp_path, mirrors=["http://127.0.0.1:9/lsp.zip"],
                         sha256=hashlib.sha256(body).hexdigest(), progress=False)
    assert leftovers(tmp_path) == []
    archive, dest = tmp_path / "a.zip", tmp_path / "dest"
    archive.write_bytes(body)
    dest.mkdir()
    with pytest.raises(DownloadError, match="twice"):
        safe_extract(archive, dest)
    assert leftovers(dest) == []  # validated first: nothing written





def zip_special(name: str, mode: int) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (mode | 0o644) << 16
    return info, b""


@pytest.mark.parametrize(("archive", "words"), [
    (tar_bytes([tar_member("a.txt", size=1), tar_member("h", tarfile.LNKTYPE, "/etc/passwd")]), "absolute path"),
    (tar_bytes([tar_member("images", tarfile.DIRTYPE), tar_member("h", tarfile.LNKTYPE, "images")]), "hard link"),
    (tar_bytes([tar_member("a.txt", size=1), tar_member("a.txt", size=2)]), "twice"),
    (zip_bytes([("a.txt", b"x"), zip_special("dev", stat.S_IFCHR)]), "special file"),
    (zip_bytes([("a.txt", b"x"), zip_special("fifo", stat.S_IFIFO)]), "special file"),
], ids=["tar-hardlink-absolute", "tar-hardlink-to-folder", "tar-duplicate", "zip-char-device", "zip-fifo"])
def test_more_crafted_archives_are_refused_before_writing(tmp_path, archive, words):
    path, dest = tmp_path / "archive", tmp_path / "dest"
    path.write_bytes(archive)
    dest.mkdir()
    with pytest.raises(DownloadError, match=words):
        safe_extract(path, dest)
    assert leftovers(dest) == []
