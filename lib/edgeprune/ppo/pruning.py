"""Taylor-importance channel pruning with replayable plans.

Channel importance is the first-order Taylor estimate of the change of the loss when a
channel is removed (Molchanov et al., CVPR 2019): |sum over the channel's weights of
w * dL/dw|, from Torch-Pruning's ``GroupTaylorImportance(multivariable=True)``, summed
over every layer of the channel's dependency group (the producing filter and the
consumers' input slices). The gradients are accumulated over a few training batches
with the model in eval mode, so they belong to the function that is being pruned.

Importance is scored once, on the trained dense model, and a pruning decision is a
:class:`PrunePlan`: for each dependency group, the indices of the channels to remove.
A plan can be applied to *any* copy of the architecture, which is what lottery-ticket
rewinding needs: the plan found on the final weights, replayed on the early-training
weights, keeps exactly the same channels (:func:`apply_plan`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from edgeprune.data import normalize
from edgeprune.measure import INPUT_SHAPE
from edgeprune.groups import PRUNABLE_TYPES, channels_to_keep, dependency_graph, prunable_groups
from edgeprune.prune import classifier_name

OUT_CHANNEL_HANDLERS = (
    tp.pruner.function.prune_conv_out_channels,
    tp.pruner.function.prune_depthwise_conv_out_channels,
    tp.pruner.function.prune_linear_out_channels,
)


@dataclass(frozen=True)
class ChannelGroup:
    """Coupled output channels that are removed together (one Torch-Pruning group).

    ``root`` is the layer whose output-channel indices address the group, ``members``
    the Conv2d / Linear layers that lose output channels with it (in model order), and
    ``importance`` the Taylor score of each channel (root order).
    """

    root: str
    channels: int
    members: tuple[str, ...]
    importance: torch.Tensor


@dataclass(frozen=True)
class PrunePlan:
    """Channels to remove, per group root, in the order they are applied."""

    removed: tuple[tuple[str, tuple[int, ...]], ...]

    def to_json(self) -> dict[str, list[int]]:
        return {root: list(idxs) for root, idxs in self.removed}

    @property
    def removes_channels(self) -> bool:
        """Whether the plan removes any channel at all."""
        return any(idxs for _, idxs in self.removed)

    def kept(self, root: str, channels: int) -> list[int]:
        """Indices of the channels of ``root``'s group that survive."""
        removed = set(dict(self.removed).get(root, ()))
        return [i for i in range(channels) if i not in removed]


def taylor_groups(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 64,
    ignored_layers: Sequence[str] | None = None,
    input_shape: Sequence[int] = INPUT_SHAPE,
) -> list[ChannelGroup]:
    """The prunable channel groups of ``model`` with Taylor importance from images ``x``.

    ``x`` are uint8 training images and ``y`` their labels; gradients of the mean
    cross-entropy of each batch are accumulated on a copy (``model`` is untouched).
    ``ignored_layers`` (default: the classifier) keep their output channels.
    """
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"taylor_groups needs as many labels as images (> 0), got {len(x)} and {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    work = copy.deepcopy(model).cpu().eval()
    names = {m: n for n, m in work.named_modules()}
    ignored_names = [classifier_name(work, input_shape)] if ignored_layers is None else list(ignored_layers)
    ignored = [work.get_submodule(n) for n in ignored_names]
    graph = dependency_graph(work, input_shape)
    work.zero_grad(set_to_none=True)
    for i in range(0, len(x), batch_size):
        loss = nn.functional.cross_entropy(work(normalize(x[i : i + batch_size])), y[i : i + batch_size])
        loss.backward()
    scorer = tp.importance.GroupTaylorImportance(multivariable=True, normalizer=None)
    order = {n: i for i, n in enumerate(names.values())}
    groups = []
    for group in prunable_groups(graph, ignored):
        scores = scorer(group)
        if scores is None:
            continue
        members = {
            names[item.dep.target.module]
            for item in group
            if item.dep.handler in OUT_CHANNEL_HANDLERS and isinstance(item.dep.target.module, PRUNABLE_TYPES)
        }
        groups.append(
            ChannelGroup(
                root=names[group[0].dep.target.module],
                channels=len(scores),
                members=tuple(sorted(members, key=order.__getitem__)),
                importance=scores.detach().float().cpu(),
            )
        )
    return groups


def make_plan(groups: Sequence[ChannelGroup], rates: Sequence[float], round_to: int = 1) -> PrunePlan:
    """Remove the least important channels of every group at its rate (stable on ties)."""
    if len(rates) != len(groups):
        raise ValueError(f"need one prune rate per group ({len(groups)}), got {len(rates)}")
    removed = []
    for group, rate in zip(groups, rates):
        n_remove = group.channels - channels_to_keep(group.channels, rate, round_to)
        order = torch.argsort(group.importance, stable=True)
        removed.append((group.root, tuple(sorted(order[:n_remove].tolist()))))
    return PrunePlan(tuple(removed))


def apply_plan(model: nn.Module, plan: PrunePlan, input_shape: Sequence[int] = INPUT_SHAPE) -> nn.Module:
    """A copy of ``model`` with the plan's channels physically removed (Torch-Pruning).

    Groups are pruned one after another in the plan's order, each rebuilt from its root
    on the current graph, as ``BasePruner.step`` does; since groups never share output
    channels, the root's indices stay valid while other groups shrink.
    """
    pruned = copy.deepcopy(model).cpu().eval()
    if not plan.removes_channels:  # nothing to remove: skip tracing the dependency graph
        return pruned
    graph = dependency_graph(pruned, input_shape)
    for root, idxs in plan.removed:
        if not idxs:
            continue
        try:
            layer = pruned.get_submodule(root)
        except AttributeError as err:
            raise KeyError(f"plan prunes layer {root!r}, which {type(model).__name__} does not have") from err
        group = graph.get_pruning_group(layer, graph.get_pruner_of_module(layer).prune_out_channels, list(idxs))
        if not graph.check_pruning_group(group):
            raise ValueError(f"plan removes all {len(idxs)} channels of group {root!r}; a group must keep one")
        group.prune()
    return pruned
