"""Benchmark: the model x seed matrix through ``dvc exp run --queue`` and ``dvc queue start -j N``.

``python -m edgeprune.bench queue`` copies this repository (committed and uncommitted files, the
DVC cache shared) to a scratch folder with the tiny profile as ``params.yaml`` (``num_threads: 0``), runs ``dvc repro``
there once as the baseline and commits it, then for each worker count in ``--jobs`` queues one
experiment per value of ``--set KEY=V1,V2,...`` and runs them with ``EDGEPRUNE_WORKERS=N dvc queue
start -j N`` (``num_threads: 0`` then gives each worker cores / N threads), waits for the queue to
drain, and prints the wall time of each worker count, their ratio, and the experiments as
``dvc exp show`` lists them. Every queued experiment must succeed.

Host speed varies between days, so compare the worker counts of one run, not absolute times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from edgeprune.paths import repo_root
from edgeprune.train import WORKERS_ENV

DEFAULT_SET = "ppo.episodes=4,6"
"""Two experiments that re-run only the PPO stage and what follows it (seconds each on tiny params)."""


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, capture: bool = False) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[2:])} failed ({done.returncode}) in {cwd}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout if capture else ""


def _dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def scratch_copy(source: Path, where: Path, params: Path) -> Path:
    """A git repository at ``where`` holding ``source``'s files, ``params`` as params.yaml, the data checked out."""
    files = _run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], source, capture=True)
    for name in filter(None, files.split("\0")):
        if (source / name).is_file():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, where / name)
    raw = yaml.safe_load(params.read_text())
    raw["num_threads"] = 0  # the worker count decides the threads (cores / EDGEPRUNE_WORKERS)
    (where / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (where / "dvc.lock").unlink(missing_ok=True)
    git = ["git", "-c", "user.email=bench@example.invalid", "-c", "user.name=bench"]
    _run(["git", "init", "-q"], where)
    _run(_dvc("cache", "dir", "--local", str(source / ".dvc" / "cache")), where)
    _run(_dvc("checkout", "--quiet", "data.dvc"), where)
    _run([*git, "add", "-A"], where)
    _run([*git, "commit", "-qm", "scratch copy"], where)
    return where


def _status(cwd: Path, env: dict[str, str]) -> tuple[str, bool, bool]:
    """``dvc queue status``, whether a task is queued or running, and whether a worker is left."""
    status = _run(_dvc("queue", "status"), cwd, env, capture=True)
    lines = [line for line in status.splitlines() if line.strip()]
    tasks = [line for line in lines if not line.startswith(("Task", "Worker"))]
    busy = any(word in line for line in tasks for word in ("Queued", "Running"))
    workers = next((line for line in lines if line.startswith("Worker status")), "")
    return status, busy, bool(workers) and "0 active, 0 idle" not in workers


def drain(cwd: Path, env: dict[str, str], poll_s: float = 2.0) -> str:
    """Wait until no task is queued or running; return the final ``dvc queue status``."""
    while True:
        status, busy, _ = _status(cwd, env)
        if not busy:
            return status
        time.sleep(poll_s)


def wait_for_workers(cwd: Path, env: dict[str, str], poll_s: float = 2.0) -> None:
    """Wait until every worker has exited: an idle one lingers up to 10 s (dvc's docs) and would take the
    next round's tasks with its own environment (its ``EDGEPRUNE_WORKERS``)."""
    while _status(cwd, env)[2]:
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench queue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", default=DEFAULT_SET, help="KEY=V1,V2,...: one queued experiment per value")
    parser.add_argument("--jobs", nargs="+", type=int, default=[1, 2], help="worker counts to compare")
    parser.add_argument("--params", default=str(repo_root() / "lib/edgeprune/profiles/tiny.yaml"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy (its path is printed)")
    args = parser.parse_args(argv)
    key, sep, values = args.set.partition("=")
    if not (key and sep and values) or any(j < 1 for j in args.jobs):
        parser.error(f"--set must be KEY=V1,V2,... and --jobs whole numbers >= 1, got {args.set!r}, {args.jobs}")
    where = Path(tempfile.mkdtemp(prefix="edgeprune-queue-"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        scratch_copy(repo_root(), where, Path(args.params))
        tic = time.perf_counter()
        _run(_dvc("repro", "--quiet"), where, env)
        baseline = time.perf_counter() - tic
        _run(["git", "-c", "user.email=bench@example.invalid", "-c", "user.name=bench", "add", "-A"], where)
        _run(["git", "-c", "user.email=bench@example.invalid", "-c", "user.name=bench", "commit", "-qm", "baseline"], where)
        node = yaml.safe_load((where / "params.yaml").read_text())
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        override = key if node is not None else f"+{key}"  # a key the profile leaves at its default is added
        wall = {}
        for jobs in args.jobs:
            for i, value in enumerate(values.split(",")):
                _run(_dvc("exp", "run", "--queue", "-S", f"{override}={value}", "--name", f"j{jobs}-{i}"), where, env)
            tic = time.perf_counter()
            _run(_dvc("queue", "start", "-j", str(jobs)), where, {**env, WORKERS_ENV: str(jobs)})
            status = drain(where, env)
            wall[jobs] = time.perf_counter() - tic
            wait_for_workers(where, env)
            if "Failed" in status:
                raise RuntimeError(f"a queued experiment failed (-j {jobs}):\n{status}")
        names = _run(_dvc("exp", "list", "--name-only"), where, env, capture=True).split()
        print(f"scratch copy {where}: baseline dvc repro {baseline:.0f} s; {len(values.split(','))} experiments ({args.set})")
        for jobs, seconds in wall.items():
            threads = max(1, (os.cpu_count() or 1) // jobs)
            print(f"-j {jobs}: {seconds:6.1f} s  ({WORKERS_ENV}={jobs}: {threads} torch thread(s) a worker)")
        if 1 in wall:
            print("speedup over -j 1: " + ", ".join(f"-j {j} {wall[1] / s:.2f}x" for j, s in wall.items() if j != 1))
        print("dvc exp list:", ", ".join(sorted(names)) or "(none)")
    finally:
        if (where / ".dvc").is_dir():
            subprocess.run(_dvc("queue", "stop", "--kill"), cwd=where, env=env, capture_output=True)
        if not args.keep:
            shutil.rmtree(where, ignore_errors=True)
