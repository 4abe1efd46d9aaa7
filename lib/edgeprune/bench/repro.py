"""Time the whole ``dvc repro`` and then a no-op ``dvc repro`` (targets: quick <= 15 min, no-op <= 15 s)."""

from __future__ import annotations

import argparse
import subprocess
import time

from edgeprune.paths import repo_root


def timed(cmd: list[str]) -> float:
    tic = time.perf_counter()
    subprocess.run(cmd, cwd=repo_root(), check=True)
    return time.perf_counter() - tic


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench repro", description=__doc__)
    parser.add_argument("--force", action="store_true", help="re-run every stage (dvc repro -f)")
    args = parser.parse_args(argv)
    full = timed(["dvc", "repro", *(["-f"] if args.force else [])])
    noop = timed(["dvc", "repro"])
    print(f"dvc repro{' -f' if args.force else ''}: {full / 60:.2f} min (target <= 15 min for the quick profile)")
    print(f"no-op dvc repro: {noop:.1f} s (target <= 15 s)")
