"""The threshold τ by KL: τ = argmin KL(p_before || p_after) over thresholds reaching the target.

``p_before`` / ``p_after`` are histograms of the values entering one layer (by default
the classifier, i.e. the penultimate features) on calibration images, before and after
pruning; both networks get their BatchNorm statistics re-estimated on those images, so
the difference is what pruning did.

Why the constraint: removing nothing leaves ``p_after = p_before`` and KL = 0, so the
unconstrained argmin is τ = 0, no pruning at all. The search therefore only admits
thresholds whose network reaches the target compression, and KL chooses among those.
KL grows with the channels removed, so for one QSA it lands at the smallest feasible
τ; the real choice is *between* QSAs trained with different λ (sparser QSAs rank
channels differently) and candidate τ above the boundary, which is why the search runs
over (λ, τ) pairs and reports every candidate it evaluated.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.stats import entropy
from torch import nn

from edgeprune.data import normalize
from edgeprune.measure import INPUT_SHAPE
from edgeprune.prune import PruneReport, classifier_name, recalibrate_bn
from edgeprune.qsa.masks import (
    Compression,
    QSAImportance,
    check_target,
    normalised_importance,
    prune_by_importance,
    threshold_of,
)

SMOOTHING = 1e-6  # added to every bin's probability, so an empty bin gives a finite KL
MAX_FRACTION = 0.95  # the most channels any candidate removes
BRACKETS = (0.25, 0.5, 0.75, MAX_FRACTION)  # fractions tried in turn to bracket the target
FRACTION_TOL = 0.005  # resolution of the smallest feasible fraction


def histogram_kl(before: torch.Tensor, after: torch.Tensor, bins: int = 128) -> float:
    """KL(p_before || p_after) of the value histograms of two samples.

    Bins span the range of ``before``; values of ``after`` outside it count in the edge
    bins. Each histogram is normalised and smoothed by :data:`SMOOTHING`.
    """
    if bins < 2:
        raise ValueError(f"bins must be >= 2, got {bins}")
    before, after = before.detach().flatten().float(), after.detach().flatten().float()
    if before.numel() == 0 or after.numel() == 0:
        raise ValueError("histogram_kl needs non-empty samples")
    lo, hi = float(before.min()), float(before.max())
    if hi <= lo:
        hi = lo + 1e-6
    p = torch.histc(before, bins, lo, hi).double()
    q = torch.histc(after.clamp(lo, hi), bins, lo, hi).double()
    p, q = p / p.sum() + SMOOTHING, q / q.sum() + SMOOTHING
    return float(entropy(p.numpy(), q.numpy()))


@dataclass(frozen=True)
class Candidate:
    """One evaluated threshold: the QSA's λ, the channel fraction and τ it removes,
    the (estimated) compression reached and KL(p_before || p_after)."""

    lam: float
    fraction: float
    threshold: float
    compression: float
    kl: float

    def row(self) -> dict[str, float]:
        return asdict(self)


def choose_threshold(candidates: Sequence[Candidate], target: float) -> Candidate:
    """The candidate of least KL among those reaching ``target``; ties go to the smaller τ.

    No candidate reaching the target is a ``ValueError`` naming the best one found.
    """
    target = check_target(target)
    if not candidates:
        raise ValueError("no threshold candidates to choose from")
    feasible = [c for c in candidates if c.compression >= target]
    if not feasible:
        best = max(c.compression for c in candidates)
        raise ValueError(f"target compression {target:g}x is unreachable: the candidates reach at most {best:.2f}x")
    return min(feasible, key=lambda c: (c.kl, c.fraction))


@torch.no_grad()
def layer_input(model: nn.Module, x: torch.Tensor, layer: str, batch_size: int = 256) -> torch.Tensor:
    """Every value entering module ``layer`` of ``model`` on uint8 images ``x``, flattened."""
    modules = dict(model.named_modules())
    if layer not in modules:
        raise KeyError(f"layer {layer!r} does not exist in {type(model).__name__}")
    seen: list[torch.Tensor] = []
    handle = modules[layer].register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().float().flatten().cpu()))
    model.eval()
    param = next(model.parameters())
    try:
        for i in range(0, len(x), batch_size):
            model(normalize(x[i : i + batch_size].to(param.device)))
    finally:
        handle.remove()
    return torch.cat(seen)


class CompressionCurve:
    """Estimated compression of one pruning ranking as a function of the channel fraction.

    ``prune(fraction)`` returns a pruned copy and its report (raising ``ValueError``
    where the network cannot lose that much); ``measure(model)`` its compression (e.g.
    :meth:`Compression.estimate`). Every evaluated point is remembered, so
    later targets on the same ranking start from a tight bracket, and the last few
    pruned copies are kept (an LRU of ``keep``) for whoever needs the network itself.
    """

    def __init__(
        self, prune: Callable[[float], tuple[nn.Module, PruneReport]], measure: Callable[[nn.Module], float], keep: int = 4
    ) -> None:
        self._prune = prune
        self._measure = measure
        self.keep = keep
        self.points: dict[float, float] = {}  # fraction -> estimated compression
        self.limit = math.inf  # smallest fraction found impossible
        self._models: OrderedDict[float, tuple[nn.Module, PruneReport]] = OrderedDict()

    def model(self, fraction: float) -> tuple[nn.Module, PruneReport]:
        """The pruned copy at ``fraction`` and its report."""
        fraction = round(float(fraction), 6)
        if fraction in self._models:
            self._models.move_to_end(fraction)
            return self._models[fraction]
        if fraction >= self.limit:
            raise ValueError(f"the network cannot lose a fraction {fraction:.3f} of its channels")
        try:
            pruned = self._prune(fraction)
        except ValueError:
            self.limit = min(self.limit, fraction)
            raise
        self._models[fraction] = pruned
        while len(self._models) > self.keep:
            self._models.popitem(last=False)
        self.points[fraction] = self._measure(pruned[0])
        return pruned

    def __call__(self, fraction: float) -> float:
        fraction = round(float(fraction), 6)
        if fraction not in self.points:
            self.model(fraction)
        return self.points[fraction]

    def smallest_fraction(self, target: float) -> float:
        """The smallest fraction (to :data:`FRACTION_TOL`) whose estimate reaches ``target``.

        Compression grows with the fraction: the target is bracketed by known points or
        by :data:`BRACKETS`, the crossing found by Brent's method
        (``scipy.optimize.brentq``), then the fraction steps up until the target is met.
        An unreachable target is a ``ValueError`` saying what was reached.
        """
        target = check_target(target)

        def gap(fraction: float) -> float:
            return math.log(self(fraction) / target)

        if gap(0.0) >= 0:
            return 0.0
        below = [f for f, c in self.points.items() if c < target]
        above = [f for f, c in self.points.items() if c >= target]
        lo, hi = max(below), min(above, default=None)
        if hi is None:
            for bracket in (b for b in BRACKETS if b > lo):
                try:
                    if gap(bracket) >= 0:
                        hi = bracket
                        break
                except ValueError:  # the network cannot lose that many channels
                    break
                lo = bracket
        if hi is None:
            raise ValueError(
                f"target compression {target:g}x is unreachable: pruning reaches at most {max(self.points.values()):.2f}x "
                f"(removing {lo:.0%} of the channels)"
            )
        fraction = brentq(gap, lo, hi, xtol=FRACTION_TOL) if hi - lo > FRACTION_TOL else hi
        while gap(fraction) < 0:
            fraction = min(hi, fraction + FRACTION_TOL)
        return round(fraction, 6)


class ThresholdSearch:
    """Evaluate thresholds on one dense model: prune, estimate compression, recalibrate, KL.

    One :class:`CompressionCurve` per λ (the QSA's ranking); KL values are cached by
    (λ, fraction).
    """

    def __init__(
        self,
        dense: nn.Module,
        calib_x: torch.Tensor,
        compression: Compression,
        *,
        ignored_layers: Sequence[str],
        kl_layer: str | None = None,
        bins: int = 128,
        round_to: int | None = None,
        input_shape: Sequence[int] = INPUT_SHAPE,
    ) -> None:
        self.dense = dense.eval()
        self.calib_x = calib_x
        self.compression = compression
        self.ignored_layers = list(ignored_layers)
        self.kl_layer = kl_layer or classifier_name(dense, input_shape)
        self.bins = bins
        self.round_to = round_to
        self.input_shape = tuple(input_shape)
        # The reference gets the same BN recalibration as every pruned network, so that
        # KL measures what pruning changed and is exactly 0 for no pruning.
        self.before = layer_input(recalibrate_bn(copy.deepcopy(dense), calib_x), calib_x, self.kl_layer)
        self.curves: dict[float, CompressionCurve] = {}
        self._kl: dict[tuple[float, float], float] = {}
        self._scores: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}

    def curve(self, lam: float, scores: Mapping[str, torch.Tensor]) -> CompressionCurve:
        """The compression curve of the ranking by λ's QSA ``scores``."""
        if lam not in self.curves:

            def prune(fraction: float) -> tuple[nn.Module, PruneReport]:
                return prune_by_importance(
                    self.dense,
                    scores,
                    fraction,
                    ignored_layers=self.ignored_layers,
                    input_shape=self.input_shape,
                    round_to=self.round_to,
                )

            self.curves[lam] = CompressionCurve(prune, self.compression.estimate)
            self._scores[lam] = normalised_importance(self.dense, QSAImportance(scores), self.ignored_layers, self.input_shape)
        return self.curves[lam]

    def kl(self, lam: float, scores: Mapping[str, torch.Tensor], fraction: float) -> float:
        """KL(p_before || p_after) of the ``kl_layer`` input after pruning and BN recalibration."""
        key = (lam, round(fraction, 6))
        if key not in self._kl:
            model = copy.deepcopy(self.curve(lam, scores).model(fraction)[0])
            recalibrate_bn(model, self.calib_x)
            self._kl[key] = histogram_kl(self.before, layer_input(model, self.calib_x, self.kl_layer), self.bins)
        return self._kl[key]

    def candidate(self, lam: float, scores: Mapping[str, torch.Tensor], fraction: float) -> Candidate:
        """Evaluate one (λ, fraction): its τ, estimated compression and KL."""
        curve = self.curve(lam, scores)
        threshold = threshold_of(*self._scores[lam], fraction)
        return Candidate(lam, fraction, threshold, curve(fraction), self.kl(lam, scores, fraction))

    def search(
        self,
        scores_by_lam: Mapping[float, Mapping[str, torch.Tensor]],
        target: float,
        *,
        candidates: int = 3,
        step: float = 0.03,
    ) -> tuple[Candidate, list[Candidate]]:
        """(chosen, all evaluated) candidates for ``target``.

        For each λ: the smallest feasible fraction and ``candidates - 1`` more, ``step``
        apart; KL decides among all of them (:func:`choose_threshold`).
        """
        if candidates < 1 or step <= 0:
            raise ValueError(f"need candidates >= 1 and step > 0, got {candidates}, {step}")
        evaluated = []
        for lam, scores in scores_by_lam.items():
            start = self.curve(lam, scores).smallest_fraction(target)
            for fraction in np.unique(np.clip(start + step * np.arange(candidates), 0.0, MAX_FRACTION)):
                try:
                    evaluated.append(self.candidate(lam, scores, float(fraction)))
                except ValueError:  # beyond what the network can lose
                    break
        return choose_threshold(evaluated, target), evaluated
