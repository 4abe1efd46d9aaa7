"""Where every stage reads and writes, relative to the repository root.

Notebooks run with the repository root as working directory under papermill and with
``notebooks/`` under nbval; resolving against the root makes both see the same files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding ``dvc.yaml``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"no dvc.yaml at or above {here}: run from inside the edgeprune repository")


def from_root(path: str | Path) -> Path:
    """``path`` unchanged if absolute, else resolved against :func:`repo_root`."""
    path = Path(path)
    return path if path.is_absolute() else repo_root() / path


@dataclass(frozen=True)
class ResultPaths:
    """The layout of one results directory (``results/`` for the pipeline, ``results/nbval`` for tests)."""

    root: Path

    @classmethod
    def at(cls, results_dir: str | Path) -> ResultPaths:
        return cls(from_root(results_dir))

    @property
    def prepared(self) -> Path:
        return self.root / "data" / "prepared.pt"

    @property
    def data_summary(self) -> Path:
        return self.root / "data" / "summary.json"

    def figures(self, stage: str) -> Path:
        return self.root / "figures" / stage

    def dense(self, model: str, seed: int) -> Path:
        """Final weights, rewind weights and metrics of one dense training run."""
        return self.root / "dense" / f"{model}-s{seed}"

    def checkpoint(self, model: str, seed: int) -> Path:
        """The resumable last-epoch checkpoint (a persistent, uncached DVC output)."""
        return self.root / "checkpoints" / "dense" / f"{model}-s{seed}.pt"

    def stage_checkpoints(self, stage: str, model: str) -> Path:
        """A seed-by-seed method stage's checkpoints for one model (a persistent, uncached DVC output)."""
        return self.root / "checkpoints" / stage / model

    def stage_dir(self, stage: str, model: str | None = None) -> Path:
        """The folder a stage writes (per model for the method stages): ``<root>/<stage>[/<model>]``."""
        return self.root / stage if model is None else self.root / stage / model

    def method_rows(self, stage: str, model: str) -> Path:
        """The tidy results table (edgeprune.results) one method stage wrote for one model."""
        return self.stage_dir(stage, model) / "rows.csv"

    def dvclive(self, stage: str, run: str) -> Path:
        return self.root / "dvclive" / stage / run
