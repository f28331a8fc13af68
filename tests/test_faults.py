"""Faults during training: SIGKILL, Ctrl-C, a full disk, a read-only folder, a second training in the same place.

What must hold after any of them: every file in the run directory is either absent or loads; a resumed run
loses at most the work since the last checkpoint; and it ends with exactly the weights of a run that was never
interrupted (``torch.equal`` on every tensor, same thread count).

The SIGKILL test runs the real command line in subprocesses (``OMP_NUM_THREADS=1``) and kills it four times:
during stage 1's and stage 2's checkpoint writes (the child pauses half a second after a save's first bytes, so
the kill lands there on a busy machine too), a random moment after the first checkpoint of a run, and a random
moment after the child took the run lock. The random points come from a seed printed on failure
(``DEEPPOSE_FAULT_SEED`` replays one, ``DEEPPOSE_FAULT_KILLS=N`` adds N more random kills). The other faults are
injected in-process and compared with an uninterrupted in-process run.
"""

from __future__ import annotations

import errno
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from deeppose_lab import atomic, checkpoint, cli, rundir
from deeppose_lab import train as train_mod
from deeppose_lab.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "epochs=3", "--set", "refine_epochs=1", "--set", "synthetic_train=16", "--set", "synthetic_test=4",
        "--set", "val_images=2", "--set", "stages=2"]
STAGES = (1, 2)


def train_args(out: Path) -> list[str]:
    return ["train", "--profile", "smoke", "--data", "synthetic", *TINY, "--out", str(out), "--quiet"]


def tmp_files(folder: Path) -> set[str]:
    """The temporary files of unfinished atomic writes (``.NAME.XXXX.tmp``)."""
    return {p.name for p in folder.glob(".*.tmp")} if folder.exists() else set()


def snapshot(run_dir: Path) -> dict[int, dict]:
    """Whatever exists in ``run_dir`` must load: stage → its checkpoint; run.json must parse if present."""
    if (run_dir / "run.json").exists():
        json.loads((run_dir / "run.json").read_text())
    out = {}
    for s in STAGES:
        path = rundir.stage_path(run_dir, s)
        if path.exists():
            out[s] = load_checkpoint(path, stage=s)  # raises CheckpointError on a torn or corrupt file
    return out


def assert_progress_kept(before: dict[int, dict], after: dict[int, dict], note: str) -> None:
    """No checkpoint vanished or went back, and every checkpointed epoch survived unchanged (not redone).

    An epoch's history record carries its wall-clock ``seconds``, so a record equal to the earlier one, to the
    last bit, proves that epoch was kept, not trained again.
    """
    for s, old in before.items():
        assert s in after, f"stage {s} checkpoint disappeared ({note})"
        new = after[s]
        assert (new["complete"], new["epoch"]) >= (old["complete"], old["epoch"]), note
        assert new["history"][:len(old["history"])] == old["history"], f"stage {s}: checkpointed work redone ({note})"


def assert_same_training(a: dict[int, dict], b: dict[int, dict]) -> None:
    assert sorted(a) == sorted(b) == list(STAGES)
    for s in STAGES:
        assert a[s]["complete"] and b[s]["complete"]
        assert a[s]["model"].keys() == b[s]["model"].keys()
        for key in a[s]["model"]:
            assert torch.equal(a[s]["model"][key], b[s]["model"][key]), f"stage {s}: {key} differs"
        for sa, sb in zip(a[s]["optimizer"]["state"].values(), b[s]["optimizer"]["state"].values(), strict=True):
            assert all(torch.equal(sa[k], sb[k]) for k in sa), f"stage {s}: optimizer state differs"
        strip = [{k: v for k, v in h.items() if k != "seconds"} for h in a[s]["history"]]
        assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in b[s]["history"]]


# --- SIGKILL, several times, then resume (subprocesses) ---------------------------------------------------

# The command line, with every checkpoint save paused for a moment after its first bytes are written, so that
# a kill "while a checkpoint is being written" lands there reliably however busy the machine is. Nothing else
# changes: the real CLI, the real atomic writer, a real SIGKILL.
CHILD = """
import sys, time
from deeppose_lab import checkpoint, cli
pause, real_write_with = float(sys.argv[1]), checkpoint.write_with

class Paused:
    def __init__(self, fh):
        self.fh, self.first = fh, True
    def write(self, data):
        n = self.fh.write(data)
        if self.first and pause:
            self.first = False
            self.fh.flush()
            time.sleep(pause)
        return n
    def __getattr__(self, name):
        return getattr(self.fh, name)

checkpoint.write_with = lambda path, writer: real_write_with(path, lambda fh: writer(Paused(fh)))
sys.exit(cli.main(sys.argv[2:]))
"""


def spawn(out: Path, log: Path, pause: float = 0.0) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-c", CHILD, str(pause), *train_args(out)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("wb"))


def holds_lock(run_dir: Path, pid: int) -> bool:
    try:
        return (run_dir / ".lock").read_text() == str(pid)
    except OSError:
        return False


def file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def run_and_kill(run_dir: Path, log: Path, trigger: tuple, on_lock=None, limit: float = 120.0) -> dict:
    """Run the training command until ``trigger`` fires, then SIGKILL it.

    ``("write", "stage1.pt")``: when a new temporary file of that checkpoint appears (its save is in progress);
    ``("after", "stage1.pt", s)``: ``s`` seconds after this run first replaced that checkpoint (mid-epoch);
    ``("delay", s)``: ``s`` seconds after the child took the run lock; ``None``: let it finish.
    """
    before = tmp_files(run_dir)
    kind = trigger[0] if trigger is not None else None
    if kind == "after":
        target, original, saved_at = run_dir / trigger[1], file_id(run_dir / trigger[1]), None
    proc = spawn(run_dir, log, pause=0.5 if kind == "write" else 0.0)
    start, locked_at = time.monotonic(), None
    try:
        while proc.poll() is None:
            if time.monotonic() - start > limit:
                raise AssertionError(f"training did not finish within {limit} s")
            if locked_at is None and holds_lock(run_dir, proc.pid):
                locked_at = time.monotonic()
                if on_lock is not None:
                    on_lock()
            fire = False
            if kind == "write":
                fire = any(n.startswith(f".{trigger[1]}.") for n in tmp_files(run_dir) - before)
            elif kind == "after":
                if saved_at is None and file_id(target) not in (None, original):
                    saved_at = time.monotonic()
                fire = saved_at is not None and time.monotonic() - saved_at >= trigger[2]
            elif kind == "delay" and locked_at is not None:
                fire = time.monotonic() - locked_at >= trigger[1]
            if fire:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return {"trigger": trigger, "killed": True, "torn": sorted(tmp_files(run_dir) - before)}
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, f"training failed (rc {proc.returncode}):\n{log.read_text()}"
    return {"trigger": trigger, "killed": False, "torn": []}


def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_run(tmp_path, capsys):
    seed = int(os.environ.get("DEEPPOSE_FAULT_SEED", random.SystemRandom().randrange(1 << 30)))
    rng = random.Random(seed)
    reference = spawn(tmp_path / "reference", tmp_path / "reference.log")  # in parallel, single-threaded too
    run_dir = tmp_path / "killed"
    extra = int(os.environ.get("DEEPPOSE_FAULT_KILLS", "0"))  # more random kills on demand
    triggers = [("write", "stage1.pt"),  # the first save of a fresh run, torn
                ("after", "stage1.pt", rng.uniform(0.0, 0.2)),  # stage 1 again, killed soon after its 1st save
                ("write", "stage2.pt"),  # stage 1 resumed and finished, stage 2's only save torn
                *[("delay", rng.uniform(0.0, 3.0)) for _ in range(1 + extra)]]  # anywhere in what is left
    second_training = []

    def try_a_second_training():
        """While the child holds the run, a second training in the same directory is refused."""
        second_training.append(cli.main(train_args(run_dir)))

    state, outcomes = {}, []
    for k, trigger in enumerate(triggers):
        note = f"seed {seed}, kill {k + 1} {trigger}"
        outcome = run_and_kill(run_dir, tmp_path / f"kill{k}.log", trigger, try_a_second_training if k == 0 else None)
        outcomes.append(outcome)
        now = snapshot(run_dir)  # every checkpoint present loads: no torn file ever replaces a good one
        assert_progress_kept(state, now, note)
        state = now
    final = run_and_kill(run_dir, tmp_path / "final.log", None)
    assert not final["killed"]
    done = snapshot(run_dir)
    assert_progress_kept(state, done, f"seed {seed}, final resume")

    assert reference.wait(timeout=120) == 0, (tmp_path / "reference.log").read_text()
    assert_same_training(done, snapshot(tmp_path / "reference"))

    assert second_training == [2], f"seed {seed}: {outcomes}"
    err = capsys.readouterr().err
    assert "another training is using this run directory" in err and "Traceback" not in err
    print(f"SIGKILL test: seed {seed}, {outcomes}")
    assert all(o["killed"] for o in outcomes[:3]), outcomes
    for o in outcomes[0], outcomes[2]:  # the kill hit before the rename: only a hidden temporary file was torn
        assert any(name.startswith(f".{o['trigger'][1]}.") for name in o["torn"]), o


# --- atomic writes interrupted ----------------------------------------------------------------------------

@pytest.mark.parametrize("interrupt", [RuntimeError("writer failed"), KeyboardInterrupt(), OSError(errno.EIO, "EIO")])
def test_an_interrupted_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, interrupt):
    target = tmp_path / "report.json"
    target.write_bytes(b"old contents")

    def half_then_fail(fh):
        fh.write(b"new contents, half of th")
        fh.flush()
        assert tmp_files(tmp_path), "the bytes go to a temporary file beside the target"
        raise interrupt

    with pytest.raises(type(interrupt)):
        atomic.write_with(target, half_then_fail)
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    fresh = tmp_path / "new.bin"  # a file that did not exist is still absent afterwards
    with pytest.raises(type(interrupt)):
        atomic.write_with(fresh, half_then_fail)
    assert not fresh.exists() and not tmp_files(tmp_path)


def test_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def no_rename(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(atomic.os, "replace", no_rename)
    with pytest.raises(OSError, match="cross-device"):
        atomic.write_text(target, "new")
    assert target.read_text() == "old" and not tmp_files(tmp_path)


# --- a full disk, a read-only folder -------------------------------------------------------------------------

def tiny_payload(epoch: int) -> dict:
    torch.manual_seed(epoch)
    return {"stage": 1, "model_config": {"width": 0.125}, "model": {"w": torch.randn(64, 1024)}, "epoch": epoch,
            "complete": False}


class FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes have been written."""

    def __init__(self, fh, room: int) -> None:
        self.fh, self.room = fh, room

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.fh.__exit__(*exc)


def check_refused_save(path: Path, words: str, err: CheckpointError) -> None:
    message = str(err)
    assert message.startswith(f"{path}: could not write checkpoint"), message
    assert words in message and "the previous one is intact" in message, message
    assert load_checkpoint(path)["epoch"] == 0  # the previous checkpoint, untouched
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


@pytest.mark.parametrize("room", [0, 1000, 100_000])
def test_disk_full_while_torch_save_writes_is_a_checkpoint_error(tmp_path, monkeypatch, room):
    path = tmp_path / "stage1.pt"
    save_checkpoint(path, tiny_payload(0))
    real_fdopen = atomic.os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, mode: FullDisk(real_fdopen(fd, mode), room))
    with pytest.raises(CheckpointError) as err:  # torch.save alone would report "RuntimeError: unexpected pos"
        save_checkpoint(path, tiny_payload(1))
    check_refused_save(path, "No space left on device", err.value)


def test_disk_full_at_fsync_is_a_checkpoint_error(tmp_path, monkeypatch):
    path = tmp_path / "stage1.pt"
    save_checkpoint(path, tiny_payload(0))

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(CheckpointError) as err:
        save_checkpoint(path, tiny_payload(1))
    check_refused_save(path, "No space left on device", err.value)


def test_read_only_run_directory_is_a_checkpoint_error(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    path = folder / "stage1.pt"
    save_checkpoint(path, tiny_payload(0))
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root ignores the mode bits: emulate what the kernel would say
            def refuse(*args, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied", str(folder))

            monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
        with pytest.raises(CheckpointError) as err:
            save_checkpoint(path, tiny_payload(1))
    finally:
        folder.chmod(0o755)
    check_refused_save(path, "Permission denied", err.value)


# --- in-process training: Ctrl-C, disk full, a locked run directory --------------------------------------------

@pytest.fixture(scope="module")
def one_thread():
    """In-process runs use one thread, like the subprocesses: tiny convolutions are slower on two busy cores,
    and every run compared here must use the same count anyway."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, one_thread) -> dict[int, dict]:
    """The uninterrupted in-process run every in-process fault is compared with."""
    run_dir = tmp_path_factory.mktemp("faults") / "reference"
    assert cli.main(train_args(run_dir)) == 0
    return snapshot(run_dir)


@pytest.mark.parametrize(("stage", "epoch"), [(1, 1), (2, 0)], ids=["stage1-epoch2", "stage2-epoch1"])
def test_ctrl_c_leaves_a_usable_checkpoint_that_resumes_to_the_same_weights(tmp_path, monkeypatch, capsys,
                                                                            reference_run, stage, epoch):
    run_dir = tmp_path / "run"
    real_check = train_mod.check_finite

    def interrupt(loss, s, e, first, step, path):
        if (s, e, first) == (stage, epoch, 0):  # the epoch's first loss check, before its checkpoint
            raise KeyboardInterrupt
        real_check(loss, s, e, first, step, path)

    monkeypatch.setattr(train_mod, "check_finite", interrupt)
    assert cli.main(train_args(run_dir)) == 130
    err = capsys.readouterr().err.strip()
    assert "interrupted" in err and "run again to resume" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    state = snapshot(run_dir)
    if stage == 1:  # epoch 1 is checkpointed, epoch 2 was lost
        assert sorted(state) == [1] and state[1]["epoch"] == 0 and not state[1]["complete"]
    else:  # stage 1 finished, stage 2 had not saved anything yet
        assert sorted(state) == [1] and state[1]["complete"]
    assert not tmp_files(run_dir)
    monkeypatch.setattr(train_mod, "check_finite", real_check)
    assert cli.main(train_args(run_dir)) == 0
    done = snapshot(run_dir)
    assert_progress_kept(state, done, "after Ctrl-C")
    assert_same_training(done, reference_run)


def test_disk_full_during_training_exits_2_keeps_the_last_checkpoint_and_resumes(tmp_path, monkeypatch, capsys,
                                                                                 reference_run):
    run_dir = tmp_path / "run"
    real_write_with = checkpoint.write_with
    saves = []

    def second_stage1_save_hits_a_full_disk(path, writer):
        saves.append(Path(path).name)
        if saves.count("stage1.pt") == 2:
            return real_write_with(path, lambda fh: writer(FullDisk(fh, 4096)))
        return real_write_with(path, writer)

    monkeypatch.setattr(checkpoint, "write_with", second_stage1_save_hits_a_full_disk)
    assert cli.main(train_args(run_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"deeppose-lab train: error: {run_dir / 'stage1.pt'}: could not write checkpoint (No space left on "
                   "device); the previous one is intact")
    state = snapshot(run_dir)
    assert sorted(state) == [1] and state[1]["epoch"] == 0 and not tmp_files(run_dir)
    monkeypatch.setattr(checkpoint, "write_with", real_write_with)  # space was freed
    assert cli.main(train_args(run_dir)) == 0
    assert_same_training(snapshot(run_dir), reference_run)


def test_a_second_training_in_a_locked_run_directory_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "run"
    with rundir.run_lock(run_dir):
        assert cli.main(train_args(run_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"deeppose-lab train: error: {run_dir}: another training is using this run directory; wait for it "
                   "or choose another --out")
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # the refused run wrote nothing
    with rundir.run_lock(run_dir):  # and the lock is free again once its holder is done
        pass


def test_a_stale_lock_file_from_a_killed_run_does_not_block(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("99999999")  # the file survives SIGKILL; the kernel lock does not
    with rundir.run_lock(run_dir):
        assert (run_dir / ".lock").read_text() == str(os.getpid())


def test_checkpoint_bytes_never_reach_the_target_before_they_are_complete(tmp_path, monkeypatch):
    """At the moment of the rename the temporary file already holds a complete, loadable checkpoint."""
    path = tmp_path / "stage1.pt"
    real_replace = atomic.os.replace
    seen = []

    def check_then_replace(src, dst):
        with open(src, "rb") as fh:
            seen.append(torch.load(io.BytesIO(fh.read()), weights_only=True)["epoch"])
        return real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", check_then_replace)
    save_checkpoint(path, tiny_payload(3))
    assert seen == [3] and load_checkpoint(path)["epoch"] == 3
