"""The accuracy / size oracle of the PPO search, fast enough to call every episode.

An action is a prune rate per channel group and a bit-width per layer. Evaluating it:

1. remove the groups' least Taylor-important channels from a copy of the dense model
   (:func:`edgeprune.ppo.pruning.apply_plan`);
2. re-estimate BatchNorm statistics on a fixed calibration subset (no fine-tuning) if
   channels were removed; an unpruned network keeps the statistics of dense training,
   which a few hundred images estimate worse (on the quick model, re-estimating them on
   128 images costs 1.4 points of validation top-1, on 2,048 still 1.2);
3. fake-quantize every layer's weights at its bit-width, their ranges clipped by the
   scheme's rule (:mod:`edgeprune.clipping`), and, when the scheme quantizes activations
   too, its input, KL-calibrated on the same subset (:mod:`edgeprune.fakequant`);
4. top-1 on a fixed small validation subset; stored bytes with every weight at its
   bit-width (:func:`edgeprune.measure.model_size`).

With a predictor (:meth:`CompressionSearch.use_predictor`, ``ppo.signal: sensitivity``) steps
2-4's top-1 is replaced by the predicted top-1 after recovery (:mod:`edgeprune.ppo.sensitivity`);
the size is still counted on the pruned network.

Results are cached by action, pruned models and activation histograms by prune rates
(an action that changes only bit-widths skips steps 1-2 and the histogram pass), and
thresholds and weight clip ratios by (rates, layer, bits). The cache is shared by every seed that searches
the same dense model.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from edgeprune import fakequant
from edgeprune.counting import layer_costs
from edgeprune.data import normalize
from edgeprune.measure import INPUT_SHAPE, count_params, model_size
from edgeprune.placement import place
from edgeprune.ppo.params import BYTES_PER_MB
from edgeprune.ppo.pruning import ChannelGroup, PrunePlan, apply_plan, make_plan
from edgeprune.prune import recalibrate_bn
from edgeprune.train import evaluate



@dataclass(frozen=True)
class Outcome:
    """Accuracy and storage of one compressed model."""

    top1: float
    size_bytes: int
    params: int

    @property
    def size_mb(self) -> float:
        return self.size_bytes / BYTES_PER_MB

    @property
    def density(self) -> float:
        """Performance density: top-1 (%) per MB stored at the real bit-widths."""
        return self.top1 / self.size_mb


@dataclass(frozen=True)
class LayerInfo:
    """Static description of one Conv2d / Linear layer (the agent's per-step features)."""

    name: str
    kind: str  # "conv", "depthwise" or "linear"
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    params: int
    macs: int
    group: int | None  # index of the channel group whose output channels it shares; None if unprunable
    leads_group: bool  # first layer of its group: its prune-rate decision is the group's


def describe_layers(
    model: nn.Module, groups: Sequence[ChannelGroup], input_shape: Sequence[int] = INPUT_SHAPE
) -> list[LayerInfo]:
    """One :class:`LayerInfo` per Conv2d / Linear layer of ``model``, in model order."""
    layers = fakequant.quantized_layers(model)
    owner = {member: g for g, group in enumerate(groups) for member in group.members}
    leaders = {group.members[0] for group in groups if group.members}
    macs = {cost.name: cost.macs for cost in layer_costs(model, (1, *input_shape))}
    infos = []
    for name, m in layers.items():
        if isinstance(m, nn.Linear):
            kind, cin, cout, kernel, stride = "linear", m.in_features, m.out_features, 1, 1
        else:
            kind = "depthwise" if m.groups > 1 and m.groups == m.in_channels else "conv"
            cin, cout, kernel, stride = m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0]
        infos.append(
            LayerInfo(
                name, kind, cin, cout, kernel, stride, m.weight.numel(), macs[name], owner.get(name), name in leaders
            )
        )
    return infos


class CompressionSearch:
    """Cached evaluation of (prune rates per group, bit-width per layer) on one dense model.

    ``calib_x`` (uint8 training images) serve BN recalibration and activation
    calibration, ``val_x`` / ``val_y`` the accuracy; both stay fixed for the whole
    search, so every action is judged on the same images.
    """

    def __init__(
        self,
        model: nn.Module,
        groups: Sequence[ChannelGroup],
        calib_x: torch.Tensor,
        val_x: torch.Tensor,
        val_y: torch.Tensor,
        *,
        round_to: int = 1,
        kl_bins: int = fakequant.KL_BINS,
        kl_stride: int = 1,
        scheme: fakequant.QuantScheme = fakequant.QuantScheme(),
        batch_size: int = 256,
        device: str | torch.device = "cpu",
        cache_models: int = 4,
        input_shape: Sequence[int] = INPUT_SHAPE,
    ) -> None:
        if len(calib_x) == 0 or len(val_x) == 0 or len(val_x) != len(val_y):
            raise ValueError(
                f"need calibration images and as many validation labels as images, got {len(calib_x)}, "
                f"{len(val_x)} and {len(val_y)}"
            )
        self.device = torch.device(device)
        self.model = place(model, self.device).eval()  # pruned copies are made on the CPU, then moved
        self.groups = list(groups)
        self.layers = describe_layers(self.model, self.groups, input_shape)
        self.calib_x, self.val_x, self.val_y = calib_x, val_x, val_y
        self.round_to, self.kl_bins, self.kl_stride, self.scheme = round_to, kl_bins, kl_stride, scheme
        self.batch_size, self.input_shape = batch_size, input_shape
        self._cache_models = cache_models
        self._models: OrderedDict[tuple[float, ...], tuple[nn.Module, dict, fakequant.RatioMemo]] = OrderedDict()
        self._thresholds: dict[tuple, fakequant.ActivationQuant] = {}
        self._outcomes: dict[tuple, Outcome] = {}
        self._architectures: OrderedDict[tuple[float, ...], nn.Module] = OrderedDict()
        self.predictor: Callable[[tuple[float, ...], tuple[int, ...]], float] | None = None
        total, _ = count_params(self.model)
        self.reference = Outcome(self._top1(self.model), model_size(self.model).total_bytes, total)

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.layers]

    @property
    def evaluations(self) -> int:
        """Distinct actions evaluated so far (cache hits excluded)."""
        return len(self._outcomes)

    def _top1(self, model: nn.Module, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> float:
        x, y = (self.val_x, self.val_y) if x is None else (x, y)
        return evaluate(model, x, y, batch_size=self.batch_size, device=self.device)

    def check(self, rates: Sequence[float], bits: Sequence[int]) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """Validated ``(rates, bits)`` tuples; wrong lengths or values are ``ValueError``."""
        if len(rates) != len(self.groups) or len(bits) != len(self.layers):
            raise ValueError(
                f"need {len(self.groups)} group prune rates and {len(self.layers)} layer bit-widths, "
                f"got {len(rates)} and {len(bits)}"
            )
        for rate in rates:
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"prune rate must be in [0, 1), got {rate!r}")
        return tuple(float(r) for r in rates), tuple(fakequant.check_bits(b) for b in bits)

    def plan(self, rates: Sequence[float]) -> PrunePlan:
        return make_plan(self.groups, rates, self.round_to)

    def _pruned(self, rates: tuple[float, ...]) -> tuple[nn.Module, dict, fakequant.RatioMemo]:
        """The dense model pruned at ``rates``, BN recalibrated if pruned, its activation histograms (when the
        scheme quantizes inputs) and the memo of its weights' clip ratios (LRU cache)."""
        if rates in self._models:
            self._models.move_to_end(rates)
            return self._models[rates]
        plan = self.plan(rates)
        model = place(apply_plan(self.model, plan, self.input_shape), self.device)
        if plan.removes_channels:  # downstream statistics moved
            recalibrate_bn(model, self.calib_x, batch_size=self.batch_size)
        hists = {}
        if self.scheme.activations:
            calib = normalize(self.calib_x).to(self.device)
            hists = fakequant.activation_histograms(
                model, calib, self.layer_names, bins=self.kl_bins, batch_size=self.batch_size
            )
        self._models[rates] = (model, hists, {})
        while len(self._models) > self._cache_models:
            self._models.popitem(last=False)
        return self._models[rates]

    def bits_map(self, bits: Sequence[int]) -> dict[str, int]:
        return dict(zip(self.layer_names, bits, strict=True))

    def thresholds(self, rates: Sequence[float], bits: Sequence[int]) -> dict[str, fakequant.ActivationQuant]:
        """KL-calibrated input quantizers of the network pruned at ``rates`` (BN recalibrated), at ``bits``."""
        rates, bits = self.check(rates, bits)
        _, hists, _ = self._pruned(rates)
        acts = {}
        for name, b in self.bits_map(bits).items():
            key = (rates, name, b)
            if key not in self._thresholds:
                self._thresholds[key] = fakequant.threshold_from_histogram(*hists[name], b, stride=self.kl_stride)
            acts[name] = self._thresholds[key]
        return acts

    @contextmanager
    def _simulated(self, rates: tuple[float, ...], bits: tuple[int, ...]) -> Iterator[nn.Module]:
        """The pruned model quantized at ``bits`` by the scheme (inputs KL-calibrated where it quantizes them)."""
        model, _, memo = self._pruned(rates)
        acts = self.thresholds(rates, bits) if self.scheme.activations else {}
        with fakequant.simulated(model, self.bits_map(bits), acts, weight_clip=self.scheme.weight_clip, memo=memo):
            yield model

    def use_predictor(self, predictor: Callable[[tuple[float, ...], tuple[int, ...]], float]) -> None:
        """Score every later :meth:`evaluate` with ``predictor(rates, bits) -> top-1`` instead of measuring it
        (``ppo.signal: sensitivity``, :mod:`edgeprune.ppo.sensitivity`); sizes stay counted on the pruned network."""
        if self._outcomes:
            raise RuntimeError("set the predictor before any evaluation: cached outcomes would mix two signals")
        self.predictor = predictor

    def _architecture(self, rates: tuple[float, ...]) -> nn.Module:
        """The dense model pruned at ``rates`` without recalibration (sizes only; LRU cache)."""
        if rates not in self._architectures:
            self._architectures[rates] = apply_plan(self.model, self.plan(rates), self.input_shape)
            while len(self._architectures) > self._cache_models:
                self._architectures.popitem(last=False)
        self._architectures.move_to_end(rates)
        return self._architectures[rates]

    def evaluate(self, rates: Sequence[float], bits: Sequence[int]) -> Outcome:
        """Top-1 on the validation subset (measured, or predicted with :meth:`use_predictor`) and stored
        bytes of the compressed model."""
        rates, bits = self.check(rates, bits)
        key = (rates, bits)
        if key not in self._outcomes:
            weights = fakequant.weight_bits(self.bits_map(bits))
            if self.predictor is not None:
                model = self._architecture(rates)
                top1, size = self.predictor(rates, bits), model_size(model, bits=weights).total_bytes
            else:
                with self._simulated(rates, bits) as model:
                    top1 = self._top1(model)
                size = model_size(model, bits=weights).total_bytes  # of the float weights, restored on exit
            self._outcomes[key] = Outcome(top1, size, count_params(model)[0])
        return self._outcomes[key]

    def top1_on(self, rates: Sequence[float], bits: Sequence[int], x: torch.Tensor, y: torch.Tensor) -> float:
        """Top-1 of the same compressed model on other images (the final selection's)."""
        rates, bits = self.check(rates, bits)
        with self._simulated(rates, bits) as model:
            return self._top1(model, x, y)

    def dense_top1_on(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Top-1 of the uncompressed float model on other images."""
        return self._top1(self.model, x, y)

    def uniform(self, rate: float, bits: int) -> Outcome:
        """The static baseline: one prune rate for every group, one bit-width for every layer."""
        return self.evaluate((rate,) * len(self.groups), (bits,) * len(self.layers))
