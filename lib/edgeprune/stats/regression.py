"""OLS of a metric on pruning intensity, read as the change per step of pruning ("per 10% more pruning")."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm

from edgeprune.stats.checks import check_confidence, complete_rows

__all__ = ["RegressionResult", "regress_on_intensity"]


@dataclass(frozen=True)
class RegressionResult:
    """OLS fit ``metric = intercept + slope * intensity`` and the papers' "per 10% more pruning" reading.

    ``change_per_step`` = slope * step (metric units per ``step`` of intensity, which is
    ``step_pct`` percentage points of pruning) with its CI;
    ``relative_change_pct`` = 100 * change_per_step / intercept, the change relative to the
    unpruned (intensity 0) prediction.
    """

    metric: str
    intensity: str
    slope: float
    slope_ci: tuple[float, float]
    intercept: float
    intercept_ci: tuple[float, float]
    r2: float
    p: float
    n: int
    confidence: float
    step: float
    step_pct: float
    change_per_step: float
    change_per_step_ci: tuple[float, float]
    relative_change_pct: float

    @property
    def sentence(self) -> str:
        """E.g. ``"per +10 pt of sparsity: 7.3% less power_mw (-11 power_mw, 95% CI -12 to -10; ...)"``."""
        lo, hi = self.change_per_step_ci
        if math.isfinite(self.relative_change_pct):
            word = "less" if self.relative_change_pct < 0 else "more"
            head = f"{abs(self.relative_change_pct):.1f}% {word} {self.metric}"
        else:
            head = f"{self.metric} changes"
        return (
            f"per +{self.step_pct:g} pt of {self.intensity}: {head} "
            f"({self.change_per_step:+.3g} {self.metric}, {self.confidence:.0%} CI {lo:+.3g} to {hi:+.3g}; "
            f"R² = {self.r2:.2f}, p = {self.p:.2g}, n = {self.n})"
        )


def regress_on_intensity(
    df: pd.DataFrame,
    metric: str,
    intensity: str = "sparsity",
    step_pct: float = 10.0,
    percent: bool = False,
    confidence: float = 0.95,
) -> RegressionResult:
    """OLS of ``metric`` on pruning ``intensity`` (statsmodels), read as change per ``step_pct`` points.

    ``intensity`` is a fraction 0..1 as in the results tables, or in percent with
    ``percent=True``; the reported change is per ``step_pct`` percentage points of it
    (default 10: "per 10% more pruning").
    """
    check_confidence(confidence)
    if step_pct <= 0:
        raise ValueError(f"step_pct must be positive, got {step_pct}")
    step = step_pct if percent else step_pct / 100.0
    data = complete_rows(df, [metric, intensity])
    if len(data) < 3:
        raise ValueError(f"regression of {metric!r} on {intensity!r} needs at least 3 rows, got {len(data)}")
    x = data[intensity].astype(float).to_numpy()
    y = data[metric].astype(float).to_numpy()
    if np.ptp(x) == 0:
        raise ValueError(f"{intensity!r} takes a single value ({x[0]}); no slope can be fitted")
    fit = sm.OLS(y, sm.add_constant(x)).fit()
    ci = fit.conf_int(alpha=1.0 - confidence)
    intercept, slope = (float(v) for v in fit.params)
    change = slope * step
    return RegressionResult(
        metric=metric,
        intensity=intensity,
        slope=slope,
        slope_ci=(float(ci[1, 0]), float(ci[1, 1])),
        intercept=intercept,
        intercept_ci=(float(ci[0, 0]), float(ci[0, 1])),
        r2=float(fit.rsquared),
        p=float(fit.pvalues[1]),
        n=len(data),
        confidence=confidence,
        step=step,
        step_pct=step_pct,
        change_per_step=change,
        change_per_step_ci=(float(ci[1, 0] * step), float(ci[1, 1] * step)),
        relative_change_pct=100.0 * change / intercept if intercept != 0 else math.nan,
    )
