"""The engine behind ``deeppose-lab download``, against archives served from 127.0.0.1 (never the internet).

What must hold: a verified archive is installed in one rename; a checksum mismatch, an unreachable mirror or
a bad archive raises ``DownloadError`` with manual-placement instructions and leaves NOTHING behind (no
``.part`` file, no extraction folder, no half data set); crafted archives that would write outside the
target (absolute paths, ``..``, links, devices) are refused before a single byte is written.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import tar_member

from deeppose_lab import download
from deeppose_lab.download import (
    DATASETS,
    DownloadError,
    download_dataset,
    is_complete,
    manual_instructions,
    safe_extract,
)

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
        self.hits: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                mirror.hits.append(self.path)
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


def test_registry_has_no_unverifiable_checksums():
    for spec in DATASETS.values():
        assert spec.sha256 is None or len(spec.sha256) == 64
        assert all(url.startswith(("http://", "https://")) for url in spec.mirrors)


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


def test_no_known_checksum_means_no_download(tmp_path, closed_port_url):
    assert DATASETS["lsp"].sha256 is None  # no trusted checksum is registered for the rotted mirrors
    with pytest.raises(DownloadError, match="no SHA-256 checksum is known") as info:
        download_dataset("lsp", tmp_path, mirrors=[closed_port_url], progress=False)
    assert_has_manual_instructions(str(info.value), tmp_path)
    with pytest.raises(DownloadError, match="not a SHA-256 hex digest"):
        download_dataset("lsp", tmp_path, mirrors=[closed_port_url], sha256="abc", progress=False)
    with pytest.raises(DownloadError, match="no mirrors"):
        download_dataset("lsp", tmp_path, mirrors=[], sha256="a" * 64, progress=False)
    assert leftovers(tmp_path) == []


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
