"""The dense models every method stage starts from, and the per-seed checkpoints that make a method
stage resumable.

The dense stage (``edgeprune.stages.dense``) writes ``results/dense/<model>-s<seed>/model.pt``
(final weights) and ``rewind.pt`` (early weights for lottery-ticket rewinding); the method
stages read them here rather than through another stage's module.

A method stage that runs seed after seed (PPO, QSA) saves each finished seed's record under
``results/checkpoints/<stage>/<model>/s<seed>.json`` with a :func:`fingerprint` of everything
the record depends on, and :func:`resume` hands it back only when the fingerprint still
matches: a stage interrupted after two of three seeds re-runs only the third.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from edgeprune.deps import module_closure
from edgeprune.io import read_json
from edgeprune.models import create_model
from edgeprune.paths import ResultPaths

if TYPE_CHECKING:
    from edgeprune.config import Params

__all__ = ["code_digest", "dense_seed_for", "fingerprint", "load_dense", "record_path", "resume"]


def dense_seed_for(params: Params, seed: int) -> int:
    """The dense model a method seed starts from: its own when the dense stage trained it, else the first."""
    return seed if seed in params.train.seeds else params.train.seeds[0]


def load_dense(paths: ResultPaths, model_name: str, seed: int, which: str = "model") -> torch.nn.Module:
    """Rebuild a trained dense model (``which`` = "model" for final, "rewind" for early weights), in eval mode."""
    path = paths.dense(model_name, seed) / f"{which}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the 10_train_dense stage for {model_name} seed {seed}")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = create_model(blob["model"], num_classes=blob["num_classes"])
    model.load_state_dict(blob["state_dict"])
    return model.eval()


def code_digest(module: str, repo: Path | None = None) -> str:
    """Hash of every source file ``module`` imports (:func:`edgeprune.deps.module_closure`, the closure
    DVC's deps are derived from)."""
    digest = hashlib.sha1()
    repo = repo or Path(__file__).resolve().parents[2]  # module_closure reads repo/lib/edgeprune
    for source in sorted(module_closure(repo, [f"import {module}"])):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(
    params: Params, sections: Sequence[str], files: Iterable[Path], module: str, repo: Path | None = None
) -> str:
    """Hash of what a seed's record depends on: the params ``sections`` (dotted names), the bytes of
    ``files`` (the dense weights) and the code of ``module``'s import closure, so a checkpoint made
    by other params, weights or code is never resumed."""
    values: dict[str, Any] = {}
    for name in sections:
        value: Any = params
        for part in name.split("."):
            value = getattr(value, part)
        values[name] = value.model_dump() if hasattr(value, "model_dump") else value
    digest = hashlib.sha1(json.dumps(values, sort_keys=True).encode())
    for path in files:
        digest.update(Path(path).read_bytes())
    digest.update(code_digest(module, repo).encode())
    return digest.hexdigest()[:16]


def record_path(paths: ResultPaths, stage: str, model: str, seed: int) -> Path:
    """Where a seed-by-seed stage keeps one finished seed's record."""
    return paths.stage_checkpoints(stage, model) / f"s{seed}.json"


def resume(path: Path, expected: str) -> dict[str, Any] | None:
    """A finished seed's record at ``path`` if its ``fingerprint`` is ``expected``, else None."""
    if not path.is_file():
        return None
    record = read_json(path)
    return record if record.get("fingerprint") == expected else None
