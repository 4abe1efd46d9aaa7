"""Notebooks are committed thin and clean: no outputs, a tagged parameters cell, a kernelspec."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"00_data", "10_train_dense"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_and_parameterised(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["language"] == "python"  # papermill needs it
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "outputs committed: run nbstripout"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "params_file" in tagged[0].source and "results_dir" in tagged[0].source
    assert sum(len(c.source.splitlines()) for c in code) < 80, "logic belongs in lib/edgeprune, not the notebook"
