"""Statistics over seeds: confidence intervals, Welch t-tests with Holm correction, ANOVA, regression.

Every function takes a tidy DataFrame (one row per model, method, setting, seed ...) and the
column names to use. The maths comes from scipy and statsmodels; this module only selects
rows, validates input and names the results. Rows with a missing value (NaN) in a column a
function uses are dropped before the test, as statsmodels does with ``missing="drop"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import product

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

__all__ = [
    "AnovaResult",
    "RegressionResult",
    "WelchResult",
    "anova_oneway",
    "anova_twoway",
    "compare_methods",
    "format_mean_ci",
    "format_summary",
    "holm",
    "holm_rows",
    "mean_ci",
    "regress_on_intensity",
    "summarise",
    "welch_ttest",
]


# --------------------------------------------------------------------------- helpers


def _as_finite_array(values: Iterable[float], name: str) -> np.ndarray:
    """1-D float array of ``values``; a non-finite entry is a ValueError naming ``name``."""
    arr = np.asarray(list(values), dtype=float).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values: {arr.tolist()}")
    return arr


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in the DataFrame; columns are {list(df.columns)}")


def _complete_rows(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows of ``df`` with a value in every one of ``columns`` (KeyError if a column is missing)."""
    _require_columns(df, columns)
    return df.dropna(subset=list(columns))


# --------------------------------------------------------------------------- means and CIs


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean over seeds.

    The half-width is ``t_{(1+c)/2, n-1} * s / sqrt(n)`` with the sample standard deviation
    ``s`` (ddof=1). With a single value there is no spread to estimate, so the half-width is
    NaN (not 0, which would claim certainty). An empty input is a ValueError.
    """
    _check_confidence(confidence)
    arr = _as_finite_array(values, "values")
    if arr.size == 0:
        raise ValueError("mean_ci needs at least one value, got none")
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, math.nan
    half = sps.t.ppf(0.5 + confidence / 2.0, df=arr.size - 1) * sps.sem(arr)
    return mean, float(half)


def summarise(
    df: pd.DataFrame, by: list[str], metrics: list[str], confidence: float = 0.95
) -> pd.DataFrame:
    """Per group of ``by``: mean, CI half-width and n of every metric.

    Returns one row per group with the ``by`` columns and, per metric ``m``, the columns
    ``m_mean``, ``m_ci`` and ``m_n`` (NaN values of ``m`` are left out of its n).
    """
    if not by:
        raise ValueError("by must name at least one column")
    if not metrics:
        raise ValueError("metrics must name at least one column")
    _require_columns(df, [*by, *metrics])
    if df.empty:
        raise ValueError("summarise got an empty DataFrame")
    rows = []
    for key, group in df.groupby(by, sort=True, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        for metric in metrics:
            values = group[metric].dropna()
            mean, half = mean_ci(values, confidence) if len(values) else (math.nan, math.nan)
            row.update({f"{metric}_mean": mean, f"{metric}_ci": half, f"{metric}_n": len(values)})
        rows.append(row)
    return pd.DataFrame(rows)


def format_mean_ci(mean: float, half_width: float, digits: int = 1) -> str:
    """``"72.0 ± 0.4"``; ``"72.0 (no CI)"`` when the half-width is NaN (n=1); ``"n/a"`` for no mean."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if half_width is None or not math.isfinite(half_width):
        return f"{mean:.{digits}f} (no CI)"
    return f"{mean:.{digits}f} ± {half_width:.{digits}f}"


def by_budget(df: pd.DataFrame, metric: str, by: list[str], digits: int = 2) -> pd.DataFrame:
    """``metric`` (mean ± 95% CI over seeds) per group of ``by`` at every recovery budget, one column per
    budget (``"<metric> after <k> steps"``), for the groups recovered at more than one budget."""
    _require_columns(df, [*by, metric, "budget", "recovery_steps"])
    recovered = df.dropna(subset=["budget"])
    axis = recovered.groupby(by)["budget"].transform("nunique") > 1
    rows = recovered[axis]
    if rows.empty:
        return pd.DataFrame(columns=by)
    stats = summarise(rows, by=[*by, "recovery_steps"], metrics=[metric])
    stats["shown"] = [format_mean_ci(m, h, digits) for m, h in zip(stats[f"{metric}_mean"], stats[f"{metric}_ci"])]
    wide = stats.pivot(index=by, columns="recovery_steps", values="shown")
    wide.columns = [f"{metric} after {int(s)} steps" for s in wide.columns]
    return wide.reset_index()


def format_summary(
    summary: pd.DataFrame, metrics: list[str], digits: int | dict[str, int] = 1
) -> pd.DataFrame:
    """Turn :func:`summarise` output into display strings, one column per metric.

    ``digits`` is one number of decimals for all metrics or a dict per metric (default 1).
    """
    _require_columns(summary, [f"{m}_{s}" for m in metrics for s in ("mean", "ci")])
    keep = [c for c in summary.columns if not any(c.startswith(f"{m}_") for m in metrics)]
    out = summary[keep].copy()
    for metric in metrics:
        d = digits.get(metric, 1) if isinstance(digits, dict) else digits
        out[metric] = [
            format_mean_ci(m, h, d) for m, h in zip(summary[f"{metric}_mean"], summary[f"{metric}_ci"])
        ]
    return out


# --------------------------------------------------------------------------- t-tests


@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t-test of ``a`` against ``b`` (difference = mean(a) - mean(b))."""

    t: float
    df: float
    p: float
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    cohens_d: float
    n_a: int
    n_b: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's d with the pooled SD ``sqrt(((n_a-1)s_a² + (n_b-1)s_b²) / (n_a+n_b-2))``.

    Written by hand because scipy/statsmodels have no Cohen's d. The pooled SD is the classic
    choice (Cohen 1988) and is what most papers report; with very unequal variances it is a
    description of the effect size, not part of the Welch test itself. Zero spread on both
    sides gives ±inf for a non-zero difference and NaN for none.
    """
    na, nb = a.size, b.size
    pooled_var = ((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2)
    diff = a.mean() - b.mean()
    if pooled_var == 0.0:
        return math.nan if diff == 0.0 else math.copysign(math.inf, diff)
    return float(diff / math.sqrt(pooled_var))


def welch_ttest(
    a: Iterable[float], b: Iterable[float], confidence: float = 0.95, alternative: str = "two-sided"
) -> WelchResult:
    """Welch's t-test (scipy ``ttest_ind(equal_var=False)``) with Welch–Satterthwaite df.

    The CI is that of ``mean(a) - mean(b)`` at ``confidence`` (one-sided when ``alternative``
    is ``"less"`` or ``"greater"``). Both samples need at least two values. If both have zero
    spread, scipy gives t = ±inf, p = 0 for different means and NaN for equal ones.
    """
    _check_confidence(confidence)
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}")
    a_arr, b_arr = _as_finite_array(a, "a"), _as_finite_array(b, "b")
    for name, arr in (("a", a_arr), ("b", b_arr)):
        if arr.size < 2:
            raise ValueError(f"welch_ttest needs at least 2 values in {name}, got {arr.size}")
    res = sps.ttest_ind(a_arr, b_arr, equal_var=False, alternative=alternative)
    ci = res.confidence_interval(confidence_level=confidence)
    return WelchResult(
        t=float(res.statistic),
        df=float(res.df),
        p=float(res.pvalue),
        mean_a=float(a_arr.mean()),
        mean_b=float(b_arr.mean()),
        mean_diff=float(a_arr.mean() - b_arr.mean()),
        ci_low=float(ci.low),
        ci_high=float(ci.high),
        cohens_d=_cohens_d(a_arr, b_arr),
        n_a=int(a_arr.size),
        n_b=int(b_arr.size),
    )


def holm(pvalues: Sequence[float], alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Holm step-down correction (statsmodels ``multipletests``): ``(reject, adjusted p)``."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    p = _as_finite_array(pvalues, "pvalues")
    if p.size == 0:
        raise ValueError("holm needs at least one p-value")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    reject, p_adj, _, _ = multipletests(p, alpha=alpha, method="holm")
    return reject, p_adj


def holm_rows(table: pd.DataFrame, tested: pd.Series, alpha: float = 0.05) -> tuple[pd.Series, pd.Series]:
    """:func:`holm` over the rows of ``table`` marked ``tested`` (its ``p`` column): ``(adjusted p, reject)``
    per row, NaN and False on the rows left out of the family."""
    p_holm = pd.Series(np.nan, index=table.index)
    reject = pd.Series(False, index=table.index)
    if tested.any():
        reject[tested], p_holm[tested] = holm(table.loc[tested, "p"].to_numpy(), alpha=alpha)
    return p_holm, reject


def compare_methods(
    df: pd.DataFrame,
    metric: str,
    treatments: list[str],
    controls: list[str],
    method_col: str = "method",
    by: list[str] | None = None,
    alpha: float = 0.05,
    confidence: float = 0.95,
    alternative: str = "two-sided",
    untestable: str = "raise",
) -> pd.DataFrame:
    """Welch t-test of every treatment against every control, Holm-corrected.

    One row per (group of ``by``, treatment, control) with the :class:`WelchResult` fields
    (``mean_diff`` = treatment - control), ``p_holm`` and ``reject`` (``p_holm < alpha``).
    The Holm family is the whole table: all groups and pairs together, the conservative choice
    when a paper's claim rests on all of them. A method compared with itself is skipped.
    ``alternative="greater"`` tests "treatment better than control" one-sided (see :func:`welch_ttest`).

    ``untestable="list"`` reports what can be tested instead of raising: a pair with no
    values on a side (in a group, or a method with none at all) gets no row; a pair with
    fewer than two values on a side, or no spread on both, gets a row with ``tested`` False
    and ``why_not``, left out of the Holm family; the table may then be empty.
    """
    if untestable not in ("raise", "list"):
        raise ValueError(f"untestable must be 'raise' or 'list', got {untestable!r}")
    listing = untestable == "list"
    by = list(by or [])
    if not treatments or not controls:
        raise ValueError("treatments and controls must each name at least one method")
    data = _complete_rows(df, [metric, method_col, *by])
    known = set(data[method_col].unique())
    unknown = [m for m in [*treatments, *controls] if m not in known]
    if unknown and not listing:
        raise KeyError(
            f"method(s) {unknown} have no {metric!r} values in column {method_col!r}; known: {sorted(known)}"
        )
    groups = data.groupby(by, sort=True) if by else [((), data)]
    rows = []
    for key, group in groups:
        labels = dict(zip(by, key, strict=True))
        for treat, ctrl in product(treatments, controls):
            if treat == ctrl:
                continue
            a = group.loc[group[method_col] == treat, metric]
            b = group.loc[group[method_col] == ctrl, metric]
            pair = {**labels, "treatment": treat, "control": ctrl}
            if listing:
                why_not = _untestable(a, b)
                if why_not is None:
                    continue
                if why_not:
                    rows.append({**pair, "n_a": len(a), "n_b": len(b), "tested": False, "why_not": why_not})
                    continue
            try:
                res = welch_ttest(a, b, confidence=confidence, alternative=alternative)
            except ValueError as err:
                where = f" in group {labels}" if by else ""
                raise ValueError(f"{metric!r}, {treat!r} vs {ctrl!r}{where}: {err}") from err
            rows.append({**pair, **res.as_dict(), **({"tested": True, "why_not": ""} if listing else {})})
    if not rows:
        if listing:
            return pd.DataFrame()
        raise ValueError("no treatment-control pair left after skipping self-comparisons")
    table = pd.DataFrame(rows)
    tested = table["tested"].astype(bool) if listing else pd.Series(True, index=table.index)
    table["p_holm"], table["reject"] = holm_rows(table, tested, alpha)
    return table


def _untestable(a: pd.Series, b: pd.Series) -> str | None:
    """Why Welch's test cannot run on ``a`` vs ``b``: None for no data at all, "" when it can."""
    if a.empty or b.empty:
        return None
    if min(len(a), len(b)) < 2:
        return "fewer than 2 seeds on a side"
    if a.std() == 0 and b.std() == 0:
        return "no spread on either side"
    return ""


# --------------------------------------------------------------------------- ANOVA


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
    data = _complete_rows(df, [metric, *factors])
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


# --------------------------------------------------------------------------- regression


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
    _check_confidence(confidence)
    if step_pct <= 0:
        raise ValueError(f"step_pct must be positive, got {step_pct}")
    step = step_pct if percent else step_pct / 100.0
    data = _complete_rows(df, [metric, intensity])
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
