"""k-bit fake quantization with KL-divergence (entropy) calibration, as in TensorRT.

Below 8 bits there are no integer kernels on the CPUs this project targets, so a
k-bit layer is *simulated*: its weights are rounded to the k-bit grid and its input
activations are clipped and rounded to the k-bit grid, in float arithmetic
(:func:`edgeprune.clipping.round_to_grid`: ``torch.fake_quantize_per_*_affine`` where gradients flow,
the same values in faster element-wise ops where they do not). Its
accuracy is that of a real k-bit deployment; its latency is not (report it as
simulated). Real int8 inference is :func:`edgeprune.quant.quantize_int8`.

- **Weights**: per-output-channel symmetric, scale = r_c max|w_c| / (2^(b-1) - 1), values
  in [-(2^(b-1) - 1), 2^(b-1) - 1] x scale (at most 2^b - 1 distinct values per
  channel), with the clip ratio r_c of ``weight_clip`` (``max``: 1; ``mse`` / ``kl``:
  :func:`edgeprune.clipping.weight_clip_ratios`). Quantizing before BatchNorm folding is
  exact: folding multiplies each output channel by one factor, and a per-channel symmetric
  grid (and each clip ratio, which depends on the channel's shape only) scales with it.
- **Activations**: per-tensor; the clipping threshold ``t`` is chosen by entropy
  calibration (:func:`kl_threshold`) on a histogram of |x| over calibration images.
  Signed inputs use the symmetric grid [-(2^(b-1) - 1), 2^(b-1) - 1] x t / (2^(b-1) - 1);
  inputs that were never negative during calibration (after ReLU) use the unsigned
  grid [0, 2^b - 1] x t / (2^b - 1), as TensorRT and NVIDIA's pytorch-quantization do.

Typical use::

    acts = calibrate(model, normalize(x_calib), bits)       # {layer: ActivationQuant}
    simulated = quantize_model(model, bits, acts)           # a copy; model untouched
    harness.report(simulated, ..., bits=weight_bits(bits))  # size at k/8 bytes per weight
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from edgeprune.clipping import (
    KL_BINS, WEIGHT_CLIPS, KLResult, channel_amax, check_bits, check_weight_clip, grid_max, kl_threshold,
    quantize_channels, round_to_grid, weight_clip_ratios,
)  # fmt: skip

__all__ = [  # the grid helpers of edgeprune.clipping are part of this module's surface
    "KL_BINS", "WEIGHT_CLIPS", "ActivationQuant", "KLResult", "QuantScheme", "RatioMemo", "activation_histograms", "calibrate", "check_bits", "deploy",
    "fake_quantize_activation", "fake_quantize_weight", "grid_max", "kl_threshold", "quantization_aware",
    "quantize_model", "quantized_layers", "simulated", "threshold_from_histogram", "weight_bits",
]  # fmt: skip

QUANTIZED_TYPES = (nn.Conv2d, nn.Linear)


# --------------------------------------------------------------------------- quantizers


def fake_quantize_weight(weight: torch.Tensor, bits: int, clip: str = "max") -> torch.Tensor:
    """Per-output-channel (dim 0) symmetric fake quantization of a weight tensor, its range clipped
    by ``clip`` (:func:`edgeprune.clipping.weight_clip_ratios`; ``max``: max|w_c|, no clipping)."""
    amax = channel_amax(weight)
    return quantize_channels(weight, weight_clip_ratios(weight, bits, clip) * amax, bits)


def fake_quantize_activation(x: torch.Tensor, threshold: float, bits: int, unsigned: bool) -> torch.Tensor:
    """Clip ``x`` to the threshold and round it to the b-bit grid (per tensor)."""
    qmax = grid_max(bits, unsigned)
    scale = max(float(threshold), torch.finfo(torch.float32).tiny) / qmax
    return round_to_grid(x, scale, 0 if unsigned else -qmax, qmax)


# --------------------------------------------------------------------------- model-level


@dataclass(frozen=True)
class QuantScheme:
    """How a k-bit network is quantized: its weights' clipping rule, and whether its inputs are too.

    ``activations`` False is weight-only quantization (inputs stay float); True also KL-calibrates
    and quantizes each k-bit layer's input at the layer's bit-width (weights + activations).
    """

    weight_clip: str = "max"
    activations: bool = True

    def __post_init__(self) -> None:
        check_weight_clip(self.weight_clip)

    @property
    def label(self) -> str:
        """What is quantized, as the tables state it: ``weights`` or ``weights+activations``."""
        return "weights+activations" if self.activations else "weights"


@dataclass(frozen=True)
class ActivationQuant:
    """The calibrated input quantizer of one layer."""

    threshold: float
    bits: int
    unsigned: bool


def quantized_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv2d and Linear layers by name: the layers that get a bit-width."""
    return {name: m for name, m in model.named_modules() if isinstance(m, QUANTIZED_TYPES)}


def _check_layer_bits(model: nn.Module, bits: Mapping[str, int]) -> dict[str, nn.Module]:
    layers = quantized_layers(model)
    unknown = [name for name in bits if name not in layers]
    if unknown:
        raise KeyError(f"bits given for {unknown}, which are not Conv2d / Linear layers of {type(model).__name__}")
    for name, b in bits.items():
        check_bits(b, name=f"bits[{name!r}]")
    return layers


@torch.no_grad()
def activation_histograms(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str], *, bins: int = KL_BINS, batch_size: int = 256
) -> dict[str, tuple[torch.Tensor, float, bool]]:
    """Histogram of |input| of each named layer over the float inputs ``x`` (eval mode).

    Each histogram spans [0, max |input|], so no value falls outside it: with one batch
    the range and the counts come from the same pass, with several a first pass finds
    the range. Exact zeros are not counted: every grid represents them without error,
    and the spike a ReLU puts at zero would otherwise dominate the KL divergence and
    drive the threshold far down (NVIDIA's pytorch-quantization patches the same spike
    by overwriting the first bin). Returns {layer: (counts, max |input|, never negative)}.
    """
    modules = dict(model.named_modules())
    amax = dict.fromkeys(layers, 0.0)
    nonneg = dict.fromkeys(layers, True)
    counts = {name: torch.zeros(bins, dtype=torch.float64) for name in layers}

    def make_hook(name: str, find_range: bool, count: bool):
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            a = args[0].detach().float()
            if find_range:
                low, high = torch.aminmax(a)
                amax[name] = max(amax[name], float(high), -float(low))
                nonneg[name] = nonneg[name] and bool(low >= 0)
            if count:
                hist = torch.histc(a.abs(), bins=bins, min=0.0, max=max(amax[name], 1e-12)).double()
                hist[0] -= (a == 0).sum()  # exact zeros (after ReLU) are exact on every grid: not counted
                counts[name] += hist.cpu()

        return hook

    passes = [(True, True)] if len(x) <= batch_size else [(True, False), (False, True)]
    was_training = model.training
    model.eval()
    try:
        for find_range, count in passes:
            handles = [modules[name].register_forward_pre_hook(make_hook(name, find_range, count)) for name in layers]
            try:
                for i in range(0, len(x), batch_size):
                    model(x[i : i + batch_size])
            finally:
                for handle in handles:
                    handle.remove()
    finally:
        model.train(was_training)
    return {name: (counts[name], amax[name], nonneg[name]) for name in layers}


def calibrate(
    model: nn.Module,
    x: torch.Tensor,
    bits: Mapping[str, int],
    *,
    bins: int = KL_BINS,
    stride: int = 1,
    batch_size: int = 256,
) -> dict[str, ActivationQuant]:
    """KL-calibrated input quantizers for the layers in ``bits`` ({layer name: b}).

    ``x`` are *normalized* float inputs; the model runs in float (as TensorRT
    calibrates), so each threshold depends on the layer's own bit-width only.
    """
    _check_layer_bits(model, bits)
    hists = activation_histograms(model, x, list(bits), bins=bins, batch_size=batch_size)
    return {name: threshold_from_histogram(*hists[name], bits[name], stride=stride) for name in bits}


def threshold_from_histogram(
    counts: torch.Tensor, amax: float, unsigned: bool, bits: int, *, stride: int = 1
) -> ActivationQuant:
    """An :class:`ActivationQuant` from one layer's |input| histogram over [0, amax]."""
    if amax <= 0 or float(counts.sum()) <= 0:  # an all-zero input: any threshold is exact
        return ActivationQuant(1.0, bits, unsigned)
    edges = torch.linspace(0.0, amax, len(counts) + 1, dtype=torch.float64)
    result = kl_threshold(counts, edges, bits, unsigned=unsigned, stride=stride)
    return ActivationQuant(result.threshold, bits, unsigned)


class _InputQuantizer:
    """Forward pre-hook fake-quantizing a layer's input (a class, so ``deepcopy`` keeps it)."""

    def __init__(self, spec: ActivationQuant) -> None:
        self.spec = spec

    def __call__(self, _module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        x = fake_quantize_activation(args[0], self.spec.threshold, self.spec.bits, self.spec.unsigned)
        return (x, *args[1:])


def _check_quantizers(
    model: nn.Module, bits: Mapping[str, int], activations: Mapping[str, ActivationQuant], weight_clip: str
) -> dict[str, nn.Module]:
    check_weight_clip(weight_clip)
    layers = _check_layer_bits(model, bits)
    stray = [name for name in activations if name not in bits]
    if stray:
        raise KeyError(f"activation quantizers for {stray}, which have no weight bit-width")
    for name, spec in activations.items():
        if spec.bits != bits[name]:
            raise ValueError(f"layer {name!r}: activation calibrated for {spec.bits} bits, weights at {bits[name]}")
    return layers


RatioMemo = dict[tuple[str, int], torch.Tensor]
"""Clip ratios already chosen for one model's weights, by (layer, bits): see :func:`simulated`."""


def _install(
    layers: Mapping[str, nn.Module],
    bits: Mapping[str, int],
    activations: Mapping[str, ActivationQuant],
    weight_clip: str,
    memo: RatioMemo | None = None,
) -> list[torch.utils.hooks.RemovableHandle]:
    """Round the weights in place and hook the input quantizers; returns the hook handles."""
    memo = {} if memo is None else memo
    with torch.no_grad():
        for name, b in bits.items():
            weight = layers[name].weight
            if (name, b) not in memo:
                memo[name, b] = _clip_ratios(layers[name], b, weight_clip)
            weight.copy_(quantize_channels(weight, memo[name, b] * channel_amax(weight), b))
    return _hook_inputs(layers, activations)


TRAINED_RATIOS = "weight_clip_ratios"
"""Buffer in which a layer trained by :func:`quantization_aware` keeps the clip ratios it was trained with."""


def _clip_ratios(layer: nn.Module, bits: int, weight_clip: str) -> torch.Tensor:
    """The layer's clip ratios at ``bits`` under ``weight_clip``: those it was trained with
    (:func:`quantization_aware`) when it was trained at the same bits and rule, else chosen now."""
    trained = getattr(layer, TRAINED_RATIOS, None)
    if getattr(layer, "weight_clip_rule", None) == (bits, weight_clip) and trained is not None:
        if trained.shape == (layer.weight.shape[0],):
            return trained
    return weight_clip_ratios(layer.weight, bits, weight_clip)


def _hook_inputs(
    layers: Mapping[str, nn.Module], activations: Mapping[str, ActivationQuant]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Hook each layer's input quantizer; returns the hook handles."""
    return [layers[name].register_forward_pre_hook(_InputQuantizer(spec)) for name, spec in activations.items()]


def quantize_model(
    model: nn.Module,
    bits: Mapping[str, int],
    activations: Mapping[str, ActivationQuant] | None = None,
    *,
    weight_clip: str = "max",
) -> nn.Module:
    """A fake-quantized copy of ``model``; ``model`` is untouched.

    Weights of the layers in ``bits`` are rounded to their grid (its range clipped by
    ``weight_clip``); inputs are quantized by forward pre-hooks where ``activations`` has a
    quantizer. Other layers stay float.
    """
    activations = activations or {}
    quantized = copy.deepcopy(model)
    _install(_check_quantizers(quantized, bits, activations, weight_clip), bits, activations, weight_clip)
    return quantized


def deploy(
    model: nn.Module,
    bits: Mapping[str, int],
    scheme: QuantScheme,
    calib_x: torch.Tensor,
    *,
    activations: Mapping[str, ActivationQuant] | None = None,
    bins: int = KL_BINS,
    stride: int = 1,
    batch_size: int = 256,
) -> nn.Module:
    """``model`` as it is deployed at ``bits`` under ``scheme``: a fake-quantized copy whose weights
    are clipped by ``scheme.weight_clip`` and, when the scheme quantizes activations, whose inputs
    are KL-calibrated on ``calib_x`` (normalized, on the model's device), unless ``activations``
    (the quantizers a QAT run trained with) are given. The one place recovered networks are
    quantized for scoring and for the tables, so the two cannot differ."""
    acts = activations or {}
    if scheme.activations and activations is None:
        acts = calibrate(model, calib_x, bits, bins=bins, stride=stride, batch_size=batch_size)
    return quantize_model(model, bits, acts, weight_clip=scheme.weight_clip)


@contextmanager
def simulated(
    model: nn.Module,
    bits: Mapping[str, int],
    activations: Mapping[str, ActivationQuant] | None = None,
    *,
    weight_clip: str = "max",
    memo: RatioMemo | None = None,
) -> Iterator[nn.Module]:
    """:func:`quantize_model` in place for the duration of a ``with`` block, then restored.

    Saves a model copy per evaluation when one model is tried at many bit-widths (the
    PPO search). ``memo``, owned by the caller and valid for this model's float weights
    only, keeps the clip ratios chosen for each (layer, bits) across calls: the ``mse``
    search costs ~1 s per model, the quantization itself milliseconds.
    """
    activations = activations or {}
    layers = _check_quantizers(model, bits, activations, weight_clip)
    originals = {name: layers[name].weight.detach().clone() for name in bits}
    handles = []
    try:
        handles = _install(layers, bits, activations, weight_clip, memo)
        yield model
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for name, weight in originals.items():
                layers[name].weight.copy_(weight)


class _WeightQuantizer(nn.Module):
    """Parametrization: the weight a layer computes with is its fake-quantized latent weight."""

    def __init__(self, bits: int, ratios: torch.Tensor) -> None:
        super().__init__()
        self.bits = bits
        self.register_buffer("ratios", ratios)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return quantize_channels(weight, self.ratios * channel_amax(weight), self.bits)


@contextmanager
def quantization_aware(
    model: nn.Module,
    bits: Mapping[str, int],
    activations: Mapping[str, ActivationQuant] | None = None,
    *,
    weight_clip: str = "max",
    memo: RatioMemo | None = None,
) -> Iterator[nn.Module]:
    """Quantization-aware training: ``model`` with its k-bit quantizers in the loop, in place.

    Inside the block every layer in ``bits`` computes with its fake-quantized weight (a
    :mod:`torch.nn.utils.parametrize` parametrization over the latent float weight) and
    quantizes its input where ``activations`` has a quantizer; torch's fake-quantize ops
    pass gradients straight through inside the grid's range (the straight-through
    estimator), so training adapts the latent weights to the grid. The clip ratios r_c of
    ``weight_clip`` are chosen once, from the weights at entry, and each step's grid spans
    r_c max|w_c| of the current weights (NVIDIA's pytorch-quantization likewise calibrates
    once and then trains); the ``mse`` search would otherwise cost ~1 s per step. On exit the
    quantizers are removed and the latent float weights stay, each layer keeping the ratios
    it was trained with (a non-persistent buffer :data:`TRAINED_RATIOS`, outside the state
    dict); :func:`quantize_model` at the same bits and rule then gives the deployed k-bit
    model on the grid it was trained for. Choosing the ratios again on the trained weights
    moved some channels' ratios by up to 0.2-0.3 and cost about a point of top-1 (mse, 4
    bits, quick model). ``memo`` (as in :func:`simulated`: owned by the caller, valid for the
    float weights at entry) shares the ratio search between runs that start from the same weights.
    """
    activations = activations or {}
    memo = {} if memo is None else memo
    layers = _check_quantizers(model, bits, activations, weight_clip)
    handles = []
    try:
        for name, b in bits.items():
            if (name, b) not in memo:
                memo[name, b] = _clip_ratios(layers[name], b, weight_clip)
            parametrize.register_parametrization(layers[name], "weight", _WeightQuantizer(b, memo[name, b]))
        handles = _hook_inputs(layers, activations)
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for name, b in bits.items():
            layer = layers[name]
            if parametrize.is_parametrized(layer, "weight"):
                ratios = layer.parametrizations.weight[0].ratios
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
                layer.register_buffer(TRAINED_RATIOS, ratios, persistent=False)
                layer.weight_clip_rule = (b, weight_clip)


def weight_bits(bits: Mapping[str, int]) -> dict[str, int]:
    """{layer: b} -> {``layer.weight``: b}, the form :func:`edgeprune.measure.model_size` takes."""
    return {f"{name}.weight": b for name, b in bits.items()}
