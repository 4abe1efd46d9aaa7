"""What the benchmarks that probe a trained model load from a pipeline run: its params, data and dense model."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from edgeprune.checkpoints import load_dense
from edgeprune.config import Params, load_params
from edgeprune.data import PreparedData, Split, load_prepared
from edgeprune.paths import ResultPaths
from edgeprune.recover.protocol import Recovery


@dataclass
class PipelineModel:
    """A dense model of a pipeline run (seed 0), its data, a stratified test subset and the run's recovery protocol."""

    params: Params
    data: PreparedData
    test: Split
    dense: nn.Module
    recovery: Recovery


def load_pipeline_model(params_file: str, results: str, model: str, test_images: int) -> PipelineModel:
    """``results/dense/<model>-s0`` and ``params_file``'s ``finetune`` protocol over the run's prepared data."""
    params, paths = load_params(params_file), ResultPaths.at(results)
    data = load_prepared(paths.prepared)
    test = data.test.subset(test_images, seed=params.data.split_seed)
    return PipelineModel(params, data, test, load_dense(paths, model, 0), Recovery(params.finetune, data.train))
