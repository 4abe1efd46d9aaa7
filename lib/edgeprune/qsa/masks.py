"""From QSA channel importances to a physically smaller network.

The mapping, exactly:

1. Each prunable layer ``l`` has a QSA; channel ``c`` of ``l`` gets the importance
   ``s_l[c] = ||W_e^l[:, c]||_1 · rms(z_c)``, the L1 norm of its int8 encoder column
   times the RMS of the channel's (rescaled) activation: the typical size of its
   contribution to the code (:meth:`~edgeprune.qsa.autoencoder.QSA.channel_importance`).
2. Torch-Pruning couples channels that must go together (a residual sum, a depthwise
   conv after its expansion, an SE block): a dependency group's channel importance is
   the sum of ``s_l`` over the group's producing layers (:class:`QSAImportance`, the
   same aggregation as :class:`edgeprune.groups.FilterNormImportance`).
3. Scores are divided by their group's mean, so layers of any width and scale compete
   on one scale: the *normalised importance*.
4. A threshold τ removes every channel whose normalised importance is below τ, each
   group keeping at least one channel (and, with ``round_to``, a multiple of it).
   Ranking all channels globally and removing the lowest fraction ``f`` (weighted by
   the layers each channel removes an output from) is the same operation:
   ``edgeprune.prune.prune_structured(..., global_pruning=True)`` does it with
   Torch-Pruning, and :func:`threshold_of` gives the τ that corresponds to ``f``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from edgeprune.measure import INPUT_SHAPE, model_size
from edgeprune.groups import PRUNABLE_TYPES, FilterNormImportance, GroupItem, dependency_graph, group_producers, prunable_groups
from edgeprune.prune import PruneReport, classifier_name, prune_structured


class QSAImportance(FilterNormImportance):
    """Group importance from per-layer QSA scores {layer name: (out_channels,)}.

    Layers without a score add nothing; a group none of whose producers has one gets
    no score and is left alone by Torch-Pruning. Scores are looked up by the layer's
    name in the model being pruned (Torch-Pruning's graph node name), so they follow
    the copies that pruning makes.
    """

    def __init__(self, scores: Mapping[str, torch.Tensor]) -> None:
        super().__init__(p=1)
        self.scores = {name: s.detach().float().cpu() for name, s in scores.items()}

    def _key(self, item: GroupItem) -> str:
        # node._name is the module's name in the model (Torch-Pruning 1.6 has no public accessor)
        return item.dep.target._name

    def _scores(self, item: GroupItem) -> torch.Tensor | None:
        name = self._key(item)
        if item.dep.handler not in self.OUT_FNS or name not in self.scores:
            return None
        return self.scores[name][item.idxs]


def ignored_for(model: nn.Module, layers: Sequence[str], input_shape: Sequence[int] = INPUT_SHAPE) -> list[str]:
    """Names of the Conv2d / Linear layers pruning must leave alone: the classifier and all not in ``layers``."""
    modules = dict(model.named_modules())
    for name in layers:
        if name not in modules:
            raise KeyError(f"layer {name!r} does not exist in {type(model).__name__}")
        if not isinstance(modules[name], PRUNABLE_TYPES):
            raise ValueError(f"layer {name!r} is a {type(modules[name]).__name__}, not a Conv2d / Linear")
    head = classifier_name(model, input_shape)
    if head in layers:
        raise ValueError(f"layer {head!r} is the classifier: its outputs are the classes and cannot be pruned")
    return [n for n, m in modules.items() if isinstance(m, PRUNABLE_TYPES) and n not in layers]


def normalised_importance(
    model: nn.Module,
    importance: QSAImportance,
    ignored_layers: Sequence[str],
    input_shape: Sequence[int] = INPUT_SHAPE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, weights) of every prunable channel: importance / group mean, and the
    number of layers that lose an output when the channel goes (as pruning counts them)."""
    modules = dict(model.named_modules())
    ignored = [modules[n] for n in ignored_layers]
    graph = dependency_graph(model, input_shape)
    scores, weights = [], []
    for group in prunable_groups(graph, ignored):
        score = importance(group)
        if score is None:
            continue
        producers = group_producers(group, importance)
        scores.append(score / score.mean().clamp_min(1e-12))
        weights.append(torch.full((len(score),), float(len(producers))))
    if not scores:
        raise ValueError(f"no prunable channel of {type(model).__name__} has a QSA score")
    return torch.cat(scores), torch.cat(weights)


def threshold_of(scores: torch.Tensor, weights: torch.Tensor, fraction: float) -> float:
    """The τ that removes ``fraction`` of the (weighted) channels: the smallest score kept.

    Channels scoring below τ go (ties at τ aside); ``inf`` when every channel goes.
    """
    order = torch.argsort(scores, stable=True)
    cumulative = weights[order].cumsum(0)
    target = fraction * float(cumulative[-1])
    n_cut = int((cumulative < target).sum()) + 1 if target > 0 else 0
    return float(scores[order[n_cut]]) if n_cut < len(order) else math.inf


def prune_by_importance(
    model: nn.Module,
    scores: Mapping[str, torch.Tensor],
    fraction: float,
    *,
    ignored_layers: Sequence[str],
    input_shape: Sequence[int] = INPUT_SHAPE,
    round_to: int | None = None,
) -> tuple[nn.Module, PruneReport]:
    """A copy of ``model`` without the ``fraction`` of channels of lowest QSA importance.

    Channels physically removed by Torch-Pruning (``edgeprune.prune.prune_structured``,
    global ranking); the report's method is ``"qsa"``.
    """
    return prune_structured(
        model,
        fraction,
        importance=QSAImportance(scores),
        global_pruning=True,
        method="qsa",
        ignored_layers=list(ignored_layers),
        input_shape=input_shape,
        round_to=round_to,
    )


def int8_size_estimate(model: nn.Module) -> int:
    """Bytes of the int8 model ``model`` converts to, without converting it.

    Conv + BN are folded (``torch.fx.experimental.optimization.fuse``, as the int8
    conversion does) and conv / linear weights counted at 8 bits with a per-channel
    scale (:func:`edgeprune.measure.model_size`). Within ~1% of the real
    ``quantize_int8`` size on mobilenet_v3_small and ~100x faster; the search uses it,
    every reported figure is the real one.
    """
    return model_size(fuse(model.cpu().eval()), bits=8).total_bytes


@dataclass(frozen=True)
class Compression:
    """Compression ratio = fp32 dense bytes / bytes of the final int8 model.

    ``correction`` = real int8 bytes / estimated int8 bytes of the dense model, which
    rescales estimates of pruned models (it absorbs activation quantization parameters
    that the estimate leaves out).
    """

    dense_fp32_bytes: int
    correction: float = 1.0

    def ratio(self, int8_bytes: float) -> float:
        return self.dense_fp32_bytes / int8_bytes

    def estimate(self, model: nn.Module) -> float:
        return self.ratio(int8_size_estimate(model) * self.correction)


def check_target(target: float) -> float:
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target <= 1:
        raise ValueError(f"target compression must be a finite number > 1, got {target!r}")
    return float(target)
