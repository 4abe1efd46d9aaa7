"""The range a k-bit grid covers: KL (entropy) calibration, and per-channel weight clipping.

A symmetric k-bit grid spends its 2^k - 1 values evenly over [-a, a]. Choosing ``a`` trades
rounding error (a large range, coarse steps) against clipping error (a small one, outliers cut).

- **Activations** (:func:`kl_threshold`): TensorRT's entropy calibration picks ``a`` from a
  histogram of |x| over calibration images.
- **Weights** (:func:`weight_clip_ratios`): per output channel c, ``a_c = r_c max|w_c|`` with a
  clip ratio r_c in (0, 1] chosen by one of :data:`WEIGHT_CLIPS`:

  - ``max``: r_c = 1, the usual max-abs scale (no clipping);
  - ``mse``: r_c minimises the channel's squared quantization error sum (w - q(w))^2 (the
    "MSE observer" of most quantization toolkits, per channel), searched on a 0.01 grid in two
    passes (:data:`COARSE_RATIOS`, then :data:`FINE_STEPS` around each channel's best): 29
    passes over the weights instead of 100;
  - ``kl``: the seed's "weights quantized using KL divergence". A channel of a depthwise 3x3
    layer has 9 weights, too few for a distribution, so :func:`kl_threshold` picks one
    threshold t from the histogram of the whole layer's |w| (at most numel / 8 bins, so the
    bins are not mostly empty) and every channel's range is capped there: r_c =
    min(1, t / max|w_c|). Pooling channel-normalised magnitudes instead puts every
    channel's maximum in the last bin, and that spike makes KL refuse any clipping.

  Exact zeros (pruned weights) sway neither search: every grid holds them exactly, so they add
  no squared error, and the ``kl`` histogram leaves them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

import numpy as np
import torch

from edgeprune.fields import SUPPORTED_BITS, WeightClip

KL_BINS = 2048  # TensorRT's histogram size
WEIGHT_CLIPS: tuple[str, ...] = get_args(WeightClip)
KL_SAMPLES_PER_BIN = 8
"""The ``kl`` rule's histogram of a layer's |w| has at most numel / 8 bins (at least 2^b, at most KL_BINS)."""
COARSE_RATIOS = torch.arange(1, 21, dtype=torch.float32) / 20
"""First pass of the ``mse`` search: clip ratios 0.05, 0.10, ..., 1.00 of max|w_c|."""
FINE_STEPS = torch.arange(-4, 5, dtype=torch.float32) / 100
"""Second pass: each channel's best coarse ratio -0.04 ... +0.04 in steps of 0.01 (within [0.01, 1])."""


def check_bits(bits: int, allowed: Sequence[int] = SUPPORTED_BITS, name: str = "bits") -> int:
    """``bits`` as an int if it is one of ``allowed``, else a ``ValueError`` naming it."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, got {bits!r}")
    return int(bits)


def grid_max(bits: int, unsigned: bool = False) -> int:
    """Largest integer of the b-bit grid: 2^b - 1 unsigned, 2^(b-1) - 1 symmetric signed."""
    check_bits(bits)
    return 2**bits - 1 if unsigned else 2 ** (bits - 1) - 1


class _RoundToGrid(torch.autograd.Function):
    """``clamp(round(x * inv), qmin, qmax) * scale`` with the straight-through gradient of
    ``torch.fake_quantize_per_*_affine``: the incoming gradient where the rounded value lies in
    [qmin, qmax], zero where it was clamped."""

    @staticmethod
    def forward(ctx, x, inv, scale, qmin, qmax):
        q = torch.mul(x, inv, out=torch.empty_like(x)).round_()  # x's strides, as torch's op keeps them
        ctx.save_for_backward((q >= qmin) & (q <= qmax))
        return q.clamp_(qmin, qmax).mul_(scale)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside, None, None, None, None


def round_to_grid(x: torch.Tensor, scale: float | torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """Symmetric / unsigned fake quantization (zero-point 0) of ``x`` to ``scale`` x [qmin, qmax]: a float
    ``scale`` per tensor, or a tensor of one scale per output channel (dim 0).

    The values and, under autograd, the straight-through gradients and output strides of
    ``torch.fake_quantize_per_*_affine`` bit for bit (the reciprocal taken in float32 as torch's kernels
    take it; tests compare all three: a 1x1 conv weight whose output strides differ picks another conv
    kernel and moves a QAT run by float noise), in element-wise ops: torch's fake-quantize CPU kernels do
    not vectorise. Forward + backward, one thread: 64x16x16x16 5.3 -> 0.6 ms, 250x16x16x16 15.7 -> 7.0 ms;
    24 QAT steps of the quick model (128 images, mixed 4-8 bits, one thread) 6.6 -> 6.0 s, same weights.
    """
    if isinstance(scale, torch.Tensor):
        scale = scale.float().view((-1,) + (1,) * (x.dim() - 1))
        inverse = 1.0 / scale
    else:
        scale32 = np.float32(scale)
        scale, inverse = float(scale32), float(np.float32(1.0) / scale32)
    if torch.is_grad_enabled() and x.requires_grad:
        return _RoundToGrid.apply(x, inverse, scale, qmin, qmax)
    return torch.round(x * inverse).clamp_(qmin, qmax).mul_(scale)


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


# --------------------------------------------------------------------------- weight clipping


def check_weight_clip(method: str) -> str:
    """``method`` if it is one of :data:`WEIGHT_CLIPS`, else a ``ValueError`` naming the choices."""
    if method not in WEIGHT_CLIPS:
        raise ValueError(f"weight clipping must be one of {list(WEIGHT_CLIPS)}, got {method!r}")
    return method


def channel_amax(weight: torch.Tensor) -> torch.Tensor:
    """max|w_c| of every output channel (dim 0) of a weight of 2+ dims."""
    if weight.dim() < 2:
        raise ValueError(f"expected a weight of 2+ dims (out channels first), got shape {tuple(weight.shape)}")
    return weight.detach().abs().flatten(1).amax(1).float()


def quantize_channels(weight: torch.Tensor, amax: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel symmetric fake quantization of ``weight`` to the grid [-amax_c, amax_c]."""
    qmax = grid_max(bits)
    scale = (amax / qmax).clamp_min(torch.finfo(torch.float32).tiny).float()
    return round_to_grid(weight, scale, -qmax, qmax)


def _least_error(w: torch.Tensor, amax: torch.Tensor, bits: int, candidates: torch.Tensor) -> torch.Tensor:
    """Per channel, the candidate ratio (``candidates[k, c]``, ascending in k) of least squared error;
    the largest among equal errors."""
    errors = torch.stack([(w - quantize_channels(w, r * amax, bits)).square().sum(1) for r in candidates])
    best = errors.shape[0] - 1 - errors.flip(0).argmin(0)
    return candidates.gather(0, best[None])[0]


@torch.no_grad()
def weight_clip_ratios(weight: torch.Tensor, bits: int, method: str = "max") -> torch.Tensor:
    """Per-output-channel clip ratios r_c in (0, 1] of ``weight`` at ``bits`` (module docstring)."""
    check_bits(bits)
    amax = channel_amax(weight)
    if check_weight_clip(method) == "max":
        return torch.ones_like(amax)
    w = weight.detach().float().flatten(1)
    if method == "mse":
        coarse = _least_error(w, amax, bits, COARSE_RATIOS[:, None].expand(-1, len(amax)))
        return _least_error(w, amax, bits, (coarse[None, :] + FINE_STEPS[:, None]).clamp(0.01, 1.0))
    magnitudes = w.abs().flatten()
    magnitudes = magnitudes[magnitudes > 0].double()
    if magnitudes.numel() == 0:  # an all-zero weight: any range is exact
        return torch.ones_like(amax)
    levels = 2 ** (bits - 1)
    bins = int(min(KL_BINS, max(2 * levels, magnitudes.numel() // KL_SAMPLES_PER_BIN)))
    top = float(magnitudes.max())
    hist = torch.histc(magnitudes, bins=bins, min=0.0, max=top)
    edges = torch.linspace(0.0, top, bins + 1, dtype=torch.float64)
    threshold = kl_threshold(hist, edges, bits).threshold
    return (threshold / amax.clamp_min(torch.finfo(torch.float32).tiny)).clamp(max=1.0)
