"""Fetch, verify and safely unpack the LSP / LSP-extended archives for ``deeppose-lab download``.

Why so careful: the historical mirrors have rotted (a parked domain happily answers with an HTML page), so
every archive is checked against a known SHA-256 before it is opened, and archives are untrusted input, so
extraction refuses anything that could write outside the target (absolute paths, ``..``, links, devices).
Extraction happens in a temporary folder beside the target that is renamed into place in one step: a
crash, Ctrl-C or bad archive never leaves a half-unpacked data set that later looks complete.

When no mirror works, the error says exactly where to put the files by hand.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import DeepPoseError

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DownloadError",
    "download_dataset",
    "is_complete",
    "manual_instructions",
    "safe_extract",
]

_CHUNK = 1 << 16
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_ALLOWED_SCHEMES = ("http://", "https://")
# Archive-tool droppings that are never the data set folder.
_JUNK_DIRS = frozenset({"__MACOSX"})


class DownloadError(DeepPoseError, RuntimeError):
    """A data set could not be fetched, verified or unpacked; the message says what to do instead."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set comes from and what a complete copy looks like on disk.

    ``required`` lists paths relative to the data set folder; one ending in ``/`` must be a non-empty folder.
    ``sha256`` is ``None`` while no trusted checksum is known: downloads are then refused unless the caller
    supplies one, because an unverified archive from a rotted mirror could be anything.
    """

    name: str
    title: str
    archive: str
    mirrors: tuple[str, ...]
    sha256: str | None
    folder: str
    required: tuple[str, ...]


DATASETS: dict[str, DatasetSpec] = {
    "lsp": DatasetSpec(
        name="lsp",
        title="LSP",
        archive="lsp_dataset.zip",
        mirrors=(
            "http://sam.johnson.io/research/lsp_dataset.zip",
            "https://sam.johnson.io/research/lsp_dataset.zip",
        ),
        sha256=None,
        folder="lsp",
        required=("joints.mat", "images/im0001.jpg"),
    ),
    "lspet": DatasetSpec(
        name="lspet",
        title="LSP-extended",
        archive="lspet_dataset.zip",
        mirrors=("http://sam.johnson.io/research/lspet_dataset.zip",),
        sha256=None,
        folder="lspet",
        required=("joints.mat", "images/"),
    ),
}


# --------------------------------------------------------------------------------------------------------------
# Completeness and messages
# --------------------------------------------------------------------------------------------------------------


def _missing(spec: DatasetSpec, folder: Path) -> list[str]:
    """The required entries absent from ``folder`` (empty list: complete)."""
    missing = []
    for rel in spec.required:
        path = folder / rel.rstrip("/")
        if rel.endswith("/"):
            ok = path.is_dir() and any(path.iterdir())
        else:
            ok = path.is_file()
        if not ok:
            missing.append(rel)
    return missing


def is_complete(spec: DatasetSpec, folder: Path) -> bool:
    """Whether ``folder`` holds every file ``spec`` requires, so a download can be skipped."""
    return Path(folder).is_dir() and not _missing(spec, Path(folder))


def _describe(spec: DatasetSpec, target: Path) -> str:
    """'<target>/joints.mat and <target>/images/im0001.jpg' style list of the paths that must exist."""
    paths = [str(target / rel.rstrip("/")) + ("/ (with the images in it)" if rel.endswith("/") else "")
             for rel in spec.required]
    return " and ".join(paths)


def manual_instructions(spec: DatasetSpec, root: Path) -> str:
    """How to install ``spec`` by hand under ``root``: the fallback every failure message ends with."""
    target = Path(root) / spec.folder
    rels = " and ".join(f"{spec.folder}/{rel}" for rel in spec.required)
    return (
        f"Download {spec.archive} yourself and unpack it so that {_describe(spec, target)} exist, "
        f"or set DEEPPOSE_DATA to a folder that already has {rels}."
    )


# --------------------------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------------------------


def _fetch(url: str, dest: BinaryIO, timeout: float, progress: bool) -> str:
    """Stream ``url`` into ``dest`` and return the SHA-256 hex digest of what was written.

    Hashing while streaming means the archive is read once and verified before anyone opens it.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "deeppose-lab"})
    digest = hashlib.sha256()
    with urllib.request.urlopen(request, timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], file=sys.stderr)
        try:
            received = 0
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                dest.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
        finally:
            if bar is not None:
                bar.close()
        if total is not None and received != total:
            raise DownloadError(f"connection closed after {received} of {total} bytes")
    return digest.hexdigest()


def _download_verified(spec: DatasetSpec, mirrors: Sequence[str], expected: str, workdir: Path,
                       timeout: float, progress: bool) -> tuple[Path | None, list[str]]:
    """Try each mirror in turn; return the path of a verified archive in ``workdir`` (or None) and the reasons.

    A partial or mismatching file is deleted at once so nothing unverified lingers beside the data.
    """
    reasons: list[str] = []
    for url in mirrors:
        if not url.lower().startswith(_ALLOWED_SCHEMES):
            reasons.append(f"{url}: only http:// and https:// mirrors are supported")
            continue
        fd, name = tempfile.mkstemp(prefix=f".{spec.archive}.", suffix=".part", dir=workdir)
        part = Path(name)
        keep = False
        try:
            if progress:
                print(f"Downloading {spec.archive} from {url}", file=sys.stderr)
            with os.fdopen(fd, "wb") as out:
                actual = _fetch(url, out, timeout, progress)
            if actual != expected:
                reasons.append(f"{url}: SHA-256 mismatch (expected {expected}, got {actual})")
            else:
                keep = True
                return part, reasons
        except urllib.error.HTTPError as exc:
            reasons.append(f"{url}: HTTP {exc.code} {exc.reason}")
        except urllib.error.URLError as exc:
            reasons.append(f"{url}: {exc.reason}")
        except (TimeoutError, OSError, HTTPException, ValueError, DownloadError) as exc:
            reasons.append(f"{url}: {type(exc).__name__}: {exc}")
        finally:
            if not keep:
                part.unlink(missing_ok=True)
    return None, reasons


# --------------------------------------------------------------------------------------------------------------
# Safe extraction
# --------------------------------------------------------------------------------------------------------------


def _safe_parts(name: str) -> tuple[str, ...]:
    """Split an archive member name into path components, refusing anything that could leave the target.

    Backslashes count as separators and drive letters as absolute, so a Windows-made archive cannot sneak
    ``..\\evil`` or ``C:/evil`` past a POSIX-only check.
    """
    normalised = name.replace("\\", "/")
    if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        raise DownloadError(f"archive member {name!r} has an absolute path; refusing to extract")
    parts = tuple(p for p in PurePosixPath(normalised).parts if p not in ("", "."))
    if ".." in parts:
        raise DownloadError(f"archive member {name!r} contains '..'; refusing to extract")
    if any("\x00" in p for p in parts):
        raise DownloadError(f"archive member {name!r} contains a NUL byte; refusing to extract")
    return parts


def _inside(dest: Path, parts: tuple[str, ...]) -> Path:
    """``dest/parts`` after checking, on the resolved path, that it really stays inside ``dest``."""
    path = dest.joinpath(*parts)
    if not path.resolve().is_relative_to(dest.resolve()):
        raise DownloadError(f"archive member {'/'.join(parts)!r} would be written outside {dest}; refusing")
    return path


def _write_file(src: BinaryIO, path: Path) -> None:
    """Copy one member's bytes to ``path``; a separate function so tests can interrupt extraction here."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "xb") as out:
        shutil.copyfileobj(src, out, _CHUNK)


def _check_unique(files: set[tuple[str, ...]], parts: tuple[str, ...], name: str) -> None:
    """Record a file member; a second one with the same path is refused (which copy would win is up to the tool)."""
    if parts in files:
        raise DownloadError(f"archive member {name!r} appears twice; refusing to extract")
    files.add(parts)


def _extract_zip(archive: Path, dest: Path) -> None:
    """Validate every zip member first, then write: a bad member means nothing at all is written."""
    with zipfile.ZipFile(archive) as zf:
        plan: list[tuple[zipfile.ZipInfo, tuple[str, ...]]] = []
        files: set[tuple[str, ...]] = set()
        for info in zf.infolist():
            parts = _safe_parts(info.filename)
            mode = info.external_attr >> 16
            if mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                kind = "symlink" if stat.S_ISLNK(mode) else "special file"
                raise DownloadError(f"archive member {info.filename!r} is a {kind}; refusing to extract")
            if parts and not info.is_dir():
                _check_unique(files, parts, info.filename)
            if parts:
                plan.append((info, parts))
        for info, parts in plan:
            path = _inside(dest, parts)
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
            else:
                with zf.open(info) as src:
                    _write_file(src, path)


def _extract_tar(archive: Path, dest: Path) -> None:
    """Validate every tar member first, then write regular files and folders only.

    Symlinks are refused outright, even ones that look internal: a chain such as ``s -> .`` plus
    ``t -> s/../x`` passes a purely textual check yet escapes, and the data sets need no links. Hard links
    are allowed only to a regular file earlier in the same archive and are materialised as copies.
    """
    with tarfile.open(archive, "r:*") as tf:
        members = tf.getmembers()
        files: set[tuple[str, ...]] = set()
        plan: list[tuple[tarfile.TarInfo, tuple[str, ...]]] = []
        for m in members:
            parts = _safe_parts(m.name)
            if m.issym():
                raise DownloadError(f"archive member {m.name!r} is a symlink (-> {m.linkname!r}); refusing to extract")
            if m.islnk():
                link = _safe_parts(m.linkname)
                if link not in files:
                    raise DownloadError(
                        f"archive member {m.name!r} is a hard link to {m.linkname!r}, which is not a file earlier "
                        "in the archive; refusing to extract"
                    )
            elif not (m.isreg() or m.isdir()):
                raise DownloadError(f"archive member {m.name!r} is a device or special file; refusing to extract")
            if not parts:
                continue
            if m.isreg() or m.islnk():
                _check_unique(files, parts, m.name)
            plan.append((m, parts))
        for m, parts in plan:
            path = _inside(dest, parts)
            if m.isdir():
                path.mkdir(parents=True, exist_ok=True)
            elif m.islnk():
                source = _inside(dest, _safe_parts(m.linkname))
                with open(source, "rb") as src:
                    _write_file(src, path)
            else:
                src = tf.extractfile(m)
                if src is None:  # pragma: no cover - isreg() members always have data
                    raise DownloadError(f"archive member {m.name!r} has no data")
                with src:
                    _write_file(src, path)


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar(.gz/.bz2/.xz) ``archive`` into the existing folder ``dest``, refusing unsafe members.

    The format is sniffed from the content, not the name, since a mirror may serve anything under any name.
    """
    archive, dest = Path(archive), Path(dest)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, dest)
    elif tarfile.is_tarfile(archive):
        _extract_tar(archive, dest)
    else:
        raise DownloadError(f"{archive.name} is neither a zip nor a tar archive")


def _find_data_root(spec: DatasetSpec, unpacked: Path) -> Path | None:
    """The folder inside ``unpacked`` that holds the data set: itself, or its single meaningful subfolder.

    Archives differ in whether ``images/`` and ``joints.mat`` sit at the top or inside one folder.
    """
    if is_complete(spec, unpacked):
        return unpacked
    for child in sorted(unpacked.iterdir()):
        if child.is_dir() and child.name not in _JUNK_DIRS and is_complete(spec, child):
            return child
    return None


def _install(spec: DatasetSpec, archive: Path, root: Path, target: Path) -> None:
    """Extract ``archive`` beside ``target`` and rename the finished folder into place in one step."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.extract-", dir=root))
    try:
        safe_extract(archive, tmp)
        data_root = _find_data_root(spec, tmp)
        if data_root is None:
            raise DownloadError(
                f"{spec.archive} unpacked, but neither its top level nor a single folder in it has "
                f"{' and '.join(spec.required)}; it is not the {spec.title} archive this tool expects"
            )
        try:
            os.replace(data_root, target)
        except OSError as exc:
            if is_complete(spec, target):  # another process finished first; its copy is as good as ours
                return
            raise DownloadError(f"could not move the unpacked data set into {target}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def download_dataset(name: str, root: Path, mirrors: list[str] | None = None, timeout: float = 10.0,
                     progress: bool = True, sha256: str | None = None) -> Path:
    """Make ``<root>/<folder>`` a complete copy of data set ``name`` and return that folder.

    Returns at once if it is already complete. Otherwise each mirror is tried in turn (``mirrors`` overrides
    the registry's list), the archive is verified against ``sha256`` (or the registry's checksum) and only then
    unpacked. Downloads with no known checksum are refused rather than trusted. Raises ``DownloadError`` with
    manual-placement instructions on any failure; no partial archive or folder is left behind.
    """
    key = name.lower()
    if key not in DATASETS:
        raise DownloadError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    spec = DATASETS[key]
    root = Path(root).expanduser()
    target = root / spec.folder
    if is_complete(spec, target):
        return target

    manual = manual_instructions(spec, root)
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        missing = _missing(spec, target) if target.is_dir() else list(spec.required)
        raise DownloadError(
            f"{target} already exists but is incomplete (missing {', '.join(missing)}); it is left untouched. "
            f"Move it away and run the download again, or complete it by hand. {manual}"
        )

    expected = sha256 if sha256 is not None else spec.sha256
    if expected is None:
        raise DownloadError(
            f"no SHA-256 checksum is known for {spec.archive}, so a download could not be verified and is refused. "
            f"If you have a trusted checksum, pass it explicitly (--sha256 HEX on the command line). {manual}"
        )
    expected = expected.strip().lower()
    if not _SHA256_RE.match(expected):
        raise DownloadError(f"{sha256!r} is not a SHA-256 hex digest (64 hex characters)")

    urls = list(spec.mirrors if mirrors is None else mirrors)
    if not urls:
        raise DownloadError(f"no mirrors to download {spec.title} from. {manual}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {root}: {exc}. {manual}") from exc

    archive, reasons = _download_verified(spec, urls, expected, root, timeout, progress)
    if archive is None:
        raise DownloadError(
            f"could not download {spec.title} from any mirror ({'; '.join(reasons)}). {manual}"
        )
    try:
        if progress:
            print(f"Verified {spec.archive}; unpacking into {target}", file=sys.stderr)
        try:
            _install(spec, archive, root, target)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            raise DownloadError(f"could not unpack {spec.archive}: {type(exc).__name__}: {exc}. {manual}") from exc
    finally:
        archive.unlink(missing_ok=True)
    return target
