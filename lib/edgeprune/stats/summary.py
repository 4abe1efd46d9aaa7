"""Descriptive statistics over seeds: mean and Student-t CI, per-group summaries, and their display strings."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pandas as pd
from scipy import stats as sps

from edgeprune.stats.checks import check_confidence, finite_array, require_columns

__all__ = ["by_budget", "format_mean_ci", "format_summary", "mean_ci", "summarise"]


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and half-width of the Student-t confidence interval of the mean over seeds.

    The half-width is ``t_{(1+c)/2, n-1} * s / sqrt(n)`` with the sample standard deviation
    ``s`` (ddof=1). With a single value there is no spread to estimate, so the half-width is
    NaN (not 0, which would claim certainty). An empty input is a ValueError.
    """
    check_confidence(confidence)
    arr = finite_array(values, "values")
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
    require_columns(df, [*by, *metrics])
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
    require_columns(df, [*by, metric, "budget", "recovery_steps"])
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
    require_columns(summary, [f"{m}_{s}" for m in metrics for s in ("mean", "ci")])
    keep = [c for c in summary.columns if not any(c.startswith(f"{m}_") for m in metrics)]
    out = summary[keep].copy()
    for metric in metrics:
        d = digits.get(metric, 1) if isinstance(digits, dict) else digits
        out[metric] = [
            format_mean_ci(m, h, d) for m, h in zip(summary[f"{metric}_mean"], summary[f"{metric}_ci"])
        ]
    return out
