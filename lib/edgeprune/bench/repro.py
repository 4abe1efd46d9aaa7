"""Time ``dvc repro`` stage by stage, then a no-op ``dvc repro``.

Targets (quick profile): the whole run <= 15 min on a 2-core CPU, and, since a host's speed varies
up to 2x between machines and days, the run's total over its own dense-training time <= 3 (a
ratio measured in the same run); the no-op run <= 15 s. Each stage runs with ``dvc repro
--single-item`` in ``dvc.yaml`` order (which is pipeline order), so the printed times are the
stages' own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from edgeprune.paths import repo_root

TARGET_MINUTES, TARGET_RATIO, TARGET_NOOP_S = 15.0, 3.0, 15.0


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def timed(cmd: list[str]) -> float:
    tic = time.perf_counter()
    subprocess.run(cmd, cwd=repo_root(), check=True)
    return time.perf_counter() - tic


def stages() -> list[str]:
    listing = subprocess.run(_dvc("stage", "list", "--name-only"), cwd=repo_root(), check=True, capture_output=True, text=True)
    return [line.strip() for line in listing.stdout.splitlines() if line.strip()]


def _timings(results: Path) -> dict[str, dict]:
    """Each dense run's ``timing.json`` (``results/dense/<run>/``), by run."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(results.glob("dense/*/timing.json"))}


def dense_train_seconds(results: Path) -> float:
    """Seconds the dense stage(s) spent training, as they recorded it (``results/dense/*/timing.json``)."""
    return sum(timing["train_seconds"] for timing in _timings(results).values())


def skipped_dense_training(results: Path) -> dict[str, float]:
    """Per dense run that resumed a checkpoint (``resumed_from_epoch`` > 0 in its ``timing.json``), the
    seconds of training the run did not redo: its recorded training time (cumulative over resumes) times
    the share of epochs it resumed past. ``dvc repro -f`` re-runs the dense stage, but the stage resumes
    ``results/checkpoints/dense``, so a forced run's total otherwise leaves the dense training out."""
    skipped = {}
    for run, timing in _timings(results).items():
        if resumed := timing.get("resumed_from_epoch", 0):
            epochs = json.loads((results / "dense" / run / "metrics.json").read_text())["epochs"]
            skipped[run] = timing["train_seconds"] * min(1.0, resumed / epochs)
    return skipped


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench repro", description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="re-run every stage (dvc repro -f)")
    args = parser.parse_args(argv)
    times = {}
    for stage in stages():
        times[stage] = timed(_dvc("repro", "--single-item", *(["--force"] if args.force else []), stage))
    noop = timed(_dvc("repro"))
    total = sum(times.values())
    dense = dense_train_seconds(repo_root() / "results")
    width = max(map(len, times))
    for stage, seconds in times.items():
        print(f"{stage:<{width}}  {seconds:7.1f} s")
    print(f"dvc repro{' -f' if args.force else ''}: {total / 60:.2f} min (target <= {TARGET_MINUTES:g} min for the quick profile)")
    if dense:
        print(f"total / dense training: {total:.0f} s / {dense:.0f} s = {total / dense:.2f} (target <= {TARGET_RATIO:g})")
    skipped = skipped_dense_training(repo_root() / "results") if args.force else {}  # a forced run re-wrote timing.json
    if skipped:
        left_out = sum(skipped.values())
        full = total + left_out
        print(
            f"  the dense stage resumed its checkpoint ({', '.join(skipped)}): this run did not redo ~{left_out:.0f} s "
            f"of recorded training; with it ~{full / 60:.2f} min, ratio ~{full / dense:.2f} (estimate). For a run from "
            "scratch remove results/checkpoints/dense first"
        )
    print(f"no-op dvc repro: {noop:.1f} s (target <= {TARGET_NOOP_S:g} s)")
