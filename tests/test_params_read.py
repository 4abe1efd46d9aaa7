"""Every params key a stage reads is one its dvc.yaml ``params:`` lists, and every key it lists is read.

DVC re-runs a stage when a key it lists changes, and only then: a key read but not listed is a
stale-result bug, a key listed but never read re-runs the stage for nothing. The test runs each
stage's notebook code in-process, in pipeline order, on the tiny profile (one PPO seed), with ``load_params``
returning a view that records every key read through it (a section serialised whole, e.g. by
``model_dump``, counts as reading all of it).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import matplotlib
import pytest
import yaml
from pydantic import BaseModel

import edgeprune.config

REPO = Path(__file__).resolve().parents[1]
LOAD_PARAMS = edgeprune.config.load_params  # the real loader, before any test patches it


class Recorder:
    """A read-only view of a params model that adds the dotted key of every field read to ``reads``."""

    def __init__(self, model: BaseModel, path: str, reads: set[str]) -> None:
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_reads", reads)

    def __getattr__(self, name: str) -> Any:
        model, path, reads = self._model, self._path, self._reads
        value = getattr(model, name)
        key = f"{path}.{name}" if path else name
        if name in type(model).model_fields:
            if isinstance(value, BaseModel):
                return Recorder(value, key, reads)
            reads.add(key)
        elif name.startswith("model_"):  # model_dump & co. read the whole section
            reads.add(path or "<everything>")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("params are read-only")


def _stages() -> list[tuple[str, str, list[str]]]:
    """(stage, notebook, listed params) in dvc.yaml order, for the stages that run a notebook."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    out = []
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        notebook = re.search(r"papermill\s+(\S+\.ipynb)", body["cmd"])
        if notebook:
            out.append((name, notebook.group(1), [str(p) for p in body.get("params", [])]))
    return out


def _run_notebook(path: Path, parameters: dict[str, Any], reads: set[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edgeprune.config, "load_params", lambda p: Recorder(LOAD_PARAMS(p), "", reads))
    namespace: dict[str, Any] = {"display": lambda *a, **k: None, "__name__": "__main__"}
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        exec(compile("".join(cell["source"]), str(path), "exec"), namespace)  # noqa: S102
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            namespace.update(parameters)  # what papermill injects after the parameters cell


def _covered(key: str, listed: list[str]) -> bool:
    return any(key == entry or key.startswith(entry + ".") for entry in listed)


def _used(entry: str, reads: set[str]) -> bool:
    return any(r == entry or r.startswith(entry + ".") or entry.startswith(r + ".") for r in reads)


@pytest.mark.slow
def test_each_stage_reads_exactly_the_params_it_lists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    matplotlib.use("Agg")
    monkeypatch.chdir(REPO)
    tiny = yaml.safe_load((REPO / "lib" / "edgeprune" / "profiles" / "tiny.yaml").read_text())
    tiny["ppo"]["seeds"] = [0]  # one PPO seed reads the same keys as three, in a third of the time
    params_file = str(tmp_path / "params.yaml")
    Path(params_file).write_text(yaml.safe_dump(tiny))
    problems = []
    for stage, notebook, listed in _stages():
        reads: set[str] = set()
        items = {"model": tiny["train"]["models"][0], "seed": tiny["train"]["seeds"][0]}
        parameters = {"params_file": params_file, "results_dir": str(tmp_path / "results"), **items}
        _run_notebook(REPO / notebook, parameters, reads, monkeypatch)
        unlisted = sorted(k for k in reads if not _covered(k, listed))
        unread = sorted(e for e in listed if not _used(e, reads))
        if unlisted or unread:
            problems.append(f"{stage}: read but not listed {unlisted}; listed but never read {unread}")
    assert not problems, "\n".join(problems)
