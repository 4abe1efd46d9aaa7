"""The pruning core every method builds on: Torch-Pruning dependency groups, channel ranking and rounding.

Static baselines (:mod:`edgeprune.prune`), AKPERL's units (:mod:`edgeprune.akperl.units`),
PPO's plans (:mod:`edgeprune.ppo.pruning`) and QSA's masks (:mod:`edgeprune.qsa.masks`) all
build one :func:`dependency_graph`, walk its :func:`prunable_groups`, count a layer's
channels with :func:`width`, and round the channels a group keeps with one rule,
:func:`channels_to_keep`. Torch-Pruning does the graph; the importance and the rounding rule
are the project's (reasons in their docstrings).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch_pruning as tp
from torch import nn

__all__ = [
    "PRUNABLE_TYPES", "BNScaleImportance", "FilterNormImportance", "channels_to_keep", "dependency_graph", "group_producers",
    "prunable_groups", "width",
]  # fmt: skip

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)


def width(layer: nn.Module) -> int:
    """Output channels of a Conv2d, output features of a Linear."""
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def dependency_graph(model: nn.Module, input_shape: Sequence[int]) -> tp.DependencyGraph:
    """Torch-Pruning's dependency graph of ``model``, traced with one random input on the model's device."""
    device = next(model.parameters()).device
    return tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, *input_shape, device=device))


def prunable_groups(graph: tp.DependencyGraph, ignored: Sequence[nn.Module]) -> Iterator[tp.Group]:
    """Every dependency group rooted at a Conv2d / Linear that is not in ``ignored`` (modules)."""
    yield from graph.get_all_groups(ignored_layers=list(ignored), root_module_types=list(PRUNABLE_TYPES))


def channels_to_keep(channels: int, rate: float, round_to: int = 1) -> int:
    """Channels a group of ``channels`` keeps at prune rate ``rate`` (at least one): the project's rounding rule.

    ``channels * (1 - rate)`` rounded down, or with ``round_to`` > 1 rounded to the
    *nearest* multiple of ``round_to`` (halves up; int8 kernels run much faster on
    multiples of 8), at least ``round_to``; a group no larger than ``round_to`` is left
    whole. Nearest, not down: on the quick model's small groups (16, 24, 40 channels)
    rounding down turned a 12.5% rate into 50%, 33% and 20% of the channels, and the
    uniform 12.5% network scored 49.8% in the search instead of 73.3%.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"prune rate must be in [0, 1), got {rate!r}")
    if round_to < 1:
        raise ValueError(f"round_to must be >= 1, got {round_to}")
    keep = channels * (1.0 - rate)
    if round_to > 1:
        keep = channels if channels <= round_to else max(round_to, math.floor(keep / round_to + 0.5) * round_to)
    return max(1, min(channels, math.floor(keep + 1e-9)))


class FilterNormImportance(tp.importance.Importance):
    """Channel importance = the Lp norm of every filter that produces the channel, summed.

    Written here because Torch-Pruning's ``GroupMagnitudeImportance`` skips depthwise
    convolutions and mixes in BN scales and consumer (input-side) weights; Li et al.
    rank a channel by its producing filter alone. Over a dependency group (a residual
    sum, a depthwise conv after its expansion conv) the producers' norms add up.
    """

    OUT_FNS = (
        tp.pruner.function.prune_conv_out_channels,
        tp.pruner.function.prune_depthwise_conv_out_channels,
        tp.pruner.function.prune_linear_out_channels,
    )

    normalise_groups = True
    """Global pruning ranks a channel by its score over its group's mean (layers of different fan-in
    compete on one scale); False ranks raw scores."""

    def __init__(self, p: int) -> None:
        self.p = p

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        scores = None
        seen = set()
        for item in group:
            layer = item.dep.target.module
            if item.dep.handler not in self.OUT_FNS or not isinstance(layer, PRUNABLE_TYPES) or layer in seen:
                continue
            if any(i is None for i in item.root_idxs):  # no index mapping to the root: skip, as Torch-Pruning does
                continue
            seen.add(layer)
            norms = layer.weight.detach()[item.idxs].flatten(1).norm(p=self.p, dim=1).float().cpu()
            if scores is None:
                scores = torch.zeros(len(group[0].idxs))
            scores.scatter_add_(0, torch.tensor(item.root_idxs), norms)
        return scores


def group_producers(group: tp.Group, importance: FilterNormImportance) -> set[nn.Module]:
    """The prunable layers of a dependency group whose *outputs* lose the group's channels."""
    return {
        item.dep.target.module
        for item in group
        if item.dep.handler in importance.OUT_FNS and isinstance(item.dep.target.module, PRUNABLE_TYPES)
    }


class BNScaleImportance(FilterNormImportance):
    """Channel importance = |gamma| of the BatchNorm scales the channel passes through, summed over the group.

    Network slimming's criterion (Liu et al., ICCV 2017), for a network trained with an L1
    penalty on those scales (:meth:`edgeprune.recover.protocol.Recovery.sparsity_train`): the
    penalty puts every layer's scales on one scale, so global pruning ranks them raw
    (``normalise_groups`` False). Torch-Pruning's ``BNScaleImportance`` averages and normalises
    per group; the project's group handling (producers, rounding) is :class:`FilterNormImportance`'s.
    A group without a BatchNorm has no score and is not pruned.
    """

    normalise_groups = False

    def __init__(self) -> None:
        super().__init__(p=1)

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        scores = None
        seen = set()
        for item in group:
            layer = item.dep.target.module
            if not isinstance(layer, nn.modules.batchnorm._BatchNorm) or not layer.affine or layer in seen:
                continue
            if any(i is None for i in item.root_idxs):
                continue
            seen.add(layer)
            if scores is None:
                scores = torch.zeros(len(group[0].idxs))
            scores.scatter_add_(0, torch.tensor(item.root_idxs), layer.weight.detach()[item.idxs].abs().float().cpu())
        return scores
