"""Pairwise comparisons: Welch's t-test with Cohen's d, Holm's correction, every treatment against every control."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import product

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from edgeprune.stats.checks import check_confidence, complete_rows, finite_array

__all__ = ["WelchResult", "compare_methods", "holm", "holm_rows", "welch_ttest"]


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
    check_confidence(confidence)
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}")
    a_arr, b_arr = finite_array(a, "a"), finite_array(b, "b")
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
    p = finite_array(pvalues, "pvalues")
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
    data = complete_rows(df, [metric, method_col, *by])
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
