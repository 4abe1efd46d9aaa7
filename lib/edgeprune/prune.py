"""Static pruning baselines: L1-norm filter pruning, network slimming and magnitude pruning.

Static means the pruned structure is decided once, from the trained weights, and never
changes at run time. Every function here returns a pruned *copy* and a
:class:`PruneReport`; the model passed in is left untouched, so one dense model serves
a whole sparsity sweep.

What "sparsity" means (both the requested and the realised value are reported):

- structured methods (``l1_filter``, ``l1_regularised``, ``magnitude_structured``): the fraction of
  *prunable output channels* removed, summed over every Conv2d / Linear except the
  final classifier. Channels are physically removed with Torch-Pruning, which prunes
  each dependency group (residual adds, concatenations, depthwise convs, SE blocks)
  consistently. A layer loses channels at both ends, so parameters and MACs fall by
  about 1 - (1 - p)^2, not p; the report gives the measured reductions.
- unstructured (``magnitude_unstructured``): the fraction of *prunable weights* (the
  weight tensors of the same layers) set to zero. Zeros are masked, not removed:
  MACs do not fall, and the stored size pays for the sparse index
  (:func:`edgeprune.measure.model_size`).

Typical use (stage ``20_baselines``)::

    pruned, rep = prune.apply(dense_model, "l1_filter", 0.5)
    train.fine_tune(pruned, x_train, y_train, epochs=1, lr=0.01, seed=seed)
    masks.bake_masks(pruned)  # unstructured only: make the zeros permanent
    row = harness.report(pruned, x_test, y_test, model_name=name, method=rep.method,
                         setting="s0.50", seed=seed, pruning=rep, calib_x=x_train[:512])
    results.append_rows(table, [row])
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune as torch_prune

from edgeprune.data import normalize
from edgeprune.groups import (
    PRUNABLE_TYPES, BNScaleImportance, FilterNormImportance, channels_to_keep, dependency_graph, group_producers,
    prunable_groups, width,
)  # fmt: skip
from edgeprune.measure import INPUT_SHAPE, count_macs, count_params

METHODS = ("none", "l1_filter", "l1_regularised", "magnitude_structured", "magnitude_unstructured")
STRUCTURED = ("l1_filter", "l1_regularised", "magnitude_structured")
# A target more than this above the most a network's groups can lose (each keeping at least
# one channel, or round_to) is unreachable; rounding may otherwise realise a few points less
# or more than the target, and the realised value is reported.
SHORTFALL_TOLERANCE = 0.02


def recalibrate_bn(model: nn.Module, x: torch.Tensor, *, batch_size: int = 256) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on images ``x``, in place; returns the model in eval mode.

    Pruning shifts every downstream activation distribution; re-estimating the statistics
    (reset, then a cumulative average over all of ``x``: momentum ``None``) recovers most of
    the accuracy a pruned network loses before any fine-tuning, at the cost of a few forward
    passes (the usual proxy in AMC-style search). Only the BatchNorm layers run in training
    mode, so dropout stays off. ``x`` is uint8 images (normalised here) or float images
    already normalised; batches go to the model's device.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    device = next(model.parameters()).device
    model.eval()
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                batch = x[i : i + batch_size]
                model((normalize(batch) if batch.dtype == torch.uint8 else batch).to(device))
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        model.eval()
    return model


class UnreachableSparsity(ValueError):
    """Structured pruning cannot remove the requested share of channels (layers hit their minimum width)."""


@dataclass(frozen=True)
class PruneReport:
    """What a prune did, measured on the model before and after.

    ``realised`` is the measured counterpart of ``sparsity`` in the same ``unit``
    ("channels", "weights", or "none" for the dense model). For unstructured pruning
    ``params_before`` / ``params_after`` count non-zero parameters and MACs are
    unchanged (dense kernels).
    """

    method: str
    sparsity: float
    unit: str
    realised: float
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @property
    def param_reduction(self) -> float:
        """Fraction of (non-zero) parameters removed."""
        return 1.0 - self.params_after / self.params_before

    @property
    def macs_reduction(self) -> float:
        """MACs before / MACs after (a factor, 1.0 = none)."""
        return self.macs_before / self.macs_after

    def row(self) -> dict[str, float | str]:
        """The columns of :data:`edgeprune.results.COLUMNS` this report fills."""
        return {
            "method": self.method,
            "sparsity": self.sparsity,
            "sparsity_unit": self.unit,
            "sparsity_realised": self.realised,
            "param_reduction": self.param_reduction,
        }


def check_sparsity(sparsity: float) -> float:
    """``sparsity`` as a float in [0, 1), or a ``ValueError`` naming it."""
    if not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be a fraction in [0, 1), got {sparsity!r}")
    return float(sparsity)


@torch.no_grad()
def _output_shape(model: nn.Module, input_shape: Sequence[int]) -> torch.Size:
    was_training = model.training
    model.eval()
    try:
        out = model(torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0)))
    finally:
        model.train(was_training)
    if not torch.isfinite(out).all():
        raise RuntimeError(f"{type(model).__name__} produces non-finite outputs")
    return out.shape


def classifier_name(model: nn.Module, input_shape: Sequence[int] = INPUT_SHAPE) -> str:
    """Name of the final classifier: the last Conv2d / Linear, checked against the output width."""
    candidates = [name for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)]
    if not candidates:
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to prune")
    name = candidates[-1]
    outputs = width(model.get_submodule(name))
    if outputs != _output_shape(model, input_shape)[-1]:
        raise ValueError(
            f"cannot tell the classifier of {type(model).__name__}: its last layer {name!r} has {outputs} outputs, "
            "not the model's output width; pass ignored_layers explicitly"
        )
    return name


def prunable_layers(
    model: nn.Module, ignored_layers: Sequence[str] | None = None, input_shape: Sequence[int] = INPUT_SHAPE
) -> dict[str, nn.Module]:
    """Conv2d / Linear layers open to pruning, by name.

    ``ignored_layers`` (names) are excluded; ``None`` means the final classifier, whose
    outputs are the classes (an explicit list replaces it, so name the classifier
    too). An unknown name is a ``KeyError`` naming it.
    """
    modules = dict(model.named_modules())
    ignored = [classifier_name(model, input_shape)] if ignored_layers is None else list(ignored_layers)
    for name in ignored:
        if name not in modules:
            raise KeyError(f"layer {name!r} does not exist in {type(model).__name__}")
    layers = {n: m for n, m in modules.items() if isinstance(m, PRUNABLE_TYPES) and n not in ignored}
    if not layers:
        raise ValueError(f"{type(model).__name__} has no prunable layer once {ignored} are ignored")
    return layers


def _out_channels(model: nn.Module, names: Sequence[str]) -> int:
    return sum(width(model.get_submodule(name)) for name in names)


def _group_removals(
    graph: tp.DependencyGraph,
    ignored: list[nn.Module],
    importance: FilterNormImportance,
    sparsity: float,
    global_pruning: bool,
    round_to: int,
) -> list[tuple[nn.Module, list[int], int]]:
    """Per dependency group: its root layer, the indices of the channels to remove, and its producer count.

    How many channels a group loses: locally (Li et al.) ``sparsity`` of each group's channels;
    globally, channels of all groups ranked together by importance divided by the group's
    mean (so layers of different fan-in compete on one scale), each weighted by the number of
    layers it removes an output from, until ``sparsity`` of the prunable output channels is
    reached. Either way the kept count is then rounded by the project's one rule
    (:func:`channels_to_keep`, nearest multiple of ``round_to``), and the least important
    channels of the group go.
    """
    groups, scores, weights = [], [], []
    for group in prunable_groups(graph, ignored):
        score = importance(group)
        if score is None:
            continue
        groups.append((group[0].dep.target.module, score, len(group_producers(group, importance))))
        scores.append(score / score.mean().clamp_min(1e-12) if importance.normalise_groups else score)
        weights.append(torch.full((len(score),), float(groups[-1][2])))
    sizes = [len(score) for _, score, _ in groups]
    if not groups:
        return []
    if global_pruning:
        owner = torch.cat([torch.full((n,), g) for g, n in enumerate(sizes)])
        order = torch.argsort(torch.cat(scores), stable=True)
        cumulative = torch.cat(weights)[order].cumsum(0)
        target = sparsity * float(cumulative[-1])
        n_cut = int((cumulative < target).sum()) + 1 if target > 0 else 0
        rates = [k / n for k, n in zip(torch.bincount(owner[order[:n_cut]], minlength=len(sizes)).tolist(), sizes)]
    else:
        rates = [sparsity] * len(sizes)
    removals = []
    for (root, score, producers), n, rate in zip(groups, sizes, rates):
        k = n - channels_to_keep(n, min(rate, 1.0 - 1.0 / n), round_to)
        removals.append((root, torch.argsort(score, stable=True)[:k].tolist(), producers))
    return removals


def _ceiling(removals: list[tuple[nn.Module, list[int], int]], round_to: int, total: int) -> float:
    """The largest share of ``total`` prunable output channels the groups can lose with every kept count rounded."""
    removable = 0
    for root, _, producers in removals:
        n = width(root)
        removable += (n - channels_to_keep(n, 1.0 - 1.0 / n, round_to)) * producers
    return removable / total


def prune_structured(
    model: nn.Module,
    sparsity: float,
    *,
    importance: FilterNormImportance,
    global_pruning: bool,
    method: str,
    ignored_layers: Sequence[str] | None = None,
    input_shape: Sequence[int] = INPUT_SHAPE,
    round_to: int | None = None,
) -> tuple[nn.Module, PruneReport]:
    """Remove ``sparsity`` of the prunable output channels of a copy of ``model``.

    Which channels each group loses comes from :func:`_group_removals`; they are removed
    with Torch-Pruning, group after group on one dependency graph (groups never share
    output channels, so each root's indices stay valid). ``round_to`` rounds the channels
    each group keeps to the nearest multiple (:func:`channels_to_keep`): int8 kernels want
    it (odd channel counts measured 5-7x slower int8 mobilenet_v3_small on x86), and the
    realised sparsity, reported beside the target, then moves a few points either way. A
    target above what the groups can lose at all (each keeps at least ``round_to``
    channels, or one) is :class:`UnreachableSparsity`, and so is a network whose groups
    ``importance`` cannot score at all (network slimming's BatchNorm scales on a network
    without BatchNorm, such as SqueezeNet). The output shape is checked.
    """
    sparsity = check_sparsity(sparsity)
    round_to = round_to or 1
    pruned = copy.deepcopy(model).cpu().eval()
    layers = prunable_layers(pruned, ignored_layers, input_shape)
    ignored = [m for n, m in pruned.named_modules() if isinstance(m, PRUNABLE_TYPES) and n not in layers]
    shape = _output_shape(pruned, input_shape)
    params_before, _ = count_params(pruned)
    macs_before = count_macs(pruned, input_shape)
    channels_before = _out_channels(pruned, list(layers))
    graph = dependency_graph(pruned, input_shape)
    removals = _group_removals(graph, ignored, importance, sparsity, global_pruning, round_to)
    if not removals:
        raise UnreachableSparsity(
            f"{type(model).__name__} has no channel group that {method} can rank: {type(importance).__name__} scores "
            f"none of its prunable groups{' (it ranks BatchNorm scales; this network has no BatchNorm)' if isinstance(importance, BNScaleImportance) else ''}"
        )  # fmt: skip
    ceiling = _ceiling(removals, round_to, channels_before)
    if sparsity > ceiling + SHORTFALL_TOLERANCE:
        raise UnreachableSparsity(
            f"{type(model).__name__} cannot be pruned to {sparsity:.0%} of its channels with {method}: at most "
            f"{ceiling:.1%} can be removed with every layer keeping at least max(1, round_to={round_to}) channels"
        )
    for root, idxs, _ in removals:
        if idxs:
            graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, idxs).prune()
    if _output_shape(pruned, input_shape) != shape:
        raise RuntimeError(f"pruning changed the output shape of {type(model).__name__}")
    realised = 1.0 - _out_channels(pruned, list(layers)) / channels_before
    params_after, _ = count_params(pruned)
    report = PruneReport(
        method, sparsity, "channels", realised, params_before, params_after, macs_before, count_macs(pruned, input_shape)
    )
    return pruned, report


def l1_filter(model: nn.Module, sparsity: float, **kwargs) -> tuple[nn.Module, PruneReport]:
    """L1-norm filter pruning (Li et al., ICLR 2017): per-layer uniform ratio.

    In every layer the same fraction of filters, those of smallest L1 norm
    (:class:`FilterNormImportance`), is removed with the channels coupled to them.
    Fine-tune afterwards (:func:`edgeprune.train.fine_tune`).
    """
    return prune_structured(
        model, sparsity, importance=FilterNormImportance(p=1), global_pruning=False, method="l1_filter", **kwargs
    )


def l1_regularised(model: nn.Module, sparsity: float, **kwargs) -> tuple[nn.Module, PruneReport]:
    """Network slimming's pruning step (Liu et al., ICCV 2017): channels ranked by BatchNorm scale
    |gamma| across all layers (:class:`BNScaleImportance`, raw: no per-layer normalisation).

    Meant for a network trained with an L1 penalty on those scales
    (:meth:`edgeprune.recover.protocol.Recovery.sparsity_train`): AKPERL's "L1 pruning: static
    pruning based on L1 regularization applied during training". Li et al.'s post-hoc ranking of
    filter norms is :func:`l1_filter`.
    """
    return prune_structured(
        model, sparsity, importance=BNScaleImportance(), global_pruning=True, method="l1_regularised", **kwargs
    )


def magnitude_structured(model: nn.Module, sparsity: float, **kwargs) -> tuple[nn.Module, PruneReport]:
    """Global structured magnitude pruning: filters ranked by L2 norm across all layers.

    The structured counterpart of global unstructured magnitude pruning: one ranking
    of (layer-normalised) filter L2 norms decides how many channels each layer loses.
    """
    return prune_structured(
        model,
        sparsity,
        importance=FilterNormImportance(p=2),
        global_pruning=True,
        method="magnitude_structured",
        **kwargs,
    )


def magnitude_unstructured(
    model: nn.Module,
    sparsity: float,
    *,
    ignored_layers: Sequence[str] | None = None,
    input_shape: Sequence[int] = INPUT_SHAPE,
) -> tuple[nn.Module, PruneReport]:
    """Global unstructured magnitude pruning (``torch.nn.utils.prune.global_unstructured``).

    The ``sparsity`` fraction of prunable weights with the smallest |w| across all
    layers is masked to zero. Masks stay attached (so fine-tuning keeps them at zero)
    until :func:`bake_masks`.
    """
    sparsity = check_sparsity(sparsity)
    pruned = copy.deepcopy(model).cpu().eval()
    layers = prunable_layers(pruned, ignored_layers, input_shape)
    shape = _output_shape(pruned, input_shape)
    params_before, nonzero_before = count_params(pruned)
    macs = count_macs(pruned, input_shape)
    torch_prune.global_unstructured(
        [(m, "weight") for m in layers.values()], pruning_method=torch_prune.L1Unstructured, amount=sparsity
    )
    if _output_shape(pruned, input_shape) != shape:
        raise RuntimeError(f"pruning changed the output shape of {type(model).__name__}")
    numel = sum(m.weight.numel() for m in layers.values())
    zeros = sum(int((m.weight == 0).sum()) for m in layers.values())
    _, nonzero_after = count_params(pruned)
    report = PruneReport(
        "magnitude_unstructured", sparsity, "weights", zeros / numel, nonzero_before, nonzero_after, macs, macs
    )
    return pruned, report


def dense(
    model: nn.Module,
    sparsity: float = 0.0,
    *,
    ignored_layers: Sequence[str] | None = None,
    input_shape: Sequence[int] = INPUT_SHAPE,
) -> tuple[nn.Module, PruneReport]:
    """The no-pruning baseline: an untouched copy, reported in the same form."""
    if check_sparsity(sparsity) != 0.0:
        raise ValueError(f"the 'none' method takes sparsity 0, got {sparsity!r}")
    prunable_layers(model, ignored_layers, input_shape)  # same name checks as the other methods
    params, _ = count_params(model)
    macs = count_macs(model, input_shape)
    return copy.deepcopy(model), PruneReport("none", 0.0, "none", 0.0, params, params, macs, macs)


_DISPATCH = {
    "none": dense,
    "l1_filter": l1_filter,
    "l1_regularised": l1_regularised,
    "magnitude_structured": magnitude_structured,
    "magnitude_unstructured": magnitude_unstructured,
}


def apply(model: nn.Module, method: str, sparsity: float, **kwargs) -> tuple[nn.Module, PruneReport]:
    """Prune a copy of ``model`` with a baseline method named in :data:`METHODS`."""
    if method not in _DISPATCH:
        raise KeyError(f"unknown pruning method {method!r}; known: {', '.join(METHODS)}")
    return _DISPATCH[method](model, sparsity, **kwargs)
