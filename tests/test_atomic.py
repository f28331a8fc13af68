"""Atomic writes: a failing writer leaves the previous file (or no file) and no temporary files behind, and a
new file gets the usual permissions rather than ``mkstemp``'s private 0600.
"""

from __future__ import annotations

import os
import stat

import pytest

from deeppose_lab.atomic import atomic_open, write_bytes, write_text, write_with


class Boom(RuntimeError):
    pass


def fail_half_way(fh) -> None:
    fh.write(b"half of a new file")
    fh.flush()
    raise Boom("disk on fire")


def test_a_failing_writer_keeps_the_previous_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "stage1.pt"
    write_bytes(path, b"the good old checkpoint")
    with pytest.raises(Boom):
        write_with(path, fail_half_way)
    assert path.read_bytes() == b"the good old checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage1.pt"]


def test_a_failing_first_write_leaves_nothing(tmp_path):
    path = tmp_path / "sub" / "report.json"
    with pytest.raises(Boom):
        write_with(path, fail_half_way)
    assert not path.exists()
    assert list((tmp_path / "sub").iterdir()) == []


def test_an_interrupt_inside_the_writer_also_cleans_up(tmp_path):
    path = tmp_path / "run.json"
    write_text(path, "{}")
    with pytest.raises(KeyboardInterrupt), atomic_open(path) as fh:
        fh.write(b'{"half": ')
        raise KeyboardInterrupt
    assert path.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_successful_writes_replace_the_file_and_create_folders(tmp_path):
    path = tmp_path / "a" / "b" / "notes.md"
    write_text(path, "first ✓")
    assert path.read_text(encoding="utf-8") == "first ✓"
    write_with(path, lambda fh: fh.write(b"second"))
    assert path.read_bytes() == b"second"
    assert [p.name for p in path.parent.iterdir()] == ["notes.md"]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077], ids=["022", "002", "077"])
def test_new_files_get_the_usual_permissions_not_0600(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = tmp_path / "report.md"
        write_text(path, "x")
        mode = stat.S_IMODE(path.stat().st_mode)
    finally:
        os.umask(old)
    assert mode == 0o666 & ~umask
    if umask != 0o077:
        assert mode != 0o600  # readable by the group and others, like any file the user saves
    current = os.umask(old)
    os.umask(current)
    assert current == old  # the process umask is unchanged afterwards
