"""The run directory: the ONE reader and writer of ``run.json``, its lock, and where each stage's file lives.

Layout of ``RUN_DIR``::

    run.json        profile, data and per-stage training times (rewritten atomically)
    stage1.pt       stage 1 (AlexNet on the person box)
    stage2.pt ...   refinement stages, each with the displacement statistics it was trained on
    report/         written by ``pipeline.evaluate_run``

A finished stage is loaded, not retrained; an unfinished one resumes after its last checkpointed epoch
(``pipeline.train_run``). Two trainings in the same directory are refused (a lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from .atomic import writable_folder, write_text
from .checkpoint import CheckpointError, load_checkpoint
from .distributed import is_main, mean_over_ranks
from .errors import DeepPoseError, RunError
from .profiles import VIEW_FIELDS, Profile
from .splits import resolve_data

Log = Callable[[str], None]


def stage_path(run_dir: Path, stage: int) -> Path:
    return Path(run_dir) / f"stage{stage}.pt"


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Refuse a second training in the same directory while the first one runs."""
    writable_folder(run_dir, "run folder")
    fh = open(run_dir / ".lock", "w")  # noqa: SIM115 - held for the whole with-block
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RunError(f"{run_dir}: another training is using this run directory; wait for it or choose "
                       "another --out") from None
    try:
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def read_run(run_dir: Path) -> dict[str, Any]:
    """run.json, checked: its profile must load (a flat one from before per-stage recipes does)."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise RunError(f"{run_dir}: not a run directory (no run.json); train one with `deeppose-lab train --out`")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{path}: unreadable run file ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("profile"), dict) or not isinstance(meta.get("data"), str):
        raise RunError(f"{path}: not a run description (expected an object with 'profile' and 'data')")
    try:
        Profile.from_dict(meta["profile"])
    except ValueError as exc:
        raise RunError(f"{path}: {exc}") from None
    meta.setdefault("stages", {})
    if not valid_stage_records(meta["stages"]):
        raise RunError(f"{path}: 'stages' must map stage numbers to their records ({{\"1\": {{\"seconds\": …}}}}), "
                       f"got {json.dumps(meta['stages'])[:60]}")
    return meta


def valid_stage_records(stages: object) -> bool:
    """run.json's ``stages``: {"1": {"seconds": 12.5, "epochs": 20, "dev_curve": [[s, strict, loose], …]}, …}."""
    if not isinstance(stages, dict):
        return False
    for key, record in stages.items():
        if not (isinstance(key, str) and key.isdigit() and isinstance(record, dict)):
            return False
        if not isinstance(record.get("seconds", 0), int | float) or isinstance(record.get("seconds"), bool):
            return False
        curve = record.get("dev_curve", [])
        if not (isinstance(curve, list) and all(isinstance(p, list) and len(p) == 3 and
                                                all(isinstance(v, int | float) for v in p) for p in curve)):
            return False
    return True


def training_fields(profile: dict) -> dict[str, Any]:
    """The flat fields that decide what a run trains: all but the test-time box views (``VIEW_FIELDS``)."""
    return {k: v for k, v in flat_fields(profile).items() if k not in VIEW_FIELDS}


def start_run(run_dir: Path, profile: Profile, data: str) -> dict[str, Any]:
    """Create run.json, or check that an existing run was made with the same profile and data.

    A folder with no stage file yet (a command that failed before training anything) takes the new settings."""
    meta = {"profile": profile.to_dict(), "data": data, "stages": {}}
    trained = any(run_dir.glob("stage*.pt"))
    old = existing_run(run_dir, trained)
    if old is not None:
        before = training_fields(Profile.from_dict(old["profile"]).to_dict())
        same_data = old["data"] == data or resolve_data(old["data"]) == data  # a folder recorded relative, before
        if before == training_fields(meta["profile"]) and same_data:
            return old
        if trained:
            now = training_fields(meta["profile"])
            changed = sorted(k for k in now if before.get(k) != now[k])
            data_note = "" if same_data else f"data {old['data']!r} now {data!r}, "
            raise RunError(f"{run_dir}: this run was trained with other settings ({data_note}changed fields "
                           f"{changed}); resume with the same ones, or choose another --out for these")
        # nothing was trained under the old settings (a command that failed early): the corrected one starts over
    write_text(run_dir / "run.json", json.dumps(meta, indent=2))
    return meta


def existing_run(run_dir: Path, trained: bool) -> dict[str, Any] | None:
    """The folder's run.json, or None where there is none, or where it is unreadable and nothing was trained
    under it (that command failed early; the corrected one may start over)."""
    if not (run_dir / "run.json").exists():
        return None
    try:
        return read_run(run_dir)
    except RunError:
        if trained:
            raise
        return None


def flat_fields(profile: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"stage1": {"lr": …}}`` as ``{"stage1.lr": …}``: the names ``--set`` takes, for saying what changed."""
    out: dict[str, Any] = {}
    for key, value in profile.items():
        if isinstance(value, dict):
            out.update(flat_fields(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def agreed_start(run_dir: Path, profile: Profile, data: str) -> dict[str, Any]:
    """Rank 0 creates or checks run.json; every rank learns whether that worked before going on."""
    meta, error = None, None
    if is_main():
        try:
            meta = start_run(run_dir, profile, data)
        except (DeepPoseError, OSError) as exc:  # every rank must still reach the collective below
            error = exc
    if float(mean_over_ranks(torch.tensor(0.0 if error is None else 1.0))) > 0:
        raise error or RunError(f"{run_dir}: rank 0 refused this run directory")
    return meta or read_run(run_dir)


def run_profile(run_dir: Path | str) -> Profile:
    """The profile a run was trained with (its run.json, checked)."""
    return Profile.from_dict(read_run(Path(run_dir))["profile"])


def stage_complete(run_dir: Path | str, stage: int) -> bool:
    """True when ``run_dir`` holds a finished checkpoint of ``stage``."""
    path = stage_path(Path(run_dir), stage)
    if not path.is_file():
        return False
    try:
        return bool(load_checkpoint(path, stage=stage)["complete"])
    except CheckpointError:
        return False


def stage_seconds(run_dir: Path | str) -> dict[int, float]:
    """Training seconds per finished stage as run.json records them (empty when there is no run yet)."""
    if not (Path(run_dir) / "run.json").is_file():
        return {}
    stages = read_run(Path(run_dir))["stages"]
    return {int(s): float(stages[s]["seconds"]) for s in sorted(stages, key=int)}


def record_stage(meta: dict, run_dir: Path, stage: int, history: list[dict], log: Log) -> None:
    """Write a stage's training time (the sum over its epochs, so a resumed run counts each epoch once)."""
    seconds = sum(h["seconds"] for h in history)
    if is_main():
        meta["stages"][str(stage)] = {"seconds": round(seconds, 1), "epochs": len(history),
                                      "dev_curve": dev_curve(history)}
        write_text(run_dir / "run.json", json.dumps(meta, indent=2))
    log(f"stage {stage} ready ({seconds:.0f} s of training over {len(history)} epochs)")


def dev_curve(history: list[dict]) -> list[list[float]]:
    """[training seconds so far, dev strict PCP, dev loose PCP] at each validation pass of a stage."""
    curve, elapsed = [], 0.0
    for h in history:
        elapsed += h["seconds"]
        if "dev_strict_pcp" in h:
            curve.append([round(elapsed, 1), round(h["dev_strict_pcp"], 4), round(h["dev_loose_pcp"], 4)])
    return curve


def dev_points(stages: dict) -> list[tuple[int, float, float, float]]:
    """(stage, training minutes since the cascade started, dev strict PCP, dev loose PCP) per validation pass,
    from run.json's per-stage ``dev_curve``; a stage's minutes start where the previous stage's training ended."""
    points, start = [], 0.0
    for key in sorted(stages, key=int):
        for seconds, strict, loose in stages[key].get("dev_curve", []):
            points.append((int(key), (start + seconds) / 60.0, strict, loose))
        start += float(stages[key].get("seconds", 0.0))
    return points
