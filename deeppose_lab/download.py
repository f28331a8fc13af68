"""Fetch, safely unpack and verify LSP / LSP-extended for ``deeppose-lab download``.

What is verified is what training reads, not the archive's bytes: no trusted archive checksum survives
(the historical mirrors have rotted, and a re-zipped copy is just as good), so after extraction
``joints.mat`` must have its published SHA-256 and the images the published digest of what
``(cd images && sha256sum im*.jpg)`` prints. Any mirror, or an archive you already have (``--from FILE``),
therefore works. A small per-image list shipped in ``checksums/`` names the image that differs when that
digest does not match (the aggregate alone could not). An archive SHA-256 (``--sha256``) is optional, extra.

Archives are untrusted input, so extraction refuses anything that could write outside the target (absolute
paths, ``..``, links, devices). Extraction and verification happen in a temporary folder beside the target
that is renamed into place in one step: a crash, Ctrl-C or bad archive never leaves a half-unpacked or
unverified data set that later looks complete. Downloads have a stall timeout (no byte for N seconds) and a
whole-download deadline, so a mirror that trickles bytes cannot keep the command waiting for ever.
``verify_folder`` checks a folder already in place (``deeppose-lab download --verify``) without changing it.

When no source works, the error says exactly where to put the files by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .errors import DeepPoseError

__all__ = [
    "DATASETS",
    "STALL_TIMEOUT",
    "SUBSETS",
    "DatasetSpec",
    "DownloadError",
    "Verified",
    "download_dataset",
    "images_digest",
    "is_complete",
    "manual_instructions",
    "safe_extract",
    "verify_dataset",
    "verify_folder",
    "verify_root",
    "verify_subset",
    "write_checksums",
]

_CHUNK = 1 << 16
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_ALLOWED_SCHEMES = ("http://", "https://")
# Archive-tool droppings that are never the data set folder.
_JUNK_DIRS = frozenset({"__MACOSX"})
CHECKSUMS_DIR = Path(__file__).with_name("checksums")
# Hex digits of each image's SHA-256 kept in the per-image lists: enough to name a differing file, and small.
_LIST_HEX = 16
STALL_TIMEOUT = 30.0  # seconds without a single byte before a download is given up


class DownloadError(DeepPoseError, RuntimeError):
    """A data set could not be fetched, verified or unpacked; the message says what to do instead."""


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set comes from and what a complete, genuine copy looks like on disk.

    ``required`` lists paths relative to the data set folder (one ending in ``/`` must be a non-empty folder):
    enough to find the data set inside an archive. ``joints_sha256`` and ``images_sha256`` are the published
    digests every install is verified against; ``images_sha256`` is the SHA-256 of the lines
    ``(cd images && sha256sum im*.jpg)`` prints for the images ``image_pattern % 1 … image_pattern % image_count``.
    ``digest_list`` names each image's digest prefix, only to say which image differs. ``sha256`` (the
    archive's) is optional extra checking. ``deadline_s`` is the default whole-download deadline.
    """

    name: str
    title: str
    archive: str
    mirrors: tuple[str, ...]
    folder: str
    required: tuple[str, ...]
    joints_sha256: str
    images_sha256: str
    image_pattern: str
    image_count: int
    digest_list: Path | None
    deadline_s: float
    sha256: str | None = None

    def image_names(self, count: int | None = None) -> list[str]:
        """The published image names, in ``sha256sum im*.jpg`` order (the first ``count`` of them)."""
        return sorted(self.image_pattern % i for i in range(1, (count or self.image_count) + 1))


DATASETS: dict[str, DatasetSpec] = {
    "lsp": DatasetSpec(
        name="lsp",
        title="LSP",
        archive="lsp_dataset.zip",
        mirrors=(
            "http://sam.johnson.io/research/lsp_dataset.zip",
            "https://sam.johnson.io/research/lsp_dataset.zip",
        ),
        folder="lsp",
        required=("joints.mat", "images/im0001.jpg"),
        joints_sha256="ddcfcbe904106bfbf26561c8d11720ca62a11c7a861548064b3bae84cb396b2a",
        images_sha256="bffeb951d2f19456aca3aff580daadb4a759ff139ca2c4aa9076dd996b762ff3",
        image_pattern="im%04d.jpg",
        image_count=2000,
        digest_list=CHECKSUMS_DIR / "lsp.txt.gz",
        deadline_s=1800.0,
    ),
    "lspet": DatasetSpec(
        name="lspet",
        title="LSP-extended",
        archive="lspet_dataset.zip",
        mirrors=("http://sam.johnson.io/research/lspet_dataset.zip",),
        folder="lspet",
        required=("joints.mat", "images/"),
        joints_sha256="cc66465117888d9f43aac78c15c4548e37df5022640a193f2002fd084cba13ef",
        images_sha256="3533771070b7e44d26ba0296810607c461d0d7125727a6276082b321457f96af",
        image_pattern="im%05d.jpg",
        image_count=10000,
        digest_list=CHECKSUMS_DIR / "lspet.txt.gz",
        deadline_s=7200.0,
    ),
}

# Folders that hold the first N images of a data set (a course's small copy): their images can be checked
# against the per-image list, their joints.mat (a cut of the full one) has no published digest.
SUBSETS: dict[str, tuple[str, int]] = {"lspet400": ("lspet", 400)}


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
        f"Download {spec.archive} yourself and unpack it so that {_describe(spec, target)} exist "
        f"(or pass it with --from FILE), or set DEEPPOSE_DATA to a folder that already has {rels}."
    )


# --------------------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verified:
    """What a verification checked: ``images`` files, and ``joints`` whether joints.mat's digest was checked."""

    name: str
    folder: Path
    images: int
    joints: bool

    def describe(self) -> str:
        """One line for the command line: what was found genuine, and where."""
        what = f"{self.images} images" + (" and joints.mat" if self.joints else "")
        note = "" if self.joints else " (joints.mat not checked: this subset's labels have no published digest)"
        return f"{self.name}: {what} in {self.folder} match the published digests{note}"


def _sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in chunks so a large archive never sits in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _hash_images(images: Path, names: Sequence[str], progress: bool) -> dict[str, str]:
    """Each image's SHA-256; the bar appears only when hashing takes more than a second (10 000 images)."""
    from tqdm.auto import tqdm

    with tqdm(names, unit="img", desc=f"checking {images.parent.name}", file=sys.stderr, delay=1.0,
              disable=not progress, leave=False) as bar:
        return {name: _sha256_file(images / name) for name in bar}


def images_digest(digests: dict[str, str]) -> str:
    """The issue's aggregate: SHA-256 of the lines ``sha256sum im*.jpg`` prints (``<hex>  <name>``, by name)."""
    listing = "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
    return hashlib.sha256(listing.encode()).hexdigest()


def _read_digest_list(path: Path | None) -> dict[str, str]:
    """The shipped per-image list (``name hexprefix`` lines, ``#`` comments) or {} when there is none."""
    if path is None or not Path(path).is_file():
        return {}
    with gzip.open(path, "rt", encoding="ascii") as f:
        pairs = (line.split() for line in f if line.strip() and not line.startswith("#"))
        return {name: prefix for name, prefix in pairs}


def _present_images(images: Path) -> list[str]:
    """The files ``sha256sum im*.jpg`` would see, in its (C locale) order."""
    return sorted(p.name for p in images.glob("im*.jpg") if p.is_file())


def _first_of(names: Sequence[str], shown: Callable[[str], str], what: str) -> str:
    """'<first>: <what> (and 3 more: a, b, c)': name the first file, count and sample the rest."""
    more = names[1:]
    sample = ", ".join(more[:5]) + (", …" if len(more) > 5 else "")
    return f"{shown('images/' + names[0])}: {what}" + (f" (and {len(more)} more: {sample})" if more else "")


def _check_names(spec: DatasetSpec, folder: Path, expected: Sequence[str], shown: Callable[[str], str]) -> None:
    """Missing images, and ``im*.jpg`` files the published set does not have, are named before hashing."""
    for rel in ("joints.mat", "images"):
        if not (folder / rel).exists():
            raise DownloadError(f"{shown(rel)}: missing")
    present = _present_images(folder / "images")
    missing = sorted(set(expected) - set(present))
    if missing:
        raise DownloadError(_first_of(missing, shown, f"missing (the published {spec.title} has "
                                                      f"{expected[0]} … {expected[-1]})"))
    extra = sorted(set(present) - set(expected))
    if extra:
        raise DownloadError(_first_of(extra, shown, f"not part of the published {spec.title} "
                                                    f"({expected[0]} … {expected[-1]}); move it away"))


def _differing(spec: DatasetSpec, digests: dict[str, str]) -> list[str]:
    """The images whose digest disagrees with the shipped per-image list (names only, for messages)."""
    listed = _read_digest_list(spec.digest_list)
    if not listed:
        return []
    return [name for name, hexdigest in sorted(digests.items()) if listed.get(name) != hexdigest[:_LIST_HEX]]


def _check_images(spec: DatasetSpec, digests: dict[str, str], shown: Callable[[str], str]) -> None:
    """The authoritative aggregate check; on a mismatch the per-image list says which images differ."""
    actual = images_digest(digests)
    if actual == spec.images_sha256:
        return
    differing = _differing(spec, digests)
    if differing:
        raise DownloadError(_first_of(differing, shown, f"content differs from the published {spec.title} image"))
    raise DownloadError(f"{shown('images')}: the digest of its {len(digests)} images is {actual}, not the "
                        f"published {spec.images_sha256} (no single image could be named)")


def _path_shown(folder: Path) -> Callable[[str], str]:
    """Messages name files by their full path under ``folder``."""
    return lambda rel: str(folder / rel)


def verify_dataset(spec: DatasetSpec, folder: Path, progress: bool = False,
                   shown: Callable[[str], str] | None = None) -> Verified:
    """Check that ``folder`` is the published ``spec``: every image present, nothing extra, digests equal.

    Reads only. Raises ``DownloadError`` naming the first file that differs; ``shown`` turns a path relative to
    ``folder`` into the name messages use (an install names archive members, not its temporary folder).
    """
    folder = Path(folder)
    shown = shown or _path_shown(folder)
    expected = spec.image_names()
    _check_names(spec, folder, expected, shown)
    if _sha256_file(folder / "joints.mat") != spec.joints_sha256:
        raise DownloadError(f"{shown('joints.mat')}: content differs from the published {spec.title} joints.mat")
    _check_images(spec, _hash_images(folder / "images", expected, progress), shown)
    return Verified(spec.name, folder, len(expected), joints=True)


def verify_subset(spec: DatasetSpec, count: int, name: str, folder: Path, progress: bool = False) -> Verified:
    """Check a folder holding the first ``count`` images of ``spec`` against the per-image list alone."""
    folder = Path(folder)
    shown = _path_shown(folder)
    expected = spec.image_names(count)
    _check_names(spec, folder, expected, shown)
    if not _read_digest_list(spec.digest_list):
        raise DownloadError(f"no per-image list for {spec.title} ({spec.digest_list}), so {folder} cannot be checked")
    differing = _differing(spec, _hash_images(folder / "images", expected, progress))
    if differing:
        raise DownloadError(_first_of(differing, shown, f"content differs from the published {spec.title} image"))
    return Verified(name, folder, len(expected), joints=False)


def verify_folder(name: str, root: Path, progress: bool = False) -> Verified:
    """Verify ``<root>/<name>`` in place: a known data set, or a known subset such as ``lspet400``."""
    key = name.lower()
    if key in SUBSETS:
        parent, count = SUBSETS[key]
        return verify_subset(DATASETS[parent], count, key, Path(root) / key, progress)
    spec = _spec(key)
    folder = Path(root) / spec.folder
    if not folder.is_dir():
        raise DownloadError(f"{folder}: no {spec.title} here; install it with deeppose-lab download {spec.name}")
    return verify_dataset(spec, folder, progress)


def verify_root(root: Path, progress: bool = False) -> list[Verified]:
    """Verify every known data set (and subset) present under ``root``; an error if there is none."""
    root = Path(root)
    names = [*(spec.folder for spec in DATASETS.values()), *SUBSETS]
    present = [name for name in names if (root / name).is_dir()]
    if not present:
        raise DownloadError(f"no data set to verify under {root} (looked for {', '.join(n + '/' for n in names)})")
    return [verify_folder(name, root, progress) for name in present]


# --------------------------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """How long a download may take: ``stall`` seconds without a byte, ``deadline`` seconds in all.

    The deadline is checked after every read, so it can be overrun by at most one stall timeout.
    """

    stall: float
    deadline: float


def _fetch(url: str, dest: BinaryIO, limits: Limits, progress: bool) -> str:
    """Stream ``url`` into ``dest`` within ``limits`` and return the SHA-256 hex digest of what was written.

    ``read1`` returns whatever one socket read brings, so a trickling server cannot hold a single call
    for long and the deadline is checked all along; the socket timeout is the stall timeout.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "deeppose-lab"})
    digest = hashlib.sha256()
    end = time.monotonic() + limits.deadline
    received = 0
    try:
        opened = urllib.request.urlopen(request, timeout=min(limits.stall, limits.deadline))
    except TimeoutError:  # connected, but no response line and headers within the stall timeout
        raise DownloadError(f"{url}: no response for {limits.stall:g} s (stall timeout; --stall-timeout SECONDS to "
                            "wait longer)") from None
    with opened as response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        of_total = f" of {total}" if total is not None else ""
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], file=sys.stderr)
        try:
            while True:
                try:
                    chunk = response.read1(_CHUNK)
                except TimeoutError:
                    raise DownloadError(f"{url}: no data for {limits.stall:g} s after {received}{of_total} bytes "
                                        "(stall timeout; --stall-timeout SECONDS to wait longer)") from None
                if not chunk:
                    break
                digest.update(chunk)
                dest.write(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
                if time.monotonic() > end:
                    raise DownloadError(f"{url}: still downloading at the {limits.deadline:g} s deadline, after "
                                        f"{received}{of_total} bytes (--deadline SECONDS to allow longer, or "
                                        "--from a copy you already have)")
        finally:
            if bar is not None:
                bar.close()
        if total is not None and received != total:
            raise DownloadError(f"{url}: connection closed after {received} of {total} bytes")
    return digest.hexdigest()


def _check_archive_sha(actual: str, expected: str | None) -> None:
    """The optional archive checksum (``--sha256``): a mismatch means this source is not the archive wanted."""
    if expected is not None and actual != expected:
        raise DownloadError(f"SHA-256 mismatch (expected {expected}, got {actual})")


@contextlib.contextmanager
def _downloaded(spec: DatasetSpec, url: str, workdir: Path, expected: str | None, limits: Limits,
                progress: bool) -> Iterator[Path]:
    """The archive at ``url`` as a ``.part`` file in ``workdir``, deleted afterwards whatever happens."""
    if not url.lower().startswith(_ALLOWED_SCHEMES):
        raise DownloadError("only http:// and https:// mirrors are supported")
    fd, name = tempfile.mkstemp(prefix=f".{spec.archive}.", suffix=".part", dir=workdir)
    part = Path(name)
    try:
        if progress:
            print(f"Downloading {spec.archive} from {url}", file=sys.stderr)
        with os.fdopen(fd, "wb") as out:
            actual = _fetch(url, out, limits, progress)
        _check_archive_sha(actual, expected)
        yield part
    finally:
        part.unlink(missing_ok=True)


def _local_archive(source: str, expected: str | None) -> Path:
    """A local archive, used where it lies (never copied); checked against ``--sha256`` when one is given."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise DownloadError("no such archive file")
    if expected is not None:
        _check_archive_sha(_sha256_file(path), expected)
    return path


def _is_url(source: str) -> bool:
    """Anything with a scheme is a URL (and must be http or https); everything else is a local path."""
    return "://" in source


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


def _member_shown(tmp: Path, data_root: Path) -> Callable[[str], str]:
    """Messages about an unpacked archive name its members (``lsp_dataset/images/im0001.jpg``)."""
    inner = data_root.relative_to(tmp)
    return lambda rel: str(PurePosixPath(inner.as_posix()) / rel)


def _install(spec: DatasetSpec, archive: Path, root: Path, target: Path, progress: bool = False,
             label: str | None = None) -> None:
    """Extract ``archive`` beside ``target``, verify it there, and rename the folder into place in one step.

    ``label`` is how progress messages name the archive (a download's source, not its ``.part`` file).
    """
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.extract-", dir=root))
    try:
        if progress:
            print(f"Unpacking {label or archive.name} beside {target}", file=sys.stderr)
        safe_extract(archive, tmp)
        data_root = _find_data_root(spec, tmp)
        if data_root is None:
            raise DownloadError(
                f"{spec.archive} unpacked, but neither its top level nor a single folder in it has "
                f"{' and '.join(spec.required)}; it is not the {spec.title} archive this tool expects"
            )
        found = verify_dataset(spec, data_root, progress, _member_shown(tmp, data_root))
        if progress:
            print(f"Verified {found.images} images and joints.mat against the published {spec.title} digests",
                  file=sys.stderr)
        try:
            os.replace(data_root, target)
        except OSError as exc:
            if is_complete(spec, target):  # another process finished first; its copy is as good as ours
                return
            raise DownloadError(f"could not move the unpacked data set into {target}: {exc}") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _install_from(spec: DatasetSpec, source: str, root: Path, target: Path, expected: str | None, limits: Limits,
                  progress: bool) -> None:
    """Install from one source, a URL or a local archive; any failure raises with the reason."""
    try:
        if _is_url(source):
            with _downloaded(spec, source, root, expected, limits, progress) as archive:
                if progress and expected is not None:
                    print(f"Verified {spec.archive} against --sha256", file=sys.stderr)
                _install(spec, archive, root, target, progress, label=source.rsplit("/", 1)[-1])
        else:
            _install(spec, _local_archive(source, expected), root, target, progress, label=source)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise DownloadError(f"could not unpack the archive: {type(exc).__name__}: {exc}") from exc


def _reason(source: str, exc: BaseException) -> str:
    """One source's failure, in a few words that start with the source."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"{source}: HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{source}: {exc.reason}"
    if isinstance(exc, DownloadError):
        text = str(exc)
        return text if text.startswith(source) else f"{source}: {text}"
    return f"{source}: {type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------------------


def _spec(name: str) -> DatasetSpec:
    """The registry entry for ``name`` (any case), or an error listing the known ones."""
    key = name.lower()
    if key not in DATASETS:
        raise DownloadError(f"unknown data set {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[key]


def _normalised_sha256(sha256: str | None) -> str | None:
    """A user's archive checksum in lower case, or an error when it is not 64 hex digits."""
    if sha256 is None:
        return None
    expected = sha256.strip().lower()
    if not _SHA256_RE.match(expected):
        raise DownloadError(f"{sha256!r} is not a SHA-256 hex digest (64 hex characters)")
    return expected


def _refuse_incomplete_target(spec: DatasetSpec, target: Path, manual: str) -> None:
    """A non-empty folder in the way is the user's: never merged into or replaced."""
    if target.exists() and not (target.is_dir() and not any(target.iterdir())):
        missing = _missing(spec, target) if target.is_dir() else list(spec.required)
        raise DownloadError(
            f"{target} already exists but is incomplete (missing {', '.join(missing)}); it is left untouched. "
            f"Move it away and run the download again, or complete it by hand. {manual}"
        )


def download_dataset(name: str, root: Path, mirrors: Sequence[str | Path] | None = None,
                     timeout: float = STALL_TIMEOUT, progress: bool = True, sha256: str | None = None,
                     deadline: float | None = None) -> Path:
    """Make ``<root>/<folder>`` a complete, verified copy of data set ``name`` and return that folder.

    Returns at once if it is already complete (``verify_folder`` checks it). Otherwise each source is tried in
    turn: ``mirrors`` (http(s) URLs or local archive paths) overrides the registry's mirrors. A download gives
    up after ``timeout`` seconds without a byte or ``deadline`` seconds in all (default: the data set's).
    The archive is unpacked safely and its contents verified against the published digests before the one
    rename that installs it; ``sha256`` optionally checks the archive itself first. Raises ``DownloadError``
    with the reasons and manual-placement instructions on failure; no partial archive or folder is left.
    """
    spec = _spec(name)
    root = Path(root).expanduser()
    target = root / spec.folder
    if is_complete(spec, target):
        return target

    manual = manual_instructions(spec, root)
    _refuse_incomplete_target(spec, target, manual)
    expected = _normalised_sha256(sha256) or spec.sha256
    sources = [str(s) for s in (spec.mirrors if mirrors is None else mirrors)]
    if not sources:
        raise DownloadError(f"no mirrors to download {spec.title} from. {manual}")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {root}: {exc}. {manual}") from exc

    limits = Limits(stall=timeout, deadline=spec.deadline_s if deadline is None else deadline)
    if not (limits.stall > 0 and limits.deadline > 0):
        raise DownloadError(f"the stall timeout and the deadline must be positive seconds, got {limits.stall:g} and "
                            f"{limits.deadline:g}")
    reasons: list[str] = []
    for source in sources:
        try:
            _install_from(spec, source, root, target, expected, limits, progress)
            return target
        except (DownloadError, TimeoutError, OSError, HTTPException, ValueError) as exc:
            reasons.append(_reason(source, exc))
    where = "any mirror" if all(_is_url(s) for s in sources) else "any source given"
    raise DownloadError(f"could not install {spec.title} from {where} ({'; '.join(reasons)}). {manual}")


# --------------------------------------------------------------------------------------------------------------
# Regenerating the per-image lists
# --------------------------------------------------------------------------------------------------------------


def _digest_list_text(spec: DatasetSpec, digests: dict[str, str]) -> str:
    """The list's text: a header saying what it is, then ``name hexprefix`` per image in name order."""
    header = (f"# {spec.title}: each image and the first {_LIST_HEX} hex digits of its SHA-256, only to name the "
              f"image that differs\n# when the digest of all {spec.image_count} does not match. Regenerate with "
              "python -m deeppose_lab.download --write-checksums ROOT\n")
    return header + "".join(f"{name} {digests[name][:_LIST_HEX]}\n" for name in sorted(digests))


def _write_gzip(path: Path, text: str) -> None:
    """Gzip without a timestamp or file name, so regenerating from the same data gives the same bytes."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("ascii"))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, path)


def write_checksums(root: Path, out_dir: Path = CHECKSUMS_DIR, progress: bool = True) -> list[Path]:
    """Write ``<out_dir>/<folder>.txt.gz`` for every data set under ``root`` that reproduces its published digests.

    A copy that does not reproduce them is refused: the lists must only ever describe the published data.
    """
    root, out_dir = Path(root), Path(out_dir)
    written = []
    for spec in DATASETS.values():
        folder = root / spec.folder
        if not folder.is_dir():
            continue
        expected = spec.image_names()
        _check_names(spec, folder, expected, _path_shown(folder))
        digests = _hash_images(folder / "images", expected, progress)
        if _sha256_file(folder / "joints.mat") != spec.joints_sha256 or images_digest(digests) != spec.images_sha256:
            raise DownloadError(f"{folder} does not reproduce the published {spec.title} digests; no list written")
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{spec.folder}.txt.gz"
        _write_gzip(path, _digest_list_text(spec, digests))
        written.append(path)
    if not written:
        raise DownloadError(f"no data set under {root} (looked for {', '.join(s.folder for s in DATASETS.values())})")
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deeppose_lab.download --write-checksums ROOT``: regenerate the shipped per-image lists."""
    parser = argparse.ArgumentParser(prog="python -m deeppose_lab.download", description=main.__doc__)
    parser.add_argument("--write-checksums", metavar="ROOT", required=True, help="data root with lsp/ and/or lspet/")
    parser.add_argument("--out", default=str(CHECKSUMS_DIR), help="where the lists go (default: the package's)")
    args = parser.parse_args(argv)
    try:
        for path in write_checksums(Path(args.write_checksums), Path(args.out)):
            print(f"wrote {path}")
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
