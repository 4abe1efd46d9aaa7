"""The dense models every method stage starts from: which one a seed prunes, and loading it.

The dense stage (``edgeprune.stages.dense``) writes ``results/dense/<model>-s<seed>/model.pt``
(final weights) and ``rewind.pt`` (early weights for lottery-ticket rewinding); the method
stages read them here rather than through another stage's module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from edgeprune.models import create_model
from edgeprune.paths import ResultPaths

if TYPE_CHECKING:
    from edgeprune.config import Params

__all__ = ["dense_seed_for", "load_dense"]


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
