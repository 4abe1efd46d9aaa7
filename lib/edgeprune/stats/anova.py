"""One- and two-way ANOVA (type II) with partial eta squared and the Levene and Shapiro–Wilk checks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats.anova import anova_lm

from edgeprune.stats.checks import complete_rows

__all__ = ["AnovaResult", "anova_oneway", "anova_twoway"]


@dataclass(frozen=True)
class AnovaResult:
    """ANOVA table (type II sums of squares) with the assumption checks beside it.

    ``table`` has statsmodels' columns (sum_sq, df, F, PR(>F)) plus ``eta_sq_partial``
    = SS_effect / (SS_effect + SS_residual), indexed by the factor names and "Residual".
    ``levene_*``: Brown–Forsythe/Levene test (median-centred) of equal variances across the
    cells; ``shapiro_*``: Shapiro–Wilk test of normal residuals.
    """

    table: pd.DataFrame
    levene_stat: float
    levene_p: float
    shapiro_stat: float
    shapiro_p: float
    n: int


def _anova(df: pd.DataFrame, metric: str, factors: list[str], interaction: bool) -> AnovaResult:
    data = complete_rows(df, [metric, *factors])
    for factor in factors:
        levels = data[factor].nunique()
        if levels < 2:
            raise ValueError(
                f"factor {factor!r} needs at least 2 levels with {metric!r} values, got {levels}"
            )
    # Fixed column names keep the formula safe for any user column name.
    safe = [f"f{i}" for i in range(len(factors))]
    frame = pd.DataFrame({"y": data[metric].astype(float).to_numpy()})
    for name, factor in zip(safe, factors, strict=True):
        frame[name] = data[factor].astype(str).to_numpy()
    cells = frame.groupby(safe).size()
    if interaction and len(factors) > 1:
        full = int(np.prod([frame[s].nunique() for s in safe]))
        if len(cells) < full:
            raise ValueError(
                f"interaction of {factors} needs every combination of levels; {full - len(cells)} "
                "of them have no rows (use interaction=False)"
            )
        n_params = full
    else:
        n_params = 1 + sum(frame[s].nunique() - 1 for s in safe)
    if len(frame) <= n_params:
        raise ValueError(
            f"ANOVA of {metric!r} on {factors} needs more than {n_params} rows for a residual "
            f"degree of freedom, got {len(frame)}"
        )
    joiner = " * " if interaction else " + "
    model = smf.ols("y ~ " + joiner.join(f"C({s})" for s in safe), data=frame).fit()
    table = anova_lm(model, typ=2)
    rename = {f"C({s})": f for s, f in zip(safe, factors, strict=True)}
    if len(factors) > 1:
        rename[f"C({safe[0]}):C({safe[1]})"] = f"{factors[0]}:{factors[1]}"
    table = table.rename(index=rename)
    ss_resid = table.loc["Residual", "sum_sq"]
    table["eta_sq_partial"] = table["sum_sq"] / (table["sum_sq"] + ss_resid)
    table.loc["Residual", "eta_sq_partial"] = math.nan
    samples = [g["y"].to_numpy() for _, g in frame.groupby(safe)]
    levene = sps.levene(*samples, center="median")
    shapiro = sps.shapiro(np.asarray(model.resid))  # n >= 3 here: checked above
    return AnovaResult(
        table=table,
        levene_stat=float(levene.statistic),
        levene_p=float(levene.pvalue),
        shapiro_stat=float(shapiro.statistic),
        shapiro_p=float(shapiro.pvalue),
        n=len(frame),
    )


def anova_oneway(df: pd.DataFrame, metric: str, factor: str) -> AnovaResult:
    """One-way ANOVA of ``metric`` across the levels of ``factor`` (statsmodels ols + anova_lm)."""
    return _anova(df, metric, [factor], interaction=False)


def anova_twoway(
    df: pd.DataFrame, metric: str, factor_a: str, factor_b: str, interaction: bool = True
) -> AnovaResult:
    """Two-way ANOVA (type II) of ``metric`` on ``factor_a`` and ``factor_b`` (with interaction by default)."""
    if factor_a == factor_b:
        raise ValueError(f"factor_a and factor_b must differ, both are {factor_a!r}")
    return _anova(df, metric, [factor_a, factor_b], interaction=interaction)
