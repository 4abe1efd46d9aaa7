"""k-bit fake quantization with KL-divergence (entropy) calibration, as in TensorRT.

Below 8 bits there are no integer kernels on the CPUs this project targets, so a
k-bit layer is *simulated*: its weights are rounded to the k-bit grid and its input
activations are clipped and rounded to the k-bit grid, in float arithmetic
(:func:`torch.fake_quantize_per_channel_affine` / ``..._per_tensor_affine``). Its
accuracy is that of a real k-bit deployment; its latency is not (report it as
simulated). Real int8 inference is :func:`edgeprune.quant.quantize_int8`.

- **Weights**: per-output-channel symmetric, scale = max|w_c| / (2^(b-1) - 1), values
  in [-(2^(b-1) - 1), 2^(b-1) - 1] x scale (at most 2^b - 1 distinct values per
  channel). Quantizing before BatchNorm folding is exact: folding multiplies each
  output channel by one factor, and a per-channel symmetric grid scales with it.
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

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from edgeprune.fields import SUPPORTED_BITS

QUANTIZED_TYPES = (nn.Conv2d, nn.Linear)
KL_BINS = 2048  # TensorRT's histogram size


def check_bits(bits: int, allowed: Sequence[int] = SUPPORTED_BITS, name: str = "bits") -> int:
    """``bits`` as an int if it is one of ``allowed``, else a ``ValueError`` naming it."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {bits!r}")
    return int(bits)


def grid_max(bits: int, unsigned: bool = False) -> int:
    """Largest integer of the b-bit grid: 2^b - 1 unsigned, 2^(b-1) - 1 symmetric signed."""
    check_bits(bits)
    return 2**bits - 1 if unsigned else 2 ** (bits - 1) - 1


# --------------------------------------------------------------------------- quantizers


def fake_quantize_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel (dim 0) symmetric fake quantization of a weight tensor."""
    if weight.dim() < 2:
        raise ValueError(f"expected a weight of 2+ dims (out channels first), got shape {tuple(weight.shape)}")
    qmax = grid_max(bits)
    amax = weight.detach().abs().flatten(1).amax(1)
    scale = (amax / qmax).clamp_min(torch.finfo(torch.float32).tiny).float()
    zero_point = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, -qmax, qmax)


def fake_quantize_activation(x: torch.Tensor, threshold: float, bits: int, unsigned: bool) -> torch.Tensor:
    """Clip ``x`` to the threshold and round it to the b-bit grid (per tensor)."""
    qmax = grid_max(bits, unsigned)
    scale = max(float(threshold), torch.finfo(torch.float32).tiny) / qmax
    return torch.fake_quantize_per_tensor_affine(x, scale, 0, 0 if unsigned else -qmax, qmax)


# --------------------------------------------------------------------------- KL calibration


@dataclass(frozen=True)
class KLResult:
    """Outcome of :func:`kl_threshold`: the chosen threshold and the whole divergence curve."""

    threshold: float
    bins_kept: int
    thresholds: np.ndarray  # candidate thresholds (upper edge of the last kept bin)
    divergences: np.ndarray  # KL(reference || quantized) of each candidate (inf where undefined)


def _xlogx(a: np.ndarray) -> np.ndarray:
    return np.where(a > 0, a * np.log(np.where(a > 0, a, 1.0)), 0.0)


def kl_threshold(
    hist: np.ndarray | torch.Tensor,
    edges: np.ndarray | torch.Tensor,
    bits: int,
    *,
    unsigned: bool = False,
    stride: int = 1,
) -> KLResult:
    """Entropy calibration (TensorRT, Migacz 2017): the clipping threshold minimising KL.

    ``hist`` counts |activation| in bins with boundaries ``edges`` (from 0). For every
    candidate number of kept bins i (from the number of levels n = 2^(b-1), or 2^b when
    ``unsigned``, up to all bins, every ``stride``-th):

    - reference P = hist[:i] with the outliers (the count beyond bin i) added to bin i-1;
    - candidate Q = hist[:i] merged into n levels (bin j goes to level floor(j n / i)),
      each level's count spread evenly over its non-empty bins;
    - divergence KL(P || Q) of the normalised distributions (inf where P > 0 = Q).

    The threshold is the upper edge of the last kept bin of the first minimum.

    Written here because no installed library implements it: ``torch.ao`` observers
    minimise an L2 error, and NVIDIA's pytorch-quantization (which has it) is not a
    dependency. It is vectorised over candidates with cumulative sums: within a level
    Q is constant, so sum_j P_j log Q_j collapses to one term per level.
    """
    levels = 2 ** check_bits(bits) if unsigned else 2 ** (check_bits(bits) - 1)
    h = np.asarray(hist.cpu() if isinstance(hist, torch.Tensor) else hist, dtype=np.float64)
    e = np.asarray(edges.cpu() if isinstance(edges, torch.Tensor) else edges, dtype=np.float64)
    if h.ndim != 1 or e.shape != (len(h) + 1,):
        raise ValueError(f"need a 1-d histogram and len(hist) + 1 edges, got {h.shape} and {e.shape}")
    if (h < 0).any() or h.sum() <= 0:
        raise ValueError("the histogram must be non-negative with a positive total")
    if len(h) < levels:
        raise ValueError(f"{len(h)} histogram bins cannot be merged into {levels} levels; use more bins")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    n_bins, total = len(h), h.sum()
    cum_h = np.concatenate([[0.0], np.cumsum(h)])
    cum_nz = np.concatenate([[0], np.cumsum(h > 0)])
    cum_hlogh = np.concatenate([[0.0], np.cumsum(_xlogx(h))])

    kept = np.arange(levels, n_bins + 1, stride)
    if kept[-1] != n_bins:
        kept = np.append(kept, n_bins)
    outliers = total - cum_h[kept]
    last = h[kept - 1] + outliers
    sum_plogp = (cum_hlogh[kept - 1] + _xlogx(last)) / total - np.log(total)

    k = np.arange(levels + 1)
    bounds = (k[None, :] * kept[:, None] + levels - 1) // levels  # first bin of each level: ceil(k i / n)
    level_sum = np.diff(cum_h[bounds], axis=1)
    level_nz = np.diff(cum_nz[bounds], axis=1)
    ref_mass = level_sum.copy()
    ref_mass[:, -1] += outliers  # bin i-1 always falls in the last level
    q_total = cum_h[kept]
    with np.errstate(divide="ignore", invalid="ignore"):
        log_q = np.log(level_sum / (level_nz * q_total[:, None]))
        cross = np.where(ref_mass > 0, ref_mass * log_q, 0.0).sum(1) / total
    divergences = sum_plogp - cross
    undefined = ((h[kept - 1] == 0) & (outliers > 0)) | (q_total == 0) | ~np.isfinite(divergences)
    divergences = np.where(undefined, np.inf, np.maximum(divergences, 0.0))
    best = int(np.argmin(divergences))
    return KLResult(float(e[kept[best]]), int(kept[best]), e[kept], divergences)


# --------------------------------------------------------------------------- model-level


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
    model: nn.Module, bits: Mapping[str, int], activations: Mapping[str, ActivationQuant]
) -> dict[str, nn.Module]:
    layers = _check_layer_bits(model, bits)
    stray = [name for name in activations if name not in bits]
    if stray:
        raise KeyError(f"activation quantizers for {stray}, which have no weight bit-width")
    for name, spec in activations.items():
        if spec.bits != bits[name]:
            raise ValueError(f"layer {name!r}: activation calibrated for {spec.bits} bits, weights at {bits[name]}")
    return layers


def _install(
    layers: Mapping[str, nn.Module], bits: Mapping[str, int], activations: Mapping[str, ActivationQuant]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Round the weights in place and hook the input quantizers; returns the hook handles."""
    with torch.no_grad():
        for name, b in bits.items():
            layers[name].weight.copy_(fake_quantize_weight(layers[name].weight, b))
    return _hook_inputs(layers, activations)


def _hook_inputs(
    layers: Mapping[str, nn.Module], activations: Mapping[str, ActivationQuant]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Hook each layer's input quantizer; returns the hook handles."""
    return [layers[name].register_forward_pre_hook(_InputQuantizer(spec)) for name, spec in activations.items()]


def quantize_model(
    model: nn.Module, bits: Mapping[str, int], activations: Mapping[str, ActivationQuant] | None = None
) -> nn.Module:
    """A fake-quantized copy of ``model``; ``model`` is untouched.

    Weights of the layers in ``bits`` are rounded to their grid; inputs are quantized by
    forward pre-hooks where ``activations`` has a quantizer. Other layers stay float.
    """
    activations = activations or {}
    quantized = copy.deepcopy(model)
    _install(_check_quantizers(quantized, bits, activations), bits, activations)
    return quantized


@contextmanager
def simulated(
    model: nn.Module, bits: Mapping[str, int], activations: Mapping[str, ActivationQuant] | None = None
) -> Iterator[nn.Module]:
    """:func:`quantize_model` in place for the duration of a ``with`` block, then restored.

    Saves a model copy per evaluation when one model is tried at many bit-widths (the
    PPO search).
    """
    activations = activations or {}
    layers = _check_quantizers(model, bits, activations)
    originals = {name: layers[name].weight.detach().clone() for name in bits}
    handles = []
    try:
        handles = _install(layers, bits, activations)
        yield model
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for name, weight in originals.items():
                layers[name].weight.copy_(weight)


class _WeightQuantizer(nn.Module):
    """Parametrization: the weight a layer computes with is its fake-quantized latent weight."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return fake_quantize_weight(weight, self.bits)


@contextmanager
def quantization_aware(
    model: nn.Module, bits: Mapping[str, int], activations: Mapping[str, ActivationQuant] | None = None
) -> Iterator[nn.Module]:
    """Quantization-aware training: ``model`` with its k-bit quantizers in the loop, in place.

    Inside the block every layer in ``bits`` computes with its fake-quantized weight (a
    :mod:`torch.nn.utils.parametrize` parametrization over the latent float weight) and
    quantizes its input where ``activations`` has a quantizer; torch's fake-quantize ops
    pass gradients straight through inside the grid's range (the straight-through
    estimator), so training adapts the latent weights to the grid. On exit the
    quantizers are removed and the latent float weights stay: :func:`quantize_model`
    then gives the deployed k-bit model.
    """
    activations = activations or {}
    layers = _check_quantizers(model, bits, activations)
    handles = []
    try:
        for name, b in bits.items():
            parametrize.register_parametrization(layers[name], "weight", _WeightQuantizer(b))
        handles = _hook_inputs(layers, activations)
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for name in bits:
            if parametrize.is_parametrized(layers[name], "weight"):
                parametrize.remove_parametrizations(layers[name], "weight", leave_parametrized=False)


def weight_bits(bits: Mapping[str, int]) -> dict[str, int]:
    """{layer: b} -> {``layer.weight``: b}, the form :func:`edgeprune.measure.model_size` takes."""
    return {f"{name}.weight": b for name, b in bits.items()}
