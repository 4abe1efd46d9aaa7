"""A search signal that sees what QAT recovers: per-layer sensitivity table and the predictor fitted on it.

Scored by post-training quantization (``ppo.signal: ptq``), every low-bit action looks bad
and the agent stays near 8 bits, although quantization-aware recovery wins most of a low
bit-width back (the quick model at 3 bits everywhere: 59.9 % PTQ, 72.0 % after 8 QAT steps).
HAQ (Wang et al., CVPR 2019) therefore scores each candidate after a short fine-tune, which
costs a recovery per configuration. Here (``ppo.signal: sensitivity``) the recovery is paid
per *single change* instead, and configurations are predicted from the changes they make,
as HAWQ (Dong et al., ICCV 2019) adds up per-layer sensitivities:

1. **Table** (:func:`measure_table`): from the mildest configuration (the lowest prune rate
   and the highest bit-width everywhere), each single change (one layer to a lower
   bit-width, one channel group to a higher prune rate) is recovered through the one
   protocol (:meth:`edgeprune.recover.protocol.Recovery.recover`: BN re-estimated when
   channels went, fine-tuned, QAT below 8 bits) for ``ppo.sensitivity.steps`` SGD steps,
   then scored on the search's validation images: cross-entropy and top-1 after
   quantization. Measured once per dense model and kept with the hash of its weights.
2. **Predictor** (:class:`Predictor`): a configuration's loss is the base loss plus the loss
   increases of its changes (additive); its top-1 is ``intercept + slope * loss``, fitted by
   least squares on ``ppo.sensitivity.calibration`` configurations recovered with the stage's
   own recovery (``finetune`` budget 0), the accuracy the agent's floor is about; the first is
   the mildest configuration itself. The table's base is recovered like its entries, under QAT at
   its 8 bits (a short fine-tune moves a network by itself: on the quick model a 6-bit layer "lost"
   1.6 points on average against an untouched base, as much as a 4-bit one; and 8 QAT steps move it
   more than 8 float steps: on the reference model the validation loss after them is 0.530 against
   0.493, so a float-recovered base charged every change ~0.03 of loss it did not cause, and the
   greedy allocation, dividing by bytes saved, bought bytes with deep pruning).
3. **Held out** (:func:`validate`): ``ppo.sensitivity.holdout`` further configurations,
   recovered the same way and scored on the selection images (which neither the table nor the
   fit saw; 1,000 rather than 400 in the quick profile, where one image is 0.25 points); the
   Spearman rank correlation of predicted with recovered top-1 is reported (issue 20 aims at >= 0.8).

The search (:class:`~edgeprune.ppo.search.CompressionSearch`) then scores the agent's and the
controls' configurations with the predictor (sizes stay counted on the pruned network), and
the finalists of every search are re-scored with a real recovery (:class:`RecoveredScorer`).
Configurations for calibration and hold-out are drawn by :func:`sample_configs`: each change
is taken with a probability drawn per configuration, so they range from mild to harsh.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.nn import functional as F

from edgeprune import fakequant
from edgeprune.data import normalize
from edgeprune.io import read_json
from edgeprune.ppo.pruning import apply_plan
from edgeprune.ppo.search import CompressionSearch
from edgeprune.recover.params import Budget
from edgeprune.recover.protocol import Recovery
from edgeprune.train import predict

Config = tuple[tuple[float, ...], tuple[int, ...]]
"""(prune rate per channel group, bit-width per layer)."""


def weights_hash(model: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a model's state dict, names and values: which dense weights a table was measured on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Score:
    """Top-1 (%) and mean cross-entropy of one recovered, quantized network on a set of images."""

    top1: float
    loss: float


class RecoveredScorer:
    """Compresses a configuration from the search's dense model, recovers it through the protocol and scores it.

    Quantized as the search's scheme says; inputs KL-calibrated on the search's calibration
    images after the recovery, unless ``activations`` (the quantizers it was trained with) are given.
    """

    def __init__(self, search: CompressionSearch, recovery: Recovery, *, seed: int = 0) -> None:
        self.search, self.recovery, self.seed = search, recovery, seed

    def __call__(
        self,
        rates: Sequence[float],
        bits: Sequence[int],
        budget: int | Budget,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        activations: dict[str, fakequant.ActivationQuant] | None = None,
        memo: fakequant.RatioMemo | None = None,
        force: bool = False,
    ) -> Score:
        search = self.search
        rates, bits = search.check(rates, bits)
        plan, bits_map = search.plan(rates), search.bits_map(bits)
        model = apply_plan(search.model, plan, search.input_shape)
        model = self.recovery.recover(
            model, seed=self.seed, budget=budget, pruned=plan.removes_channels, bits=bits_map, scheme=search.scheme,
            activations=activations, memo=memo, force=force,
        )  # fmt: skip
        model = model.to(search.device)
        quantized = fakequant.deploy(
            model, bits_map, search.scheme, normalize(search.calib_x).to(search.device), activations=activations,
            bins=search.kl_bins, stride=search.kl_stride, batch_size=search.batch_size,
        )  # fmt: skip
        logits = predict(quantized, x, batch_size=search.batch_size, device=search.device)
        top1 = 100.0 * (logits.argmax(1) == y).float().mean().item()
        return Score(top1, F.cross_entropy(logits, y).item())


@dataclass(frozen=True)
class SensitivityTable:
    """Loss and top-1 of every single change from the mildest configuration, after a short recovery.

    ``bits_scores[t][j]``: layer ``t`` at ``bits[j]``; ``rate_scores[g][i]``: group ``g`` at
    ``rates[i]``. Options are ordered mildest first, so index 0 is the base configuration's own
    choice (its entry repeats ``base``).
    """

    dense_hash: str
    settings: dict[str, Any]
    layers: list[str]
    groups: list[str]
    rates: list[float]
    bits: list[int]
    base: Score
    bits_scores: list[list[Score]]
    rate_scores: list[list[Score]]
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> SensitivityTable:
        rows = lambda table: [[Score(**s) for s in row] for row in table]  # noqa: E731
        return cls(**{**obj, "base": Score(**obj["base"]), "bits_scores": rows(obj["bits_scores"]),
                      "rate_scores": rows(obj["rate_scores"])})  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> SensitivityTable:
        return cls.from_json(read_json(Path(path)))

    def mildest(self) -> Config:
        return (self.rates[0],) * len(self.groups), (self.bits[0],) * len(self.layers)

    def loss_increase(self) -> tuple[np.ndarray, np.ndarray]:
        """(layers x bit options, groups x rate options) arrays of loss increase over the base."""

        def increase(rows: list[list[Score]]) -> np.ndarray:
            return np.array([[s.loss - self.base.loss for s in row] for row in rows]).reshape(len(rows), -1)

        return increase(self.bits_scores), increase(self.rate_scores)


def options(prune_rates: Sequence[float], bits: Sequence[int]) -> tuple[list[float], list[int]]:
    """The action space's options ordered mildest first: rates ascending, bit-widths descending."""
    return sorted(float(r) for r in prune_rates), sorted((int(b) for b in bits), reverse=True)


def measure_table(
    search: CompressionSearch,
    recovery: Recovery,
    *,
    prune_rates: Sequence[float],
    bits: Sequence[int],
    steps: int,
    batch_size: int | None = None,
    settings: dict[str, Any] | None = None,
) -> SensitivityTable:
    """Every single change from the mildest configuration recovered for ``steps`` steps of ``batch_size`` images
    (default: the protocol's ``finetune.batch_size``) and scored (step 1 above).

    All recoveries draw the same training images (recovery seed 0) and run under QAT at their
    bit-widths, the base's and the prune entries' 8 bits included, so entries differ by the change alone.
    Bit-width changes start from the same weights: they share the input quantizers of the
    search's cache and the weight clip ratios.
    """
    tic = time.perf_counter()
    rates, bit_options = options(prune_rates, bits)
    budget = Budget(steps=steps)
    if batch_size is not None:  # the same protocol at a smaller batch: hundreds of entries
        recovery = Recovery(recovery.params.model_copy(update={"batch_size": batch_size}), recovery.train,
                            device=recovery.device)  # fmt: skip
    scorer = RecoveredScorer(search, recovery)
    x, y = search.val_x, search.val_y
    mild_rates, mild_bits = (rates[0],) * len(search.groups), (bit_options[0],) * len(search.layers)
    shared = not search.plan(mild_rates).removes_channels  # bit changes start from the dense weights themselves
    memo: fakequant.RatioMemo = {}

    def bits_entry(t: int, b: int) -> Score:
        config = list(mild_bits)
        config[t] = b
        acts = search.thresholds(mild_rates, config) if shared and search.scheme.activations else None
        return scorer(mild_rates, config, budget, x, y, activations=acts, memo=memo if shared else None, force=True)

    base = bits_entry(0, bit_options[0])  # recovered too, under QAT like every entry (force=True)
    bits_scores = [[base] + [bits_entry(t, b) for b in bit_options[1:]] for t in range(len(search.layers))]
    rate_scores = []
    for g in range(len(search.groups)):
        row = [base]
        for rate in rates[1:]:
            config = list(mild_rates)
            config[g] = rate
            row.append(scorer(config, mild_bits, budget, x, y, force=True))  # QAT at the mildest bits, as the base
        rate_scores.append(row)
    return SensitivityTable(
        weights_hash(search.model), dict(settings or {}, steps=steps, batch_size=batch_size), search.layer_names,
        [group.root for group in search.groups], list(rates), list(bit_options), base, bits_scores, rate_scores,
        round(time.perf_counter() - tic, 2),
    )  # fmt: skip


@dataclass(frozen=True)
class Predictor:
    """Top-1 of a configuration = ``intercept + slope * loss``, loss = base + the table's additive increases.

    ``fitted_on`` says where the line came from: the calibration configurations, or (when they
    cannot give a falling line) the table's own entries.
    """

    table: SensitivityTable
    slope: float
    intercept: float
    fitted_on: str
    _bits: np.ndarray = field(init=False, repr=False, compare=False)
    _rates: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bits_inc, rates_inc = self.table.loss_increase()
        object.__setattr__(self, "_bits", bits_inc)
        object.__setattr__(self, "_rates", rates_inc)

    def loss(self, rates: Sequence[float], bits: Sequence[int]) -> float:
        """The additive loss of a configuration; every rate and bit-width must be one of the table's options."""
        table = self.table
        if len(rates) != len(table.groups) or len(bits) != len(table.layers):
            raise ValueError(
                f"the sensitivity table covers {len(table.groups)} groups and {len(table.layers)} layers, "
                f"got {len(rates)} rates and {len(bits)} bit-widths"
            )
        try:
            r = [table.rates.index(float(rate)) for rate in rates]
            b = [table.bits.index(int(bit)) for bit in bits]
        except ValueError as err:
            raise ValueError(f"a rate or bit-width outside the sensitivity table's options "
                             f"(rates {table.rates}, bits {table.bits}): {err}") from None  # fmt: skip
        added = self._rates[np.arange(len(r)), r].sum() + self._bits[np.arange(len(b)), b].sum()
        return float(table.base.loss + added)

    def top1(self, rates: Sequence[float], bits: Sequence[int]) -> float:
        """Predicted top-1 (%) after the stage's recovery, within [0, 100]."""
        return float(min(100.0, max(0.0, self.intercept + self.slope * self.loss(rates, bits))))

    @classmethod
    def fit(cls, table: SensitivityTable, points: Sequence[tuple[Config, float]]) -> Predictor:
        """The line through (additive loss, recovered top-1) of ``points`` by least squares; when they
        cannot give a falling line (fewer than two distinct losses, or a slope >= 0), the line through
        the table's own entries (top-1 on loss after the short recovery)."""
        base = cls(table, -1.0, 0.0, "")
        losses = np.array([base.loss(*config) for config, _ in points])
        top1 = np.array([t for _, t in points])
        if len(points) >= 2 and np.ptp(losses) > 0:
            slope, intercept = np.polyfit(losses, top1, 1)
            if slope < 0:
                return cls(table, float(slope), float(intercept), f"{len(points)} recovered configurations")
        entries = [s for row in table.bits_scores + table.rate_scores for s in row]
        slope, intercept = np.polyfit([s.loss for s in entries], [s.top1 for s in entries], 1)
        return cls(table, float(slope), float(intercept), "table entries")

    def check(self, model: nn.Module, layers: Sequence[str], groups: Sequence[str]) -> None:
        """Refuse a table measured on other dense weights or another layer / group list (a stale cache)."""
        actual = weights_hash(model)
        if actual != self.table.dense_hash:
            raise ValueError(
                f"the sensitivity table was measured on dense weights {self.table.dense_hash}, this model's are {actual}: "
                "measure it again for this dense model"
            )
        if list(layers) != self.table.layers or list(groups) != self.table.groups:
            raise ValueError("the sensitivity table's layers or channel groups differ from this search's")


def sample_configs(
    table: SensitivityTable, count: int, rng: np.random.Generator
) -> list[Config]:
    """``count`` configurations: per configuration a change probability q ~ U(0.01, 0.3), then each group takes a
    non-mildest rate and each layer a non-highest bit-width with probability q, uniformly among them (the agent's
    floor lies within a few changes of the mildest configuration; q = 0.3 already costs tens of points)."""
    configs = []
    for _ in range(count):
        q = rng.uniform(0.01, 0.3)

        def pick(options: list) -> Any:
            if len(options) > 1 and rng.random() < q:
                return options[int(rng.integers(1, len(options)))]
            return options[0]

        configs.append((tuple(pick(table.rates) for _ in table.groups), tuple(pick(table.bits) for _ in table.layers)))
    return configs


def spearman(predicted: Sequence[float], measured: Sequence[float]) -> float:
    """Spearman's rank correlation (NaN when either side is constant or has fewer than three values)."""
    if len(predicted) < 3 or np.ptp(predicted) == 0 or np.ptp(measured) == 0:
        return math.nan
    return float(stats.spearmanr(predicted, measured).statistic)


def validate(
    table: SensitivityTable,
    score: Callable[[tuple[float, ...], tuple[int, ...]], float],
    *,
    calibration: int,
    holdout: int,
    seed: int = 0,
    holdout_score: Callable[[tuple[float, ...], tuple[int, ...]], float] | None = None,
) -> tuple[Predictor, dict[str, Any]]:
    """Fit the predictor on ``calibration`` recovered configurations and test it on ``holdout`` others (steps 2-3).

    ``score(rates, bits) -> top-1`` recovers and scores one configuration (on the images the
    predictor serves); ``holdout_score`` (default ``score``) scores the held-out ones, on images
    neither the table nor the fit saw. Returns the predictor and a JSON record: every
    configuration with its predicted and recovered top-1, the line, and the held-out Spearman
    correlation (of the additive loss, so the line cannot change it) and mean absolute error.
    """
    rng = np.random.default_rng(seed)
    configs = sample_configs(table, calibration + holdout, rng)
    if calibration:  # the mildest configuration anchors the line's low-loss end (where the floor is)
        configs[0] = table.mildest()
    holdout_score = holdout_score or score
    measured = [(score if i < calibration else holdout_score)(*c) for i, c in enumerate(configs)]
    fit_points = list(zip(configs[:calibration], measured[:calibration], strict=True))
    predictor = Predictor.fit(table, fit_points)
    held = list(zip(configs[calibration:], measured[calibration:], strict=True))
    record = {
        "slope": predictor.slope, "intercept": predictor.intercept, "fitted_on": predictor.fitted_on,
        "configurations": [
            {"role": "calibration" if i < calibration else "holdout", "rates": list(c[0]), "bits": list(c[1]),
             "loss_additive": predictor.loss(*c), "top1_predicted": predictor.top1(*c), "top1_recovered": m}
            for i, (c, m) in enumerate(zip(configs, measured, strict=True))
        ],
        "spearman_holdout": spearman([-predictor.loss(*c) for c, _ in held], [m for _, m in held]),
        "mae_holdout": float(np.mean([abs(predictor.top1(*c) - m) for c, m in held])) if held else math.nan,
    }  # fmt: skip
    return predictor, record
