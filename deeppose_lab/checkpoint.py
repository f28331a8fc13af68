"""Checkpoints: written atomically, read with ``weights_only=True``, checked before they are trusted.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so ``torch.load`` can read it
with ``weights_only=True``: a file that carries pickled code is refused instead of run. Every checkpoint
says what it is (``format``), which package version wrote it, which stage it belongs to and the model's
constructor arguments, so a foreign or mismatched file is named and explained rather than half-loaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .atomic import write_with

FORMAT = "deeppose_lab.checkpoint/1"
REQUIRED_KEYS = ("format", "version", "stage", "model_config", "model", "epoch", "complete")


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, unsafe or does not match what the caller needs."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)


def save_checkpoint(path: Path | str, payload: dict[str, Any]) -> None:
    """Write ``payload`` (plus format and version) so that the previous file survives any failure."""
    data = {"format": FORMAT, "version": __version__, **payload}
    try:
        write_with(path, lambda fh: torch.save(data, fh))
    except OSError as exc:
        raise CheckpointError(path, f"could not write checkpoint ({exc.strerror or exc}); the previous one is intact") \
            from None


def load_checkpoint(path: Path | str, stage: int | None = None) -> dict[str, Any]:
    """Read a checkpoint safely; refuse pickled code, foreign files and the wrong stage with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(path, "refused: the file holds more than weights (pickled code or objects), "
                                    f"so it was not loaded ({str(exc).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"not a readable checkpoint (truncated or corrupt: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(path, f"not a deeppose_lab checkpoint (format {found!r}, expected {FORMAT!r})")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(path, f"checkpoint lacks {missing}")
    if stage is not None and data["stage"] != stage:
        raise CheckpointError(path, f"holds stage {data['stage']}, expected stage {stage}")
    return data
