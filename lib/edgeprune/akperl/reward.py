r"""The AKPERL reward, its per-layer coefficients and the coefficient grid.

The paper's episode reward, over the units (layers) ``i`` of one pass::

    R = sum_i [ alpha_i * Acc - beta_i * Power - gamma_i * Intensity_i ] - lambda * |a|

with, in this reproduction:

- ``Acc``: top-1 of the pruned network as a fraction in [0, 1] (BN-recalibrated, on the
  fixed validation subset, under the episode's input condition);
- ``Power``: its modelled dynamic energy per image divided by the dense network's, in
  (0, 1] (the above-idle power at a fixed frame rate, relative to dense);
- ``Intensity_i``: the pruning level actually applied to unit ``i``, in {0, .25, .5, .75, 1};
- ``|a|``: the L1 norm of the episode's applied levels, ``sum_i Intensity_i``;
- ``alpha_i = alpha * w_i`` (same for beta, gamma) with layer weights ``w_i >= 0``
  summing to 1: by default each unit's share of the dense MACs (:func:`layer_weights`).

Acc and Power are properties of the whole network, so ``sum_i alpha_i Acc = alpha Acc``
and ``sum_i beta_i Power = beta Power``: the per-layer weights act on the intensity
term, ``sum_i gamma w_i Intensity_i``, while ``lambda |a|`` charges every unit the same.

**Per-step vs terminal.** R is paid out step by step as potential-based shaping
(Ng, Harada & Russell 1999) with potential ``alpha Acc_t - beta Power_t`` of the
partly pruned network after step ``t``::

    r_t = alpha (Acc_t - Acc_{t-1}) - beta (Power_t - Power_{t-1}) - (gamma w_t + lambda) a_t

with ``Acc_0`` the dense network's accuracy and ``Power_0 = 1``. The undiscounted
return is ``R - (alpha Acc_0 - beta)``: the paper's R minus a constant that no action
changes, so the optimal policy is that of the terminal reward while every step gets
credit for the accuracy and power it changed. Units inside a removed block take no
step and add no intensity (the removing step's ``a = 1`` accounts for the block).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgeprune.akperl.units import PruningUnit


def layer_weights(units: Sequence[PruningUnit], scheme: str | Mapping[str, float] = "mac_share") -> tuple[float, ...]:
    """Per-unit weights ``w_i`` summing to 1.

    ``"mac_share"``: proportional to each unit's share of the dense MACs; ``"uniform"``:
    equal; a mapping gives a weight per unit name and must name every unit and no other.
    """
    if not units:
        raise ValueError("layer_weights needs at least one unit")
    if isinstance(scheme, Mapping):
        names = [u.name for u in units]
        unknown = sorted(set(scheme) - set(names))
        missing = [n for n in names if n not in scheme]
        if unknown or missing:
            raise KeyError(f"layer_weights: unknown layer(s) {unknown}, missing layer(s) {missing}; layers are {names}")
        raw = [float(scheme[n]) for n in names]
    elif scheme == "mac_share":
        raw = [u.mac_share for u in units]
    elif scheme == "uniform":
        raw = [1.0] * len(units)
    else:
        raise ValueError(f"layer_weights scheme must be 'mac_share', 'uniform' or a mapping, got {scheme!r}")
    if min(raw) < 0 or sum(raw) <= 0:
        raise ValueError(f"layer weights must be non-negative with a positive sum, got {raw}")
    total = sum(raw)
    return tuple(w / total for w in raw)


@dataclass(frozen=True)
class RewardCoefficients:
    """alpha, beta, gamma (spread over units by ``weights``) and lambda."""

    alpha: float
    beta: float
    gamma: float
    lam: float
    weights: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0 (accuracy must count), got {self.alpha}")
        for name in ("beta", "gamma", "lam"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.weights or min(self.weights) < 0 or abs(sum(self.weights) - 1.0) > 1e-6:
            raise ValueError(f"weights must be non-negative and sum to 1, got {self.weights}")

    def step(self, unit: int, level: float, acc: tuple[float, float], power: tuple[float, float]) -> float:
        """Shaped reward of the step that applied ``level`` to unit ``unit``.

        ``acc`` and ``power`` are (before, after) the step.
        """
        return (
            self.alpha * (acc[1] - acc[0])
            - self.beta * (power[1] - power[0])
            - (self.gamma * self.weights[unit] + self.lam) * level
        )

    def objective(self, acc: float, power: float, levels: Mapping[int, float]) -> float:
        """The paper's R for a finished episode: ``levels`` maps each unit that took a step to its level."""
        # sum_i alpha_i Acc = alpha Acc and sum_i beta_i Power = beta Power, since the weights sum to 1
        intensity = sum(self.gamma * self.weights[i] * a for i, a in levels.items())
        return self.alpha * acc - self.beta * power - intensity - self.lam * sum(abs(a) for a in levels.values())

    def offset(self, dense_acc: float) -> float:
        """``alpha Acc_0 - beta Power_0``: what the shaped return lacks of R."""
        return self.alpha * dense_acc - self.beta * 1.0


def coefficient_grid(
    alphas: Sequence[float], betas: Sequence[float], gammas: Sequence[float]
) -> list[tuple[float, float, float]]:
    """Every (alpha, beta, gamma) of the grid; an empty, duplicated or out-of-range list is a ``ValueError``."""
    for name, values, low_open in (("alpha", alphas, True), ("beta", betas, False), ("gamma", gammas, False)):
        values = list(values)
        if not values:
            raise ValueError(f"coefficient grid: {name} is empty")
        if len(set(values)) != len(values):
            raise ValueError(f"coefficient grid: {name} has duplicates {values}")
        if any((v <= 0) if low_open else (v < 0) for v in values):
            raise ValueError(f"coefficient grid: {name} values must be {'> 0' if low_open else '>= 0'}, got {values}")
    return list(itertools.product(alphas, betas, gammas))
