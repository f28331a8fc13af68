"""Checkpoints: written atomically, read with ``weights_only=True``, checked before they are trusted.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so ``torch.load`` can read it
with ``weights_only=True``: a file that carries pickled code is refused instead of run. Every checkpoint
says what it is (``format``), which package version wrote it, which stage it belongs to and the model's
constructor arguments, so a foreign or mismatched file is named and explained rather than half-loaded.
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from . import __version__
from .atomic import write_with
from .errors import DeepPoseError

FORMAT = "deeppose_lab.checkpoint/1"
RETRAIN = "delete it and run `deeppose-lab train` again with the same --out to retrain that stage"
REQUIRED_KEYS = ("format", "version", "stage", "model_config", "model", "epoch", "complete")


class CheckpointError(DeepPoseError, ValueError):
    """A checkpoint is missing, unreadable, unsafe or does not match what the caller needs."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict's names and tensor bytes. PyTorch's archive does not check the bytes of a tensor,
    so a damaged or edited weight would otherwise load and silently give other predictions."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        flat = tensor.reshape(-1)  # 0-d tensors (BatchNorm's batch counter) cannot be viewed as bytes directly
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def digest_matches(state: object, expected: object) -> bool:
    try:
        return isinstance(state, dict) and weights_digest(state) == expected
    except (AttributeError, TypeError, RuntimeError):  # not names → tensors: not the weights the digest was made of
        return False


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format, version and the weights' digest) so that the previous file survives any
    failure."""
    data = {"format": FORMAT, "version": __version__, **payload}
    if isinstance(payload.get("model"), dict):
        data["model_sha256"] = weights_digest(payload["model"])
    try:
        write_with(path, lambda fh: save_reporting_os_errors(data, fh))
    except OSError as exc:
        raise CheckpointError(path, f"could not write checkpoint ({exc.strerror or exc}); the previous one is intact") \
            from None


class _WriteErrorRecorder:
    """A file proxy that remembers the OSError a write raised: torch.save turns it into a RuntimeError."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self.fh.write(data)
        except OSError as exc:
            self.error = exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fh, name)


def save_reporting_os_errors(data: dict[str, Any], fh: BinaryIO) -> None:
    """``torch.save(data, fh)``, but a full disk (ENOSPC in a write) surfaces as that OSError.

    Otherwise torch reports it as ``RuntimeError: [enforce fail at inline_container.cc] unexpected pos``.
    """
    recorder = _WriteErrorRecorder(fh)
    try:
        torch.save(data, recorder)
    except Exception:
        if recorder.error is not None:
            raise recorder.error from None
        raise


def load_checkpoint(path: Path | str, stage: int | None = None) -> dict[str, Any]:
    """Read a checkpoint safely; refuse pickled code, foreign files and the wrong stage with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(path):  # torch.save always writes a zip; garbage also fails the safe unpickler
            raise CheckpointError(path, "not a readable checkpoint (not a PyTorch zip archive: truncated, corrupt "
                                        f"or another format); {RETRAIN}") from None
        raise CheckpointError(path, "refused: the file holds more than weights (pickled code or objects), "
                                    f"so it was not loaded ({describe(exc)})") from None
    except Exception as exc:  # the safe unpickler reports garbage as KeyError, IndexError, EOFError, RuntimeError ...
        raise CheckpointError(path, f"not a readable checkpoint (truncated or corrupt; {describe(exc)}); {RETRAIN}") \
            from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(path, f"not a deeppose_lab checkpoint (format {found!r}, expected {FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(path, f"checkpoint lacks {missing}")
    if stage is not None and data["stage"] != stage:
        raise CheckpointError(path, f"holds stage {data['stage']}, expected stage {stage}")
    if "model_sha256" in data and not digest_matches(data["model"], data["model_sha256"]):
        raise CheckpointError(path, f"its weights do not match the digest written with them: the file was damaged or "
                                    f"changed after it was saved; {RETRAIN}")
    return data


def describe(exc: BaseException) -> str:
    """An exception's type and the first line of its message (torch's run to many lines)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
