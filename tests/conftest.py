"""Shared fixtures: where the real LSP / LSP-extended data live, and a clean skip when they do not.

Real data is looked up in ``$DEEPPOSE_DATA`` when that variable is set (the Makefile exports it), else in
``../shared/data`` beside the checkout (CI's read-only copy). Tests never write there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def real_data_root() -> Path:
    """``$DEEPPOSE_DATA`` if set (even to a folder without the data: then the real-data tests skip)."""
    env = os.environ.get("DEEPPOSE_DATA")
    return Path(env).expanduser() if env else SHARED_DATA


def _where() -> str:
    env = os.environ.get("DEEPPOSE_DATA")
    return f"$DEEPPOSE_DATA={env}" if env else f"{SHARED_DATA} ($DEEPPOSE_DATA is not set)"


@pytest.fixture(scope="session")
def data_root() -> Path:
    return real_data_root()


@pytest.fixture(scope="session")
def lsp_root(data_root: Path) -> Path:
    """The real LSP folder (joints.mat + images/), or a skip saying where it was looked for."""
    folder = data_root / "lsp"
    if not (folder / "joints.mat").is_file() or not (folder / "images").is_dir():
        pytest.skip(f"real LSP data not found: no lsp/joints.mat and lsp/images/ under {_where()}")
    return folder


@pytest.fixture(scope="session")
def lspet_root(data_root: Path) -> Path:
    """The real LSP-extended folder (``lspet`` or the 400-image ``lspet400``), or a skip."""
    for name in ("lspet", "lspet400"):
        folder = data_root / name
        if (folder / "joints.mat").is_file() and (folder / "images").is_dir():
            return folder
    pytest.skip(f"real LSP-extended data not found: no lspet/ or lspet400/ with joints.mat and images/ "
                f"under {_where()}")
