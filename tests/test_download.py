"""The engine behind ``deeppose-lab download``, against archives served from 127.0.0.1 (never the internet).

What must hold: an archive whose unpacked files match the published digests is installed in one rename,
from a mirror or a local file, with no archive checksum needed; a differing, missing or extra file is named;
a checksum mismatch, an unreachable, trickling or stalled mirror or a bad archive raises ``DownloadError``
with manual-placement instructions and leaves NOTHING behind (no ``.part`` file, no extraction folder, no
half data set); crafted archives that would write outside the target (absolute paths, ``..``, links,
devices) are refused before a single byte is written; ``download --verify`` checks a folder in place.

Most tests swap the registry's LSP / LSP-extended for tiny fake data sets with computed digests (the
``fake_sets`` fixture); the ``real_*`` tests use the real data when it is there (``$DEEPPOSE_DATA`` or
``../shared/data``) and skip otherwise.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import socket
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import tar_member

from deeppose_lab import cli, download
from deeppose_lab.download import (
    DATASETS,
    DatasetSpec,
    DownloadError,
    download_dataset,
    is_complete,
    manual_instructions,
    safe_extract,
    verify_folder,
    write_checksums,
)

REAL_SETS = dict(DATASETS)  # the registry as shipped, before any test swaps in fake data sets
REAL_SUBSETS = dict(download.SUBSETS)

LSP_FILES = {"joints.mat": b"MATLAB 5.0 MAT-file (fake)", "images/im0001.jpg": b"\xff\xd8jpeg1",
             "images/im0002.jpg": b"\xff\xd8jpeg2", "README.txt": b"Leeds Sports Pose"}
LSPET_FILES = {"joints.mat": b"fake mat", "images/im00001.jpg": b"\xff\xd8a", "README.txt": b"LSP extended"}


# --- archives --------------------------------------------------------------------------------------

def make_zip(files: dict[str, bytes], prefix: str = "", extra: list[zipfile.ZipInfo | tuple] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(prefix + name, data)
        for item in extra or []:
            info, data = item if isinstance(item, tuple) else (item, b"")
            zf.writestr(info, data)
    return buf.getvalue()


def make_tar(files: dict[str, bytes], prefix: str = "", extra: list[tarfile.TarInfo] | None = None,
             mode: str = "w:gz") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(prefix + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tf.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return buf.getvalue()





def zip_symlink(name: str, target: str) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix, so the mode bits count
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, target.encode()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- a tiny local mirror ------------------------------------------------------------------------------

class Mirror:
    """Serves registered byte strings over HTTP on 127.0.0.1 from a background thread."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, int | None]] = {}
        self.handlers: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.hits: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                mirror.hits.append(self.path)
                if self.path in mirror.handlers:
                    return mirror.handlers[self.path](self)
                status, body, length = mirror.routes.get(self.path, (404, b"not here", None))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def serve(self, path: str, body: bytes, status: int = 200, length: int | None = None) -> str:
        self.routes[path] = (status, body, length)
        return self.base + path

    def serve_with(self, path: str, respond: Callable[[BaseHTTPRequestHandler], None]) -> str:
        """Answer ``path`` with ``respond(handler)``: for servers that trickle or stall."""
        self.handlers[path] = respond
        return self.base + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def mirror():
    m = Mirror()
    yield m
    m.close()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/lsp_dataset.zip"


def leftovers(root: Path, keep: tuple[str, ...] = ()) -> list[str]:
    """Everything in ``root`` except ``keep``: .part files, .extract- folders, half data sets."""
    return sorted(p.name for p in root.iterdir() if p.name not in keep) if root.exists() else []


def assert_has_manual_instructions(message: str, root: Path) -> None:
    assert str(root / "lsp" / "joints.mat") in message, message
    assert "DEEPPOSE_DATA" in message and "lsp_dataset.zip" in message, message


# --- tiny fake data sets in place of the real ones -------------------------------------------------------------

def lay_out(folder: Path, files: dict[str, bytes]) -> Path:
    for name, body in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(body)
    return folder


def fake_spec(real: DatasetSpec, files: dict[str, bytes], lists: Path) -> DatasetSpec:
    """``real`` with the digests of ``files`` (its images must be im0001.jpg … in the real naming)."""
    digests = {Path(name).name: sha(body) for name, body in files.items() if name.startswith("images/")}
    return dataclasses.replace(real, joints_sha256=sha(files["joints.mat"]), image_count=len(digests),
                               images_sha256=download.images_digest(digests),
                               digest_list=lists / f"{real.folder}.txt.gz")


@pytest.fixture(autouse=True)
def fake_sets(tmp_path_factory, monkeypatch) -> dict[str, DatasetSpec]:
    """LSP and LSP-extended become LSP_FILES and LSPET_FILES; their per-image lists are written by
    ``write_checksums`` itself, from a 'published' copy."""
    lists, published = tmp_path_factory.mktemp("lists"), tmp_path_factory.mktemp("published")
    specs = {"lsp": fake_spec(REAL_SETS["lsp"], LSP_FILES, lists),
             "lspet": fake_spec(REAL_SETS["lspet"], LSPET_FILES, lists)}
    for name, spec in specs.items():
        monkeypatch.setitem(DATASETS, name, spec)
    monkeypatch.setattr(download, "SUBSETS", {"lspet400": ("lspet", 1)})
    lay_out(published / "lsp", LSP_FILES)
    lay_out(published / "lspet", LSPET_FILES)
    assert write_checksums(published, lists, progress=False) == [lists / "lsp.txt.gz", lists / "lspet.txt.gz"]
    return specs


@pytest.fixture
def real_sets(monkeypatch) -> None:
    """The registry as shipped (undoing ``fake_sets``), for the tests on the real data."""
    for name, spec in REAL_SETS.items():
        monkeypatch.setitem(DATASETS, name, spec)
    monkeypatch.setattr(download, "SUBSETS", REAL_SUBSETS)


# --- completeness and messages ------------------------------------------------------------------------

def test_is_complete_and_manual_instructions(tmp_path):
    spec = DATASETS["lspet"]
    folder = tmp_path / "lspet"
    assert not is_complete(spec, folder)
    (folder / "images").mkdir(parents=True)
    (folder / "joints.mat").write_bytes(b"x")
    assert not is_complete(spec, folder)  # "images/" must be a non-empty folder
    (folder / "images" / "im00001.jpg").write_bytes(b"x")
    assert is_complete(spec, folder)
    text = manual_instructions(spec, tmp_path)
    assert str(folder / "joints.mat") in text and str(folder / "images") in text and "lspet_dataset.zip" in text


def test_registry_has_the_published_digests_and_a_per_image_list_for_every_image():
    for spec in REAL_SETS.values():
        assert spec.sha256 is None or len(spec.sha256) == 64
        assert len(spec.joints_sha256) == 64 and len(spec.images_sha256) == 64
        assert all(url.startswith(("http://", "https://")) for url in spec.mirrors)
        with gzip.open(spec.digest_list, "rt") as f:
            rows = [line.split() for line in f if not line.startswith("#")]
        assert [name for name, _ in rows] == spec.image_names() and len(rows) == spec.image_count
        assert all(len(prefix) == 16 and int(prefix, 16) >= 0 for _, prefix in rows)
    assert REAL_SETS["lsp"].image_names()[-1] == "im2000.jpg" and REAL_SETS["lspet"].image_names()[0] == "im00001.jpg"
    assert sum(spec.digest_list.stat().st_size for spec in REAL_SETS.values()) < 200_000


# --- installing good archives --------------------------------------------------------------------------

def test_good_zip_is_verified_and_installed_in_one_rename(tmp_path, mirror, monkeypatch):
    data = make_zip(LSP_FILES)
    url = mirror.serve("/good/lsp_dataset.zip", data)
    root = tmp_path / "data"
    target = root / "lsp"
    real_replace = os.replace
    renames = []

    def spy(src, dst):
        if Path(dst) == target:
            assert not target.exists()  # nothing was visible at the target before the one rename
            assert is_complete(DATASETS["lsp"], Path(src))
        renames.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(download.os, "replace", spy)
    assert download_dataset("LSP", root, mirrors=[url], sha256=sha(data).upper(), progress=False) == target
    assert [dst for _, dst in renames] == [target]
    for name, body in LSP_FILES.items():
        assert (target / name).read_bytes() == body
    assert leftovers(root) == ["lsp"]  # no .part archive, no extraction folder


def test_nested_zip_with_macos_junk_and_progress_output(tmp_path, mirror, capsys):
    junk = {"__MACOSX/lsp_dataset/._joints.mat": b"junk"}
    data = make_zip({**{f"lsp_dataset/{k}": v for k, v in LSP_FILES.items()}, **junk})
    url = mirror.serve("/nested/lsp_dataset.zip", data)
    target = download_dataset("lsp", tmp_path, mirrors=[url], sha256=sha(data), progress=True)
    assert (target / "images" / "im0002.jpg").read_bytes() == LSP_FILES["images/im0002.jpg"]
    assert not (target / "__MACOSX").exists()
    assert leftovers(tmp_path) == ["lsp"]
    assert "Verified lsp_dataset.zip" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w"])
def test_tar_archives_install_too(tmp_path, mirror, mode):
    data = make_tar(LSPET_FILES, prefix="lspet_dataset/", mode=mode)
    url = mirror.serve(f"/tar/{mode}/lspet_dataset.zip", data)  # the format is sniffed, not taken from the name
    target = download_dataset("lspet", tmp_path, mirrors=[url], sha256=sha(data), progress=False)
    assert target == tmp_path / "lspet" and is_complete(DATASETS["lspet"], target)
    assert leftovers(tmp_path) == ["lspet"]


def test_complete_target_returns_without_touching_the_network(tmp_path, closed_port_url):
    target = tmp_path / "lsp"
    for name, body in LSP_FILES.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(body)
    assert download_dataset("lsp", tmp_path, mirrors=[closed_port_url], progress=False) == target


def test_an_empty_target_folder_is_replaced(tmp_path, mirror):
    data = make_zip(LSP_FILES)
    (tmp_path / "lsp").mkdir()
    url = mirror.serve("/empty-target/lsp_dataset.zip", data)
    assert is_complete(DATASETS["lsp"], download_dataset("lsp", tmp_path, mirrors=[url], sha256=sha(data),
                                                         progress=False))


def test_later_mirror_is_used_when_earlier_ones_fail(tmp_path, mirror):
    data = make_zip(LSP_FILES)
    bad = mirror.serve("/fallback/bad.zip", b"<html>parked domain</html>")
    missing = mirror.base + "/fallback/404.zip"
    good = mirror.serve("/fallback/lsp_dataset.zip", data)
    target = download_dataset("lsp", tmp_path, mirrors=["ftp://old.example/lsp.zip", missing, bad, good],
                              sha256=sha(data), progress=False)
    assert is_complete(DATASETS["lsp"], target) and leftovers(tmp_path) == ["lsp"]


# --- failures leave nothing behind ---------------------------------------------------------------------

def test_wrong_checksum_deletes_the_download_and_installs_nothing(tmp_path, mirror, monkeypatch):
    data = make_zip(LSP_FILES)
    url = mirror.serve("/wrong-sha/lsp_dataset.zip", data)
    real_fetch = download._fetch
    seen_parts = []

    def fetch(*args, **kwargs):
        digest = real_fetch(*args, **kwargs)
        args[1].flush()
        seen_parts.extend(p for p in tmp_path.iterdir() if p.name.endswith(".part") and p.stat().st_size > 0)
        return digest

    monkeypatch.setattr(download, "_fetch", fetch)
    with pytest.raises(DownloadError) as info:
        download_dataset("lsp", tmp_path, mirrors=[url], sha256="0" * 64, progress=False)
    message = str(info.value)
    assert "SHA-256 mismatch" in message and sha(data) in message and url in message
    assert_has_manual_instructions(message, tmp_path)
    assert len(seen_parts) == 1  # the archive really was on disk, and then ...
    assert leftovers(tmp_path) == []  # ... deleted; no data set either


def test_unreachable_mirror_fails_fast_and_says_where_to_put_the_files(tmp_path, closed_port_url):
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download_dataset("lsp", tmp_path, mirrors=[closed_port_url], sha256="a" * 64, timeout=5, progress=False)
    assert time.monotonic() - start < 3
    message = str(info.value)
    assert closed_port_url in message and "any mirror" in message
    assert_has_manual_instructions(message, tmp_path)
    assert leftovers(tmp_path) == []


def test_connection_closed_early_is_an_error(tmp_path, mirror):
    data = make_zip(LSP_FILES)
    url = mirror.serve("/short/lsp_dataset.zip", data, length=len(data) + 1000)
    with pytest.raises(DownloadError, match="short/lsp_dataset.zip"):
        download_dataset("lsp", tmp_path, mirrors=[url], sha256=sha(data), progress=False)
    assert leftovers(tmp_path) == []


def test_no_archive_checksum_is_needed_but_a_malformed_one_is_refused(tmp_path, mirror, closed_port_url):
    assert REAL_SETS["lsp"].sha256 is None  # no trusted archive checksum: the unpacked files are what is verified
    url = mirror.serve("/no-sha/lsp_dataset.zip", make_zip(LSP_FILES))
    assert is_complete(DATASETS["lsp"], download_dataset("lsp", tmp_path / "ok", mirrors=[url], progress=False))
    with pytest.raises(DownloadError, match="not a SHA-256 hex digest"):
        download_dataset("lsp", tmp_path, mirrors=[closed_port_url], sha256="abc", progress=False)
    with pytest.raises(DownloadError, match="no mirrors"):
        download_dataset("lsp", tmp_path, mirrors=[], sha256="a" * 64, progress=False)
    assert leftovers(tmp_path) == ["ok"]


def test_unknown_data_set(tmp_path):
    with pytest.raises(DownloadError, match=r"unknown data set 'flic'.*lsp, lspet"):
        download_dataset("flic", tmp_path)


def test_incomplete_existing_folder_is_left_untouched(tmp_path, closed_port_url):
    target = tmp_path / "lsp"
    target.mkdir()
    (target / "joints.mat").write_bytes(b"mine")
    with pytest.raises(DownloadError, match=r"already exists but is incomplete \(missing images/im0001.jpg\)"):
        download_dataset("lsp", tmp_path, mirrors=[closed_port_url], sha256="a" * 64, progress=False)
    assert leftovers(target) == ["joints.mat"] and (target / "joints.mat").read_bytes() == b"mine"


@pytest.mark.parametrize(("body", "words"), [
    (make_zip({"other/thing.txt": b"x"}), "not the LSP archive"),
    (b"<html>this domain is for sale</html>", "neither a zip nor a tar"),
    (make_zip(LSP_FILES)[:-30], "could not unpack|neither a zip"),
])
def test_archive_that_is_not_the_data_set(tmp_path, mirror, body, words):
    url = mirror.serve(f"/not-it/{sha(body)}.zip", body)
    with pytest.raises(DownloadError, match=words):
        download_dataset("lsp", tmp_path, mirrors=[url], sha256=sha(body), progress=False)
    assert leftovers(tmp_path) == []


def test_malicious_archive_through_the_whole_path(tmp_path, mirror):
    data = make_zip(LSP_FILES, extra=[(zipfile.ZipInfo("../escaped.txt"), b"gotcha")])
    url = mirror.serve("/evil/lsp_dataset.zip", data)
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match=r"'\.\.'"):
        download_dataset("lsp", root, mirrors=[url], sha256=sha(data), progress=False)
    assert leftovers(root) == [] and not (tmp_path / "escaped.txt").exists()


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_interrupted_extraction_leaves_no_half_data_set(tmp_path, mirror, monkeypatch, interrupt):
    data = make_zip(LSP_FILES)
    url = mirror.serve("/interrupted/lsp_dataset.zip", data)
    real_write = download._write_file
    written = []

    def write_then_die(src, path):
        if written:
            raise interrupt("disk full / Ctrl-C in the middle of unpacking")
        real_write(src, path)
        written.append(path)

    monkeypatch.setattr(download, "_write_file", write_then_die)
    expected = DownloadError if interrupt is OSError else KeyboardInterrupt
    with pytest.raises(expected):
        download_dataset("lsp", tmp_path, mirrors=[url], sha256=sha(data), progress=False)
    assert len(written) == 1  # one file had been unpacked ...
    assert leftovers(tmp_path) == []  # ... and is gone, with the archive: no half data set at the target
    monkeypatch.setattr(download, "_write_file", real_write)
    assert is_complete(DATASETS["lsp"], download_dataset("lsp", tmp_path, mirrors=[url], sha256=sha(data),
                                                         progress=False))  # a retry just works


# --- crafted archives ---------------------------------------------------------------------------------

def _tar_cases():
    escaping_pair = [tar_member("s", tarfile.SYMTYPE, "."), tar_member("t", tarfile.SYMTYPE, "s/../x")]
    return {
        "absolute": ([tar_member("/tmp/deeppose-evil.txt", size=3)], "absolute path"),
        "dotdot": ([tar_member("images/../../evil.txt", size=3)], r"'\.\.'"),
        "backslash": ([tar_member("..\\evil.txt", size=3)], r"'\.\.'"),
        "drive": ([tar_member("C:/evil.txt", size=3)], "absolute path"),
        "symlink-out": ([tar_member("images/link", tarfile.SYMTYPE, "/etc")], "symlink"),
        "symlink-up": ([tar_member("link", tarfile.SYMTYPE, "../..")], "symlink"),
        "symlink-chain": (escaping_pair, "symlink"),
        "hardlink-out": ([tar_member("h", tarfile.LNKTYPE, "../../etc/passwd")], r"'\.\.'"),
        "hardlink-unknown": ([tar_member("h", tarfile.LNKTYPE, "nowhere.txt")], "hard link"),
        "device": ([tar_member("dev", tarfile.CHRTYPE)], "device or special"),
        "fifo": ([tar_member("fifo", tarfile.FIFOTYPE)], "device or special"),
    }


@pytest.mark.parametrize("case", list(_tar_cases()))
def test_crafted_tar_is_refused_before_writing_anything(tmp_path, case):
    members, words = _tar_cases()[case]
    archive = tmp_path / "a.tar"
    archive.write_bytes(make_tar(LSP_FILES, extra=members, mode="w"))
    assert [m.name for m in tarfile.open(archive).getmembers()][-len(members):] == [m.name for m in members]
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DownloadError, match=words):
        safe_extract(archive, dest)
    assert leftovers(dest) == []  # validated first: not even the good members were written
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/deeppose-evil.txt").exists()


@pytest.mark.parametrize(("extra", "words"), [
    ([(zipfile.ZipInfo("/tmp/deeppose-evil.txt"), b"x")], "absolute path"),
    ([(zipfile.ZipInfo("images/../../evil.txt"), b"x")], r"'\.\.'"),
    ([(zipfile.ZipInfo("..\\evil.txt"), b"x")], r"'\.\.'"),
    ([(zipfile.ZipInfo("C:/evil.txt"), b"x")], "absolute path"),
    ([zip_symlink("images/link", "/etc")], "symlink"),
    ([zip_symlink("link", "../../..")], "symlink"),
], ids=["absolute", "dotdot", "backslash", "drive", "symlink-out", "symlink-up"])
def test_crafted_zip_is_refused_before_writing_anything(tmp_path, extra, words):
    archive = tmp_path / "a.zip"
    archive.write_bytes(make_zip(LSP_FILES, extra=extra))
    assert zipfile.ZipFile(archive).namelist()[-1] == extra[0][0].filename  # the crafted name survived as written
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(DownloadError, match=words):
        safe_extract(archive, dest)
    assert leftovers(dest) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/deeppose-evil.txt").exists()


def test_tar_hard_link_to_an_earlier_file_becomes_a_copy(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(make_tar({"images/a.jpg": b"abc"}, extra=[tar_member("images/b.jpg", tarfile.LNKTYPE,
                                                                             "images/a.jpg")], mode="w"))
    dest = tmp_path / "dest"
    dest.mkdir()
    safe_extract(archive, dest)
    assert (dest / "images" / "b.jpg").read_bytes() == b"abc"
    assert not (dest / "images" / "b.jpg").is_symlink() and (dest / "images" / "b.jpg").stat().st_nlink == 1


def test_plain_folders_and_dot_entries_extract(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("./", b"")
        zf.writestr("lsp/", b"")
        zf.writestr("lsp/./images/im0001.jpg", b"j")
    archive = tmp_path / "a.zip"
    archive.write_bytes(buf.getvalue())
    dest = tmp_path / "dest"
    dest.mkdir()
    safe_extract(archive, dest)
    assert (dest / "lsp" / "images" / "im0001.jpg").read_bytes() == b"j"


def test_neither_zip_nor_tar(tmp_path):
    archive = tmp_path / "x.zip"
    archive.write_bytes(b"plain text")
    with pytest.raises(DownloadError, match="neither a zip nor a tar"):
        safe_extract(archive, tmp_path)


# --- installing from a local archive or any URL, verified after unpacking ---------------------------------------

def one_line_error(capsys, argv: list[str]) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("deeppose-lab download: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_a_local_zip_installs_in_place_without_a_copy(tmp_path, capsys):
    archive = tmp_path / "lsp_dataset.zip"
    archive.write_bytes(make_zip(LSP_FILES, prefix="lsp_dataset/"))
    root = tmp_path / "data"
    assert cli.main(["download", "lsp", "--from", str(archive), "--root", str(root), "--quiet"]) == 0
    assert f"lsp is ready in {root / 'lsp'}" in capsys.readouterr().out
    assert all((root / "lsp" / name).read_bytes() == body for name, body in LSP_FILES.items())
    assert leftovers(root) == ["lsp"] and archive.is_file()  # nothing copied beside the data, the archive kept


def test_any_url_works_without_an_archive_checksum_and_verification_shows(tmp_path, mirror, capsys):
    url = mirror.serve("/any/lspet.tar.gz", make_tar(LSPET_FILES, prefix="lspet_dataset/"))
    assert cli.main(["download", "lspet", "--from", url, "--root", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "Verified 1 images and joints.mat against the published LSP-extended digests" in err
    assert is_complete(DATASETS["lspet"], tmp_path / "lspet") and leftovers(tmp_path) == ["lspet"]


@pytest.mark.parametrize(("edit", "words"), [
    ({"images/im0002.jpg": b"\xff\xd8tampered"}, "lsp_dataset/images/im0002.jpg: content differs from the "
                                                 "published LSP image"),
    ({"images/im0002.jpg": None}, "lsp_dataset/images/im0002.jpg: missing"),
    ({"images/im0003.jpg": b"\xff\xd8new"}, "lsp_dataset/images/im0003.jpg: not part of the published LSP"),
    ({"joints.mat": b"other labels"}, "lsp_dataset/joints.mat: content differs from the published LSP joints.mat"),
], ids=["tampered", "missing", "extra", "joints"])
def test_a_differing_file_is_named_and_nothing_is_installed(tmp_path, mirror, monkeypatch, edit, words):
    files = {k: v for k, v in {**LSP_FILES, **edit}.items() if v is not None}
    url = mirror.serve(f"/differs/{sha(repr(edit).encode())}/lsp_dataset.zip", make_zip(files, prefix="lsp_dataset/"))
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(download.os, "replace", lambda src, dst: (renames.append(dst), real_replace(src, dst)))
    with pytest.raises(DownloadError) as info:
        download_dataset("lsp", tmp_path, mirrors=[url], progress=False)
    assert f"{url}: {words}" in str(info.value)
    assert_has_manual_instructions(str(info.value), tmp_path)
    assert leftovers(tmp_path) == [] and Path(tmp_path / "lsp") not in map(Path, renames)


def test_many_differing_images_are_counted_and_a_later_mirror_still_works(tmp_path, mirror, fake_sets, monkeypatch):
    images = {f"images/im{i:04d}.jpg": bytes([i]) * 10 for i in range(1, 9)}
    published = {"joints.mat": b"labels", **images}
    lists = tmp_path / "lists"
    spec = fake_spec(REAL_SETS["lsp"], published, lists)
    monkeypatch.setitem(DATASETS, "lsp", spec)
    lay_out(tmp_path / "published" / "lsp", published)
    write_checksums(tmp_path / "published", lists, progress=False)
    bad = {**published, **{f"images/im{i:04d}.jpg": b"other" for i in (2, 3, 5, 6, 7, 8, 1)}}
    urls = [mirror.serve("/many/bad.zip", make_zip(bad)), mirror.serve("/many/good.zip", make_zip(published))]
    with pytest.raises(DownloadError, match=r"images/im0001.jpg: content differs .* \(and 6 more: im0002.jpg, "
                                            r"im0003.jpg, im0005.jpg, im0006.jpg, im0007.jpg, …\)"):
        download_dataset("lsp", tmp_path / "data", mirrors=urls[:1], progress=False)
    assert download_dataset("lsp", tmp_path / "data", mirrors=urls, progress=False) == tmp_path / "data" / "lsp"


def test_without_a_per_image_list_the_aggregate_still_decides(tmp_path, mirror, fake_sets, monkeypatch):
    monkeypatch.setitem(DATASETS, "lsp", dataclasses.replace(fake_sets["lsp"], digest_list=None))
    url = mirror.serve("/no-list/lsp_dataset.zip", make_zip({**LSP_FILES, "images/im0001.jpg": b"x"}))
    with pytest.raises(DownloadError, match="the digest of its 2 images is [0-9a-f]{64}, not the published"):
        download_dataset("lsp", tmp_path, mirrors=[url], progress=False)
    assert leftovers(tmp_path) == []


def test_a_missing_local_archive_and_a_checksum_on_a_local_one(tmp_path, capsys):
    err = one_line_error(capsys, ["download", "lsp", "--from", str(tmp_path / "nope.zip"), "--root", str(tmp_path)])
    assert f"{tmp_path / 'nope.zip'}: no such archive file" in err
    archive = tmp_path / "lsp.zip"
    archive.write_bytes(make_zip(LSP_FILES))
    err = one_line_error(capsys, ["download", "lsp", "--from", str(archive), "--sha256", "0" * 64, "--root",
                                  str(tmp_path / "d")])
    assert "SHA-256 mismatch" in err and sha(archive.read_bytes()) in err
    assert cli.main(["download", "lsp", "--from", str(archive), "--sha256", sha(archive.read_bytes()), "--root",
                     str(tmp_path / "d"), "--quiet"]) == 0


# --- deadlines ---------------------------------------------------------------------------------------------------

def trickle(stop: threading.Event, every: float, first: int = 0, total: int = 1_000_000):
    """A response that promises ``total`` bytes, sends ``first`` at once, then one byte per ``every`` s."""
    def respond(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(total))
        handler.end_headers()
        try:
            handler.wfile.write(b"x" * first)
            while not stop.wait(every):
                handler.wfile.write(b"x")
        except OSError:  # the client gave up, as it should
            pass
    return respond


@pytest.fixture
def stop():
    event = threading.Event()
    yield event
    event.set()


def test_a_trickling_mirror_is_cut_off_at_the_deadline(tmp_path, mirror, capsys, stop):
    url = mirror.serve_with("/trickle/lsp_dataset.zip", trickle(stop, every=0.02))
    start = time.monotonic()
    err = one_line_error(capsys, ["download", "lsp", "--mirror", url, "--deadline", "1", "--root", str(tmp_path),
                                  "--quiet"])
    assert time.monotonic() - start < 5
    assert f"{url}: still downloading at the 1 s deadline, after " in err and " of 1000000 bytes" in err
    assert leftovers(tmp_path) == []


def test_a_stalled_mirror_is_given_up_after_the_stall_timeout(tmp_path, mirror, capsys, stop):
    # 1 s, not less: on a loaded 2-core CI machine the response itself once took over 0.5 s to arrive
    url = mirror.serve_with("/stall/lsp_dataset.zip", trickle(stop, every=60, first=1000))
    start = time.monotonic()
    err = one_line_error(capsys, ["download", "lsp", "--from", url, "--stall-timeout", "1", "--root",
                                  str(tmp_path), "--quiet"])
    assert time.monotonic() - start < 5
    assert f"{url}: no data for 1 s after 1000 of 1000000 bytes (stall timeout" in err
    assert leftovers(tmp_path) == []


def test_a_mirror_that_never_answers_is_given_up_after_the_stall_timeout(tmp_path, mirror, capsys, stop):
    def silent(handler: BaseHTTPRequestHandler) -> None:
        stop.wait(60)  # connected, but no status line or headers

    url = mirror.serve_with("/silent/lsp_dataset.zip", silent)
    start = time.monotonic()
    err = one_line_error(capsys, ["download", "lsp", "--from", url, "--stall-timeout", "0.5", "--root",
                                  str(tmp_path), "--quiet"])
    assert time.monotonic() - start < 5
    assert f"{url}: no response for 0.5 s (stall timeout" in err
    assert leftovers(tmp_path) == []


def test_limits_must_be_positive(tmp_path, capsys):
    err = one_line_error(capsys, ["download", "lsp", "--deadline", "0", "--root", str(tmp_path)])
    assert "must be positive" in err


# --- download --verify: folders already in place -----------------------------------------------------------------

def test_verify_passes_on_good_folders_and_changes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEEPPOSE_DETECTOR", str(tmp_path / "absent.tflite"))  # checked too where installed
    lay_out(tmp_path / "lsp", LSP_FILES)
    lay_out(tmp_path / "lspet400", LSPET_FILES)  # a subset: its first image(s), checked by the per-image list
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    assert cli.main(["download", "--verify", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"lsp: 2 images and joints.mat in {tmp_path / 'lsp'} match the published digests",
                   f"lspet400: 1 images in {tmp_path / 'lspet400'} match the published digests (joints.mat not "
                   "checked: this subset's labels have no published digest)"]
    assert cli.main(["download", "--verify", "lsp", "--root", str(tmp_path)]) == 0
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(("folder", "rel", "body", "words"), [
    ("lsp", "images/im0002.jpg", b"changed", "content differs from the published LSP image"),
    ("lsp", "joints.mat", b"changed", "content differs from the published LSP joints.mat"),
    ("lsp", "images/im0005.jpg", b"stray", "not part of the published LSP"),
    ("lspet400", "images/im00001.jpg", b"changed", "content differs from the published LSP-extended image"),
])
def test_verify_names_the_first_differing_file(tmp_path, capsys, folder, rel, body, words):
    lay_out(tmp_path / folder, LSP_FILES if folder == "lsp" else LSPET_FILES)
    (tmp_path / folder / rel).write_bytes(body)
    err = one_line_error(capsys, ["download", "--verify", "--root", str(tmp_path)])
    assert f"{tmp_path / folder / rel}: {words}" in err
    assert (tmp_path / folder / rel).read_bytes() == body  # reported, never repaired or removed


def test_verify_reports_missing_folders_and_files(tmp_path, capsys):
    assert "no data set to verify under" in one_line_error(capsys, ["download", "--verify", "--root", str(tmp_path)])
    assert f"{tmp_path / 'lspet'}: no LSP-extended here" in one_line_error(
        capsys, ["download", "--verify", "lspet", "--root", str(tmp_path)])
    lay_out(tmp_path / "lsp", {k: v for k, v in LSP_FILES.items() if k != "images/im0001.jpg"})
    assert f"{tmp_path / 'lsp' / 'images' / 'im0001.jpg'}: missing" in one_line_error(
        capsys, ["download", "--verify", "--root", str(tmp_path)])


def test_verify_and_download_arguments_do_not_mix(tmp_path, capsys):
    assert "--verify checks folders already in place" in one_line_error(
        capsys, ["download", "--verify", "--from", "x.zip", "--root", str(tmp_path)])
    assert "name the data set to download" in one_line_error(capsys, ["download", "--root", str(tmp_path)])


def test_write_checksums_refuses_a_copy_that_is_not_the_published_one(tmp_path):
    lay_out(tmp_path / "lsp", {**LSP_FILES, "images/im0001.jpg": b"not it"})
    with pytest.raises(DownloadError, match="does not reproduce the published LSP digests"):
        write_checksums(tmp_path, tmp_path / "lists", progress=False)
    assert not (tmp_path / "lists").exists()
    with pytest.raises(DownloadError, match="no data set under"):
        write_checksums(tmp_path / "empty", tmp_path / "lists", progress=False)


# --- the real data (skipped where it is absent) ------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_lsp_zips(tmp_path_factory, data_root) -> dict[str, Path]:
    """LSP's 2000 images and joints.mat zipped (stored, as fast as a copy), and a copy with im0123.jpg changed."""
    folder = data_root / "lsp"
    if not (folder / "joints.mat").is_file():
        pytest.skip(f"real LSP data not found under {data_root}")
    out = tmp_path_factory.mktemp("real-zips")
    members = ["joints.mat", *(f"images/{p.name}" for p in sorted((folder / "images").glob("im*.jpg")))]
    zips = {"good": out / "lsp_dataset.zip", "tampered": out / "tampered.zip"}
    for kind, path in zips.items():
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
            for rel in members:
                body = (folder / rel).read_bytes()
                zf.writestr(f"lsp_dataset/{rel}", body[:-1] + b"\x00" if kind == "tampered" and
                            rel == "images/im0123.jpg" else body)
    return zips


def real_folder(data_root: Path, name: str) -> Path:
    folder = data_root / name
    if not (folder / "joints.mat").is_file() or not (folder / "images").is_dir():
        pytest.skip(f"real {name} data not found under {data_root}")
    return folder


@pytest.mark.parametrize("name", ["lsp", "lspet"])
def test_real_data_verifies_in_place(real_sets, data_root, capsys, name):
    folder = real_folder(data_root, name)
    assert cli.main(["download", "--verify", name, "--root", str(data_root), "--quiet"]) == 0
    count = REAL_SETS[name].image_count
    assert capsys.readouterr().out.strip() == f"{name}: {count} images and joints.mat in {folder} match the " \
                                              "published digests"


def test_real_lspet400_verifies_against_the_per_image_list(real_sets, data_root):
    real_folder(data_root, "lspet400")
    verified = verify_folder("lspet400", data_root)
    assert verified.images == 400 and not verified.joints


def test_real_lsp_installs_from_a_served_zip_and_a_tampered_one_is_named(real_sets, real_lsp_zips, mirror,
                                                                          tmp_path, capsys):
    url = mirror.serve("/real/lsp_dataset.zip", real_lsp_zips["good"].read_bytes())
    assert cli.main(["download", "lsp", "--from", url, "--root", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().out.strip() == f"lsp is ready in {tmp_path / 'a' / 'lsp'}"
    assert leftovers(tmp_path / "a") == ["lsp"] and len(list((tmp_path / "a/lsp/images").iterdir())) == 2000
    assert cli.main(["download", "--verify", "--root", str(tmp_path / "a"), "--quiet"]) == 0
    bad = mirror.serve("/real/tampered.zip", real_lsp_zips["tampered"].read_bytes())
    err = one_line_error(capsys, ["download", "lsp", "--from", bad, "--root", str(tmp_path / "b"), "--quiet"])
    assert f"{bad}: lsp_dataset/images/im0123.jpg: content differs from the published LSP image" in err
    assert "more" not in err.split("published LSP image")[1][:10] and leftovers(tmp_path / "b") == []


def test_real_shipped_lists_regenerate_byte_for_byte(real_sets, data_root, tmp_path):
    for name in ("lsp", "lspet"):
        real_folder(data_root, name)
    written = write_checksums(data_root, tmp_path, progress=False)
    assert [p.name for p in written] == ["lsp.txt.gz", "lspet.txt.gz"]
    for path in written:
        assert path.read_bytes() == (download.CHECKSUMS_DIR / path.name).read_bytes()
