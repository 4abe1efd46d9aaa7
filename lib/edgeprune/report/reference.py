"""The reference run's committed outputs, against which every quick run's verdicts are put.

The ``reference`` profile (``lib/edgeprune/profiles/reference.yaml``) runs the quick profile's
model at paper-recipe budgets on a CPU, over as many sittings as it takes (``make repro
PROFILE=reference`` resumes stage by stage). Its small outputs are committed under
``results/reference/`` by ``python -m edgeprune.report reference``: the claims check, the
method stages' tidy rows and summaries, the dense model's metrics (no weights), and
``provenance.json`` (commit, params, machine, stage times). The tables stage reads
``claims.csv`` from there and puts the reference verdict beside each quick verdict, except where
the reference's method stage ran another version of the method than this run's
(:data:`METHOD_SETTINGS`): those claims are *not compared*, with the reason.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from edgeprune.claims import CLAIMS
from edgeprune.io import read_json, write_json_atomic
from edgeprune.verdicts import NOT_COMPARED

__all__ = ["METHOD_SETTINGS", "SMALL_OUTPUTS", "describe", "load_claims", "method_changes", "snapshot"]

SMALL_OUTPUTS = (
    "tables/claims.csv", "tables/claims.md", "tables/claims_summary.json",
    "dense/*/metrics.json", "dense/*/timing.json",
    "baselines/*/rows.csv", "baselines/*/summary.json", "baselines/*/unreachable.json",
    "akperl/*/rows.csv", "akperl/*/summary.json", "akperl/*/ablations.csv", "akperl/*/stream.csv",
    "qsa/*/rows.csv", "qsa/*/summary.json", "qsa/*/stream.csv", "qsa/*/triggers.csv",
    "ppo/*/rows.csv", "ppo/*/summary.json", "ppo/*/comparison.csv",
    "device/power.csv",
)  # fmt: skip
"""Glob patterns, relative to the results folder, of the outputs a reference snapshot keeps (no weights)."""


METHOD_SETTINGS: dict[str, tuple[str, tuple[str, ...]]] = {"PPO": ("ppo", ("signal", "repair"))}
"""Per paper, the method stage and the ``summary.json`` keys that record which version of the method ran
(for PPO: the reward signal and the floor repair). A reference whose keys differ from this run's judged
another method, so its claims of that paper are not compared; a key it lacks predates the setting."""


def method_changes(results: str | Path, folder: str | Path) -> dict[str, str]:
    """Per paper, why the reference run in ``folder`` ran another method version than the run in ``results``.

    Compares :data:`METHOD_SETTINGS`' keys of each model's summary present in both runs; papers whose
    settings agree (or that either run lacks) are left out.
    """
    reasons = {}
    for paper, (stage, keys) in METHOD_SETTINGS.items():
        changed = []
        for ours_path in sorted((Path(results) / stage).glob("*/summary.json")):
            theirs_path = Path(folder) / stage / ours_path.parent.name / "summary.json"
            if not theirs_path.is_file():
                continue
            ours, theirs = read_json(ours_path), read_json(theirs_path)
            changed += [
                f"{stage}.{key} {theirs.get(key, 'not recorded')} there, {ours.get(key, 'not recorded')} here"
                for key in keys
                if theirs.get(key) != ours.get(key)
            ]
        if changed:
            reasons[paper] = "reference ran another method version (" + "; ".join(dict.fromkeys(changed)) + ")"
    return reasons


def load_claims(folder: str | Path, results: str | Path | None = None) -> pd.DataFrame | None:
    """The reference run's claims table (``<folder>/tables/claims.csv``), or None when none is committed.

    With ``results`` (this run's results folder), its ``not compared`` column gives, per claim, the
    :func:`method_changes` reason that makes the reference's verdict judge another method ("" where none).
    """
    path = Path(folder) / "tables" / "claims.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, keep_default_na=False)
    if results is not None:
        reasons = method_changes(results, folder)
        paper = {claim.id: claim.paper for claim in CLAIMS}
        table[NOT_COMPARED] = table["id"].map(lambda i: reasons.get(paper.get(i, ""), ""))
    return table


def _git(*args: str, cwd: Path) -> str:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _machine() -> dict[str, object]:
    import torch  # imported only when a snapshot is made: the tables stage reads claims without it

    from edgeprune.timing import cpu_model

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {
        "cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": round(memory / 2**30, 1) if memory else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
    }  # fmt: skip


def _stage_seconds(results: Path) -> dict[str, float]:
    """Wall time of each stage the snapshot holds, as the stages recorded it."""
    seconds: dict[str, float] = {}
    for path in sorted(results.glob("dense/*/timing.json")):
        seconds[f"train_dense/{path.parent.name}"] = read_json(path).get("train_seconds")
    for stage, key in (("akperl", ("timing_s", "total_s")), ("qsa", ("stage_seconds",)), ("ppo", ("stage_seconds",))):
        for path in sorted(results.glob(f"{stage}/*/summary.json")):
            value = read_json(path)
            for k in key:
                value = value.get(k, {}) if isinstance(value, dict) else None
            if isinstance(value, (int, float)):
                seconds[f"{stage}/{path.parent.name}"] = round(float(value), 1)
    return seconds


def snapshot(results: str | Path, out: str | Path, params_file: str | Path, note: str = "") -> list[Path]:
    """Copy a finished reference run's small outputs from ``results`` to ``out`` with ``provenance.json``.

    ``out`` is replaced whole (its README.md kept), so a snapshot never mixes two runs. Raises when the run has no
    claims table yet (the tables stage has not run).
    """
    results, out, params_file = Path(results), Path(out), Path(params_file)
    if not (results / "tables" / "claims.csv").is_file():
        raise FileNotFoundError(f"{results}/tables/claims.csv not found: finish the reference run (dvc repro) first")
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    written = []
    for pattern in SMALL_OUTPUTS:
        for source in sorted(results.glob(pattern)):
            target = staging / source.relative_to(results)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written.append(out / source.relative_to(results))
    shutil.copyfile(params_file, staging / "params.yaml")
    if (out / "README.md").is_file():  # the folder's own description stays
        shutil.copyfile(out / "README.md", staging / "README.md")
    repo = params_file.resolve().parent
    provenance = {
        "made": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("rev-parse", "HEAD", cwd=repo),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no", cwd=repo).strip()),
        "params": "params.yaml (copied beside this file)",
        "machine": _machine(),
        "stage_seconds": _stage_seconds(results),
        "note": note,
    }
    write_json_atomic(staging / "provenance.json", provenance)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return [*written, out / "params.yaml", out / "provenance.json"]


def describe(folder: str | Path) -> str:
    """One line naming the reference run a folder holds (commit, machine, date), for the report."""
    path = Path(folder) / "provenance.json"
    if not path.is_file():
        return "no reference run committed"
    p = json.loads(path.read_text())
    machine = p.get("machine", {})
    return f"reference run of commit {p.get('commit', '?')[:10]} on {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores), {p.get('made', '?')}"
