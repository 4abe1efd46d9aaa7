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
    "PRUNABLE_TYPES", "BNScaleImportance", "FilterNormImportance", "GroupItem", "bn_scales", "channels_to_keep",
    "dependency_graph", "group_producers", "prunable_groups", "width",
]  # fmt: skip

PRUNABLE_TYPES = (nn.Conv2d, nn.Linear)
GroupItem = tp._helpers.GroupItem
"""One (dependency, indices) entry of a Torch-Pruning group (its package does not export the type)."""


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

    def _key(self, item: GroupItem) -> object:
        """What a score belongs to: a layer counts once per group however many of its dependencies appear."""
        return item.dep.target.module

    def _scores(self, item: GroupItem) -> torch.Tensor | None:
        """Scores of ``item``'s channels (``item.idxs``), or None when the item adds nothing: here the Lp norm
        of each filter a producing Conv2d / Linear computes the channel with."""
        layer = item.dep.target.module
        if item.dep.handler not in self.OUT_FNS or not isinstance(layer, PRUNABLE_TYPES):
            return None
        return layer.weight.detach()[item.idxs].flatten(1).norm(p=self.p, dim=1).float().cpu()

    @torch.no_grad()
    def __call__(self, group: tp.dependency.Group) -> torch.Tensor | None:
        """Per channel of the group's root: the sum of :meth:`_scores` over the group's items, each key once;
        None when no item scores."""
        total = None
        seen = set()
        for item in group:
            key = self._key(item)
            if key in seen or any(i is None for i in item.root_idxs):  # no mapping to the root: skip, as Torch-Pruning does
                continue
            scores = self._scores(item)
            if scores is None:
                continue
            seen.add(key)
            if total is None:
                total = torch.zeros(len(group[0].idxs))
            total.scatter_add_(0, torch.tensor(item.root_idxs), scores)
        return total


def group_producers(group: tp.Group, importance: FilterNormImportance) -> set[nn.Module]:
    """The prunable layers of a dependency group whose *outputs* lose the group's channels."""
    return {
        item.dep.target.module
        for item in group
        if item.dep.handler in importance.OUT_FNS and isinstance(item.dep.target.module, PRUNABLE_TYPES)
    }


def bn_scales(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` with a learnable scale: what network slimming penalises and ranks
    (none in SqueezeNet, which has no BatchNorm: slimming does not apply to it)."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine]


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

    def _scores(self, item: GroupItem) -> torch.Tensor | None:
        layer = item.dep.target.module
        if not isinstance(layer, nn.modules.batchnorm._BatchNorm) or not layer.affine:
            return None
        return layer.weight.detach()[item.idxs].abs().float().cpu()
