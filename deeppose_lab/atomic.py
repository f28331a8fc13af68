"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Checkpoints, reports and exports all go through here, so a crash, a full disk or SIGKILL in the middle
of a save leaves the previous file intact. The bytes go to a temporary file in the same folder (same
file system, so the rename is atomic), are flushed to disk, and only then replace the target.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import OutputError


@contextlib.contextmanager
def atomic_open(path: Path | str) -> Iterator[BinaryIO]:
    """Open a temporary binary file beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:  # owns fd from here on: closed on every path, even if fchmod fails
            os.fchmod(fh.fileno(), 0o666 & ~current_umask())  # mkstemp makes 0600; give the usual permissions
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_folder(path.parent)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (best effort; some file systems refuse fsync on a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: Path | str, data: bytes) -> None:
    with atomic_open(path) as fh:
        fh.write(data)


def write_text(path: Path | str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_with(path: Path | str, writer: Callable[[BinaryIO], None]) -> None:
    """Atomically write whatever ``writer(fh)`` writes (torch.save, np.savez, PIL's save, savefig)."""
    with atomic_open(path) as fh:
        writer(fh)


def writable_folder(path: Path | str, what: str = "output folder") -> Path:
    """``path`` as a folder this process can write into, made if missing; checked before any long work starts, so
    a read-only or mistyped folder fails in a second with its name, not after minutes of inference."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: the {what} is a file, not a folder; choose another")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the {what} here ({exc.strerror or exc}); choose another") from None
    return path
