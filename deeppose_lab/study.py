"""One recipe trial on the dev split: ``python -m deeppose_lab.study NAME STAGES field=value ...``
(``python -m deeppose_lab.study --table`` prints every trial so far as the table in ``docs/accuracy.md``).

Trains the classroom profile with the given fields changed on ``--data lsp`` (LSP 1-800 and LSP-extended),
scores every stage on the dev split (LSP 801-1000, framed and scored like LSP test) and appends one JSON line
to ``docs/trials.jsonl``: the numbers behind the table in ``docs/accuracy.md``. LSP test is never touched.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from . import runs
from .profiles import get_profile
from .report import evaluate_predictions

TRIALS = Path(__file__).resolve().parents[1] / "docs" / "trials.jsonl"


def dev_row(stage: dict) -> dict[str, float]:
    """The dev-split numbers a trial row keeps for one stage."""
    strict = stage["pcp"]["strict"]
    return {"strict": strict["mean"], "loose": stage["pcp"]["loose"]["mean"],
            "upper_arm": strict["groups"]["upper_arm"], "lower_arm": strict["groups"]["lower_arm"],
            "pdj01": stage["pdj_mean_at_0.1"], "pdj02": stage["pdj_mean_at_0.2"],
            "wrist_pdj02": float(np.mean([stage["pdj_at_0.2"][6], stage["pdj_at_0.2"][11]]))}


def trial(name: str, stages: int, overrides: dict[str, str], runs_root: Path = Path("runs/study"),
          profile_name: str = "classroom", data: str = "lsp") -> dict:
    """Train one recipe in ``runs_root/name`` (resuming what is there) and score each stage on the dev split."""
    profile = get_profile(profile_name, **overrides)
    tic = time.perf_counter()
    cascade = runs.train_run(runs_root / name, profile, data, stages=stages, progress=False)
    seconds = time.perf_counter() - tic
    dev = runs.load_data(data, profile, log=lambda m: None).dev
    results = evaluate_predictions(cascade.predict(dev), dev.joints)
    return {"name": name, "stages": stages, "overrides": overrides, "wall_seconds": round(seconds),
            "stage_seconds": runs.read_run(runs_root / name)["stages"],
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
            "dev": [dev_row(st) for st in results["stages"]]}


def table(path: Path = TRIALS) -> str:
    """The trials as a markdown table, one row per stage of each trial, in the order they were run."""
    lines = ["| trial | changed from classroom | stage | train min | strict | loose | upper arm | lower arm | PDJ@0.1 "
             "| PDJ@0.2 | wrists PDJ@0.2 |", "|" + "---|" * 11]
    for line in path.read_text().splitlines():
        row = json.loads(line)
        changed = " ".join(f"{k}={v}" for k, v in row["overrides"].items())
        minutes = 0.0
        for stage, d in enumerate(row["dev"], start=1):
            minutes += row["stage_seconds"].get(str(stage), {}).get("seconds", 0.0) / 60
            lines.append(f"| {row['name']} | {changed} | {stage} | {minutes:.1f} | {d['strict']:.3f} "
                         f"| {d['loose']:.3f} | {d['upper_arm']:.3f} | {d['lower_arm']:.3f} | {d['pdj01']:.3f} "
                         f"| {d['pdj02']:.3f} | {d['wrist_pdj02']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if argv == ["--table"]:
        print(table())
        return
    name, stages, *fields = argv
    row = trial(name, int(stages), dict(f.split("=", 1) for f in fields))
    print(json.dumps(row))
    with TRIALS.open("a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
