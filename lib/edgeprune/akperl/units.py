"""What one AKPERL decision prunes, and the physical pruning that carries it out.

A *unit* is one Torch-Pruning dependency group whose root is a prunable Conv2d /
Linear (:func:`edgeprune.prune.prunable_layers`): the layer plus every layer coupled
to its output channels (the depthwise conv and squeeze-excitation after an expansion
conv, every conv that adds into the same residual stream). Removing a channel of one
layer of a group forces the same removal in the others, so the group, not the single
layer, is the honest "layer" an agent decides for; it is named after its root layer.

Levels are fractions of the unit's channels: :data:`LEVELS` = 0, 25, 50, 75, 100 %, the
kept count rounded to the nearest multiple of the unit's ``round_to`` by the project's one
rule (:func:`edgeprune.groups.channels_to_keep`; 8 in every profile, the x86 int8 kernels'
fast path). Within a unit the channels of smallest filter L1 norm go first
(:class:`edgeprune.groups.FilterNormImportance`, Li et al. 2017). A unit keeps at least
one channel, so 100 % has no channel meaning; it means *remove the whole block* when
the unit is the first unit of a residual block with an identity skip (output
``x + f(x)``): the block is replaced by ``nn.Identity`` and its other units vanish with
it. Everywhere
else 100 % is not a legal level, and since Stable-Baselines3's DQN has no action
masks, it is mapped to the nearest legal level, 75 % (:func:`legal_level`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from edgeprune.akperl.params import LEVELS
from edgeprune.measure import INPUT_SHAPE
from edgeprune.models import BasicBlock
from edgeprune.counting import layer_costs
from edgeprune.groups import (
    PRUNABLE_TYPES, FilterNormImportance, channels_to_keep, dependency_graph, group_producers, prunable_groups, width,
)  # fmt: skip
from edgeprune.prune import classifier_name, prunable_layers

REMOVE_BLOCK = len(LEVELS) - 1  # index of the 100 % level


@dataclass(frozen=True)
class PruningUnit:
    """One decision of an episode: a dependency group of layers pruned together."""

    name: str  # the group's root layer
    layers: tuple[str, ...]  # every Conv2d / Linear whose weights the group's pruning shrinks
    producers: tuple[str, ...]  # the prunable layers among them whose *output* channels it removes
    kind: str  # "conv", "depthwise" (group holds a depthwise conv) or "linear"
    channels: int  # channels of the root layer's output in the dense model
    mac_share: float  # MACs of ``layers`` / MACs of the dense network
    position: float  # share of the dense network's MACs executed before the unit's first layer
    block: str | None  # residual block removed at 100 %; None where 100 % maps to 75 %
    round_to: int = 1  # channels kept rounded to the nearest multiple (edgeprune.groups.channels_to_keep)

    def removed(self, level_index: int) -> int:
        """Channels a (non-block) level removes from the root: ``LEVELS[level]`` of them, the kept count
        rounded by the project's one rule (:func:`edgeprune.groups.channels_to_keep`), one always kept."""
        return self.channels - channels_to_keep(self.channels, min(LEVELS[level_index], LEVELS[REMOVE_BLOCK - 1]), self.round_to)


def levels_percent(levels: Sequence[int]) -> str:
    """Level indices as the percentages they prune, e.g. ``"0/25/75"``."""
    return "/".join(f"{LEVELS[v] * 100:.0f}" for v in levels)


def removable_blocks(model: nn.Module) -> list[str]:
    """Names of blocks computing ``x + f(x)`` with an identity skip, which ``nn.Identity`` can replace.

    Recognised: torchvision's ``InvertedResidual`` (``use_res_connect``), timm's
    efficientnet blocks (``has_skip``) and :class:`edgeprune.models.BasicBlock` with an
    identity shortcut (its ``relu(x + f(x))`` is ``x`` without ``f`` because ``x`` is
    already the output of a ReLU).
    """
    names = []
    for name, module in model.named_modules():
        if getattr(module, "use_res_connect", False) is True or getattr(module, "has_skip", False) is True:
            names.append(name)
        elif isinstance(module, BasicBlock) and isinstance(module.shortcut, nn.Identity):
            names.append(name)
    return names


def _is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels


def find_units(
    model: nn.Module,
    *,
    ignored_layers: Sequence[str] | None = None,
    input_shape: Sequence[int] = INPUT_SHAPE,
    min_mac_share: float = 0.0,
    round_to: int = 1,
) -> list[PruningUnit]:
    """The decision units of ``model`` in forward order.

    Units whose layers hold less than ``min_mac_share`` of the MACs (squeeze-excitation
    convs, mostly) stay dense and are left out; ``round_to`` is how each unit rounds the
    channels it keeps. A model without prunable layers, or whose units are all below the
    threshold, is a ``ValueError``.
    """
    if not 0.0 <= min_mac_share < 1.0:
        raise ValueError(f"min_mac_share must be in [0, 1), got {min_mac_share}")
    layers = prunable_layers(model, ignored_layers, input_shape)
    names = {module: name for name, module in model.named_modules()}
    costs = layer_costs(model, (1, *input_shape))
    macs = {c.name: c.macs for c in costs}
    total = sum(macs.values())
    order = {c.name: i for i, c in enumerate(costs)}
    before = [0] * (len(costs) + 1)
    for i, c in enumerate(costs):
        before[i + 1] = before[i] + c.macs
    blocks = removable_blocks(model)
    ignored = [m for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES) and n not in layers]
    graph = dependency_graph(model, input_shape)
    importance = FilterNormImportance(p=1)
    units = []
    for group in prunable_groups(graph, ignored):
        if importance(group) is None:  # no producing filter to rank: nothing this unit could remove
            continue
        root = group[0].dep.target.module
        members = sorted(
            {names[i.dep.target.module] for i in group if isinstance(i.dep.target.module, PRUNABLE_TYPES)},
            key=lambda n: order.get(n, len(order)),
        )
        first = min(order[n] for n in members if n in order)
        kind = "linear" if isinstance(root, nn.Linear) else "depthwise" if any(
            _is_depthwise(model.get_submodule(n)) for n in members
        ) else "conv"
        block = next((b for b in blocks if all(n.startswith(b + ".") for n in members)), None)
        share = sum(macs.get(n, 0) for n in members) / total
        produced = group_producers(group, importance)
        producers = tuple(n for n in members if n in layers and layers[n] in produced)
        units.append(
            PruningUnit(
                names[root], tuple(members), producers, kind, width(root), share, before[first] / total, block, round_to
            )
        )
    units.sort(key=lambda u: (u.position, order[u.name]))
    # Only a block's first unit (its expansion / first conv) can remove it; a later unit
    # inside the same block (a squeeze-excitation conv) maps 100 % to 75 % like any other.
    seen: set[str] = set()
    for i, unit in enumerate(units):
        if unit.block is not None:
            if unit.block in seen:
                units[i] = replace(unit, block=None)
            seen.add(unit.block)
    kept = [u for u in units if u.mac_share >= min_mac_share]
    if not kept:
        raise ValueError(
            f"{type(model).__name__} has no pruning unit with at least {min_mac_share:.1%} of the MACs "
            f"(largest: {max((u.mac_share for u in units), default=0):.1%}); lower min_mac_share"
        )
    return kept


def legal_level(unit: PruningUnit, level_index: int) -> int:
    """The level index actually applied: 100 % becomes 75 % where no block can be removed."""
    if not 0 <= level_index < len(LEVELS):
        raise ValueError(f"level index must be in 0..{len(LEVELS) - 1}, got {level_index}")
    if level_index == REMOVE_BLOCK and unit.block is None:
        return REMOVE_BLOCK - 1
    return level_index


class LayerwisePruner:
    """Physically prunes a private copy of a model one unit at a time.

    One Torch-Pruning ``DependencyGraph`` is built per copy and reused for every unit,
    as Torch-Pruning's own iterative pruners do. Units must be applied in the order
    of :func:`find_units`; a unit inside a block removed earlier is :meth:`skipped`.
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int] = INPUT_SHAPE) -> None:
        self.model = copy.deepcopy(model).eval()
        self.graph = dependency_graph(self.model, input_shape)
        self.removed: list[str] = []
        self._importance = FilterNormImportance(p=1)

    def skipped(self, unit: PruningUnit) -> bool:
        """True when ``unit`` sat inside a block that has been removed."""
        return any(unit.name.startswith(block + ".") for block in self.removed)

    def apply(self, unit: PruningUnit, level_index: int) -> int:
        """Prune ``unit`` to ``LEVELS[legal_level(unit, level_index)]``; return the applied index."""
        level_index = legal_level(unit, level_index)
        if self.skipped(unit):
            raise ValueError(f"unit {unit.name!r} lies in removed block {self.removed}; it cannot be pruned")
        if level_index == 0:
            return 0
        if level_index == REMOVE_BLOCK:
            parent, _, child = unit.block.rpartition(".")
            setattr(self.model.get_submodule(parent) if parent else self.model, child, nn.Identity())
            self.removed.append(unit.block)
            return level_index
        root = self.model.get_submodule(unit.name)
        n = width(root)
        k = unit.removed(level_index)
        if k == 0:
            return level_index
        handler = self.graph.get_pruner_of_module(root).prune_out_channels
        scores = self._importance(self.graph.get_pruning_group(root, handler, idxs=list(range(n))))
        idxs = torch.argsort(scores, stable=True)[:k].tolist()
        group = self.graph.get_pruning_group(root, handler, idxs=idxs)
        group.prune()
        return level_index


def apply_levels(
    model: nn.Module, units: Sequence[PruningUnit], levels: Sequence[int], input_shape: Sequence[int] = INPUT_SHAPE
) -> nn.Module:
    """A physically pruned copy of ``model`` with ``levels[i]`` (indices into :data:`LEVELS`) on ``units[i]``.

    Levels of units inside a removed block are ignored; too few or too many levels is
    a ``ValueError``.
    """
    if len(levels) != len(units):
        raise ValueError(f"got {len(levels)} levels for {len(units)} units")
    pruner = LayerwisePruner(model, input_shape)
    for unit, level in zip(units, levels):
        if not pruner.skipped(unit):
            pruner.apply(unit, int(level))
    return pruner.model


def out_channels(model: nn.Module, ignored_layers: Sequence[str] | None = None, input_shape: Sequence[int] = INPUT_SHAPE) -> int:
    """Output channels summed over the prunable layers (the unit of :mod:`edgeprune.prune`'s sparsity)."""
    return sum(width(m) for m in prunable_layers(model, ignored_layers, input_shape).values())


def channel_sparsity(
    dense: nn.Module, pruned: nn.Module, ignored_layers: Sequence[str] | None = None, input_shape: Sequence[int] = INPUT_SHAPE
) -> float:
    """Fraction of the dense model's prunable output channels that ``pruned`` no longer has.

    The same measure as :attr:`edgeprune.prune.PruneReport.realised` for structured
    pruning; the layers of a removed block count as wholly removed.
    """
    ignored = list(ignored_layers) if ignored_layers is not None else [classifier_name(dense, input_shape)]
    return 1.0 - out_channels(pruned, ignored, input_shape) / out_channels(dense, ignored, input_shape)
