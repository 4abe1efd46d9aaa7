"""End to end: the README's `make repro` on the tiny profile in a temporary copy of the repository.

It runs from a shell whose PATH lacks the virtual environment (as a new user's shell does): the
Makefile, not an activated venv, must put papermill and dvc where the stage commands find them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from edgeprune.claims import CLAIMS
from edgeprune.verdicts import VERDICTS

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent  # not resolved: the venv's bin, not the interpreter it links to


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def make(target: str, cwd: Path) -> str:
    """``make target`` with this venv (VENV=...) from a shell whose PATH does not contain it."""
    bare = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != VENV_BIN)
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"} | {"PATH": bare}
    proc = subprocess.run(["make", target, f"VENV={VENV_BIN.parent}"], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"make {target} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
def test_dvc_repro_on_tiny_params(tmp_path: Path) -> None:
    archive = REPO / "data" / "cifar10-jpeg.zip"
    if not archive.is_file():
        pytest.fail(f"{archive} missing: run `make data` (dvc pull) first")
    work = tmp_path / "repo"
    files = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).split("\n")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (work / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, work / name)
    (work / "data").mkdir()
    shutil.copy2(archive, work / "data" / archive.name)
    tiny = yaml.safe_load((REPO / "lib" / "edgeprune" / "profiles" / "tiny.yaml").read_text())
    tiny["ppo"]["seeds"] = [0]  # the nbval notebooks run PPO's three tiny seeds; one is enough end to end
    (work / "params.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    (work / "dvc.lock").unlink(missing_ok=True)
    run(["git", "init", "-q"], work)
    run(["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "add", "-A"], work)
    run(["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "commit", "-qm", "copy"], work)

    # `make repro` pulls the data: from this checkout's DVC cache, used as the copy's remote
    run(["dvc", "remote", "modify", "--local", "shared", "url", str(REPO / ".dvc" / "cache")], work)
    make("repro", work)
    assert "up to date" in make("repro", work)  # the README's re-run command: nothing changed, nothing re-runs

    metrics = json.loads((work / "results/dense/mobilenet_v3_small-s0/metrics.json").read_text())
    assert metrics["train_images"] == 320 and 0.0 <= metrics["test_top1"] <= 100.0
    summary = json.loads((work / "results/data/summary.json").read_text())
    assert summary["counts"]["test"] == [40] * 10
    rows = pd.read_csv(work / "results/baselines/mobilenet_v3_small/rows.csv")
    assert set(rows.method) == {"none", "l1_filter", "l1_regularised", "magnitude_structured", "magnitude_unstructured"}
    assert sorted(rows.recovery_steps.dropna().unique()) == [2, 4]  # the budget axis: tiny's two budgets
    structured = rows[(rows.method == "l1_filter") & (rows.budget == 0)].iloc[0]
    dense = rows[rows.method == "none"].iloc[0]
    assert structured.macs < dense.macs and structured.params < dense.params
    akperl = pd.read_csv(work / "results/akperl/mobilenet_v3_small/rows.csv")
    assert "akperl" in set(akperl.method) and {"l1_filter", "none"} <= set(akperl.method)
    assert json.loads((work / "results/qsa/mobilenet_v3_small/summary.json").read_text())
    ppo = pd.read_csv(work / "results/ppo/mobilenet_v3_small/rows.csv")
    assert {"ppo", "static_pq"} <= set(ppo.method)
    power = pd.read_csv(work / "results/device/power.csv")
    assert set(power.device) >= {"rpi4", "jetson-nano-10w"}
    assert power[power.device == "rpi4"].source.str.startswith("modelled").all()
    assert set(power.stage) == {"baselines", "akperl", "qsa", "ppo"}  # every method's kept models costed
    claims = pd.read_csv(work / "results/tables/claims.csv", keep_default_na=False)
    assert len(claims) == len(CLAIMS) and set(claims.verdict) <= set(VERDICTS)
    assert {"verdict @ 2 steps", "verdict @ 4 steps", "trend"} <= set(claims.columns)
    assert (claims.ours != "—").sum() >= 10  # most claims measured, even on tiny data
    assert (work / "results/tables/papers/akperl_table1.tex").is_file()
    assert (work / "results/tables/stats/welch.csv").is_file()
    for report in ("00_data", "10_train_dense/mobilenet_v3_small-s0", "20_baselines/mobilenet_v3_small",
                   "30_akperl_dqn/mobilenet_v3_small", "40_qsa/mobilenet_v3_small", "50_ppo_prune_quant/mobilenet_v3_small",
                   "60_device_power", "90_tables", "91_stats"):  # fmt: skip
        assert (work / f"reports/{report}.html").stat().st_size > 10_000
    index = (work / "reports/index.html").read_text()
    assert 'href="90_tables.html"' in index and "Claims check" in index
    assert (work / "results/figures/00_data/conditions.png").is_file()
    assert "up to date" in run(["dvc", "status"], work).lower()
    bytecode = work / "lib/edgeprune/ppo/__pycache__"  # what any import of the package may write
    bytecode.mkdir(exist_ok=True)
    (bytecode / "agent.cpython-311.pyc").write_bytes(b"\x00")
    assert "up to date" in run(["dvc", "status"], work).lower()  # .dvcignore: bytecode is no dependency
    metrics_shown = run(["dvc", "metrics", "show"], work)
    assert "top1" in metrics_shown and "verdicts.reproduced" in metrics_shown

    # a change to any module a stage imports re-runs that stage (dvc.yaml deps are the import closure)
    touched = {
        "data": "stages/data.py", "train_dense@mobilenet_v3_small-0": "stages/dense.py",
        "baselines@mobilenet_v3_small": "stages/baselines.py", "akperl@mobilenet_v3_small": "akperl/agent.py",
        "qsa@mobilenet_v3_small": "qsa/cycle.py", "ppo@mobilenet_v3_small": "ppo/search.py",
        "device_power": "stages/device_power.py", "tables": "report/tables.py", "stats": "report/analysis.py",
        "report": "report/html.py",
    }  # fmt: skip
    for module in {*touched.values(), "recover/protocol.py"}:
        path = work / "lib" / "edgeprune" / module
        path.write_text(path.read_text() + "\n# a change\n")
    status = json.loads(run(["dvc", "status", "--json"], work))
    changed = {stage: {p for entry in entries if isinstance(entry, dict) for p in entry.get("changed deps", {})}
               for stage, entries in status.items()}  # fmt: skip
    for stage, module in touched.items():
        assert f"lib/edgeprune/{module}" in changed.get(stage, set()), stage
    for stage in ("baselines", "akperl", "qsa", "ppo"):  # the one recovery protocol is every method's dependency
        assert "lib/edgeprune/recover/protocol.py" in changed[f"{stage}@mobilenet_v3_small"]
