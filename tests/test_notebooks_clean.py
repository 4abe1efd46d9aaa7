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


def test_notebook_cells_and_pipeline_tests_form_one_xdist_unit_each() -> None:
    from conftest import xdist_scope

    cells = ["notebooks/10_train_dense.ipynb::Cell 0", "notebooks/50_ppo_prune_quant.ipynb::Cell 3"]
    assert {xdist_scope(c) for c in cells} == {"notebooks"}
    assert xdist_scope("tests/test_pipeline.py::test_repro[tiny]") == "pipeline"
    assert xdist_scope("tests/test_prune.py::test_x") == "tests/test_prune.py::test_x"


def test_the_scheduler_keeps_a_group_on_one_worker(tmp_path: Path) -> None:
    """End to end under ``pytest -n 2``: every test of a fake test_pipeline.py reports one worker,
    while the other tests spread (the grouping ``--dist loadgroup`` lost under pytest 9)."""
    import subprocess
    import sys

    tests_dir = Path(__file__).resolve().parent
    (tmp_path / "conftest.py").write_text(
        "import importlib.util, sys\n"
        f"sys.path.insert(0, {str(tests_dir)!r})\n"
        f"spec = importlib.util.spec_from_file_location('edgeprune_conftest', {str(tests_dir / 'conftest.py')!r})\n"
        "module = importlib.util.module_from_spec(spec)\nspec.loader.exec_module(module)\n"
        "pytest_xdist_make_scheduler = module.pytest_xdist_make_scheduler\n"
    )
    body = "import os, time, pytest\n@pytest.mark.parametrize('i', range(6))\ndef test_t(i):\n    time.sleep(0.1)\n"
    body += "    print('WORKER', __name__, os.environ['PYTEST_XDIST_WORKER'])\n"
    (tmp_path / "test_pipeline.py").write_text(body)
    (tmp_path / "test_other.py").write_text(body)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-o", "addopts=", "-rA", "-q", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    workers = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("WORKER")]
    assert len({w for module, w in workers if module == "test_pipeline"}) == 1
    assert len(workers) == 12
