"""Shared fixtures: tiny fake class-folder archives (no network, no real data needed)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from torchvision.io import encode_jpeg, encode_png

from akperl_helpers import SHAPE, images, tiny_resnet
from edgeprune.akperl.task import PruningTask
from edgeprune.data import Split

REPO = Path(__file__).resolve().parents[1]
NBVAL_RESULTS = REPO / "results" / "nbval"


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Unit tests use tiny tensors: one torch thread, since OpenMP hand-offs cost ~100x on a
    loaded CPU. Notebook and pipeline runs are subprocesses with their own setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_sessionstart(session: pytest.Session) -> None:
    """The nbval notebook runs share results/nbval in pipeline order; start it empty (once, in
    the controlling process when pytest-xdist runs workers)."""
    if not hasattr(session.config, "workerinput"):
        shutil.rmtree(NBVAL_RESULTS, ignore_errors=True)


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under ``pytest -n 2`` (``make test``): every notebook runs in one worker, in file order (each
    reads what the previous ones wrote to results/nbval, and each notebook's cells share one
    kernel), while the end-to-end ``dvc repro`` runs beside them in the other worker.

    A scheduler rather than ``xdist_group`` marks: pytest 9 ignores the node-id suffix through
    which pytest-xdist 3.8 groups marked tests, so ``--dist loadgroup`` silently spread a
    notebook's cells over both workers (a cell then ran in a fresh kernel: NameError)."""
    from xdist.scheduler import LoadScopeScheduling

    class NotebookScopes(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_scope(nodeid)

    return NotebookScopes(config, log)


def xdist_scope(nodeid: str) -> str:
    """The pytest-xdist work unit of a test: all notebook cells together, the pipeline tests
    together, every other test alone."""
    path = nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        return "notebooks"
    if path.endswith("test_pipeline.py"):
        return "pipeline"
    return nodeid


def make_images(n: int, size: int, seed: int, label: int) -> torch.Tensor:
    """Noisy images whose mean colour depends on the label, so classes are learnable."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([(label * 70) % 256, (label * 130) % 256, (label * 200) % 256], dtype=torch.float32)
    noise = torch.randn(n, 3, size, size, generator=g) * 20
    return (base.view(1, 3, 1, 1) + noise).clamp(0, 255).to(torch.uint8)


def write_class_folder_zip(
    path: Path, classes=("cat", "dog", "frog"), n_train: int = 12, n_test: int = 4, size: int = 8, png: bool = False
) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for split, n in (("train", n_train), ("test", n_test)):
            for label, cls in enumerate(classes):
                for i, img in enumerate(make_images(n, size, seed=label + 10 * (split == "test"), label=label)):
                    data = encode_png(img) if png else encode_jpeg(img, quality=95)
                    zf.writestr(f"{split}/{cls}/{i:04d}.{'png' if png else 'jpg'}", data.numpy().tobytes())
    return path


@pytest.fixture
def tiny_zip(tmp_path: Path) -> Path:
    return write_class_folder_zip(tmp_path / "tiny.zip")


@pytest.fixture(scope="module")
def task() -> PruningTask:
    """An AKPERL pruning task on a tiny residual CNN (tests/akperl_helpers.py)."""
    x, y = images(48, 0)
    return PruningTask.build(
        tiny_resnet(), val=Split(x[:16], y[:16]), calib_x=x[16:32], stats_x=x[32:], conditions=["clean", "low_light"],
        input_shape=SHAPE,
    )  # fmt: skip
