"""The statistics the papers say they ran, on our results (stage 91_stats).

* :func:`dynamic_vs_static`: Welch t-tests of every dynamic method against every static
  baseline it was compared with in its own stage (same data, same fine-tuning budget),
  on accuracy, power and latency (whichever the stage measured), with Cohen's d, the CI of
  the difference and Holm's correction over the whole table (one family: every test the
  papers' "significantly better" could rest on).
* :func:`regressions`: OLS of accuracy, power and latency on pruning intensity, read as the
  papers' "per 10% more pruning".
* :func:`anovas`: one-way ANOVA across methods (per method stage) and two-way ANOVAs of the
  static sweep (method x sparsity, method x shift condition), each with its assumption checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from edgeprune.report.collect import Results, extra
from edgeprune.results import SHIFT_CONDITIONS
from edgeprune.stats import (
    AnovaResult,
    RegressionResult,
    anova_oneway,
    anova_twoway,
    compare_methods,
    holm_rows,
    regress_on_intensity,
)

__all__ = [
    "COMPARISONS",
    "Comparison",
    "anova_frame",
    "anovas",
    "dynamic_vs_static",
    "power_by_sparsity",
    "regression_frame",
    "regressions",
]


@dataclass(frozen=True)
class Comparison:
    """Which rows of a stage are compared: ``treatment`` against each of ``controls`` on ``metrics``.

    ``metrics`` maps a column (or an ``extra`` field) to "higher" or "lower": the better
    direction, used only to label the result. ``by`` splits the rows first (per model,
    per target compression ...).
    """

    paper: str
    stage: str
    treatment: str
    controls: tuple[str, ...]
    metrics: dict[str, str]
    by: tuple[str, ...] = ("model",)
    setting: str | None = None


COMPARISONS: tuple[Comparison, ...] = (
    Comparison("AKPERL", "akperl", "akperl", ("l1_filter", "magnitude_structured", "random_search", "greedy_search"),
               {"top1": "higher", "power_mw_modelled": "lower", "latency_b1_ms": "lower"}),
    Comparison("QSA", "qsa", "qsa", ("l1_filter", "magnitude_structured"),
               {"int8_top1": "higher", "compression_int8": "higher", "int8_latency_b1_ms": "lower"}, ("model", "target")),
    Comparison("PPO", "ppo", "ppo", ("static_pq", "random_search", "greedy_search"),
               {"top1": "higher", "density_pct_per_mb": "higher", "size_bytes": "lower", "int8_latency_b1_ms": "lower"},
               setting="policy-ft"),
)  # fmt: skip


def _with_extras(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``rows`` with every ``extra`` field among ``columns`` as a float column of its own."""
    rows = rows.copy()
    for column in columns:
        if column not in rows.columns:
            rows[column] = extra(rows, column).astype(float)
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    return rows


def dynamic_vs_static(res: Results, comparisons: tuple[Comparison, ...] = COMPARISONS, alpha: float = 0.05) -> pd.DataFrame:
    """One row per (paper, group, metric, treatment, control) with Welch's test and Holm over all rows.

    Each comparison runs through :func:`edgeprune.stats.compare_methods` (``untestable="list"``):
    a pair with fewer than two seeds on a side, or no spread on both, is listed with
    ``tested = False`` and the reason, never silently dropped. Holm's family is then the
    whole table, across papers and metrics.
    """
    frames = []
    for comp in comparisons:
        rows = res.stage(comp.stage)
        if rows.empty:
            continue
        extras = [c for c in ("target",) if c in comp.by]
        rows = _with_extras(rows, [*comp.metrics, *extras])
        rows = rows[(rows["method"] != comp.treatment) | (comp.setting is None) | (rows["setting"] == comp.setting)]
        long = rows.melt(id_vars=["method", *comp.by], value_vars=list(comp.metrics), var_name="metric")
        table = compare_methods(long, "value", [comp.treatment], list(comp.controls), by=[*comp.by, "metric"],
                                alpha=alpha, untestable="list")  # fmt: skip
        if len(table):
            frames.append(table.assign(paper=comp.paper, better=table["metric"].map(comp.metrics)))
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    table["p_holm"], table["significant"] = holm_rows(table, table["tested"].astype(bool), alpha)
    sign = np.where(table["better"] == "higher", 1.0, -1.0)
    diff = table.get("mean_diff", pd.Series(np.nan, index=table.index))
    table["treatment_better"] = pd.Series(sign * diff > 0, index=table.index, dtype=object).where(diff.notna(), None)
    first = ["paper", *[c for c in ("model", "target") if c in table], "metric", "better"]
    return table.drop(columns="reject")[[*first, *[c for c in table.columns if c not in (*first, "reject")]]]


def power_by_sparsity(res: Results, device: str = "rpi4", precision: str = "fp32") -> pd.DataFrame:
    """Modelled power and latency of the static baselines' kept models on ``device``, with their sparsity."""
    if res.power is None:
        raise LookupError("no device-power table: run the device_power stage")
    power = res.power[(res.power["device"] == device) & (res.power["precision"] == precision) & (res.power["stage"] == "baselines")]
    sparsity = power["setting"].str.extract(r"^s(\d+(?:\.\d+)?)$")[0].astype(float)
    out = power.assign(sparsity=sparsity.fillna(0.0))
    return out[["model", "method", "setting", "sparsity", "latency_ms", "power_mw", "energy_mj", "source"]]


def regressions(res: Results, step_pct: float = 10.0, device: str = "rpi4") -> list[tuple[str, RegressionResult]]:
    """Accuracy, measured latency (20_baselines) and modelled power (60_device_power) on sparsity.

    One fit per (static method, quantity); the dense model (sparsity 0) is included in every
    method's fit as its starting point.
    """
    fits = []
    rows = res.stage("baselines")
    if not rows.empty:
        rows = rows.assign(sparsity=rows["sparsity"].fillna(0.0).astype(float))
        dense = rows[rows["method"] == "none"]
        for method in [m for m in rows["method"].unique() if m != "none"]:
            part = pd.concat([dense, rows[rows["method"] == method]])
            for metric in ("top1", "latency_b1_ms"):
                if part[metric].notna().sum() >= 3:
                    fits.append((method, regress_on_intensity(part, metric, "sparsity", step_pct)))
    if res.power is not None:
        power = power_by_sparsity(res, device)
        dense = power[power["method"] == "none"]
        for method in [m for m in power["method"].unique() if m != "none"]:
            part = pd.concat([dense, power[power["method"] == method]])
            if len(part) >= 3 and part["sparsity"].nunique() > 1:
                fits.append((method, regress_on_intensity(part, "power_mw", "sparsity", step_pct)))
    return fits


def regression_frame(fits: list[tuple[str, RegressionResult]]) -> pd.DataFrame:
    """:func:`regressions` as a table, one row per fit, with the "per 10% more pruning" sentence."""
    return pd.DataFrame(
        [
            {"method": method, "quantity": f.metric, "n": f.n, "per_step_pct": f.step_pct, "change_per_step": f.change_per_step,
             "ci_low": f.change_per_step_ci[0], "ci_high": f.change_per_step_ci[1], "relative_change_pct": f.relative_change_pct,
             "r2": f.r2, "p": f.p, "reading": f.sentence}  # fmt: skip
            for method, f in fits
        ]
    )


def _try(name: str, make, out: list[tuple[str, AnovaResult]], skipped: dict[str, str]) -> None:
    try:
        out.append((name, make()))
    except (ValueError, KeyError) as err:
        skipped[name] = str(err)


def anovas(res: Results) -> tuple[list[tuple[str, AnovaResult]], dict[str, str]]:
    """The ANOVAs the results allow, and why each other one could not run.

    * one-way, top-1 across methods, in each method stage (its own comparison set);
    * two-way, top-1 of the static sweep: method x sparsity, with interaction;
    * two-way, top-1 of the static sweep under shift: method x condition (clean and every
      shift condition evaluated), with interaction.
    """
    out: list[tuple[str, AnovaResult]] = []
    skipped: dict[str, str] = {}
    for stage, metric in (("akperl", "top1"), ("qsa", "int8_top1"), ("ppo", "top1")):
        for model in res.models(stage):
            rows = res.stage(stage, model)
            if stage == "qsa":  # one comparison set per target compression: the largest
                target = extra(rows, "target").astype(float)
                rows = rows[target == target.max()]
            if stage == "ppo":
                rows = rows[rows["setting"] != "policy-lth"]
            _try(f"{stage}/{model}: {metric} ~ method", lambda rows=rows, metric=metric: anova_oneway(rows, metric, "method"), out, skipped)
    base = res.stage("baselines")
    for model in res.models("baselines"):
        rows = base[(base["model"] == model) & (base["method"] != "none")]
        full = rows.groupby(["method", "sparsity"]).ngroups == rows["method"].nunique() * rows["sparsity"].nunique()
        name = f"baselines/{model}: top1 ~ method x sparsity" + ("" if full else " (additive: some cells unreachable)")
        _try(name, lambda rows=rows, full=full: anova_twoway(rows, "top1", "method", "sparsity", interaction=full), out, skipped)
        shifted = [c for c in ("top1", *(f"top1_{c}" for c in SHIFT_CONDITIONS)) if rows[c].notna().any()]
        if len(shifted) > 1:
            long = rows.melt(id_vars=["method", "sparsity", "seed"], value_vars=shifted, var_name="condition", value_name="acc")
            long = long[long["sparsity"] == long["sparsity"].median()]
            name = f"baselines/{model}: top1 ~ method x condition (sparsity {long['sparsity'].iloc[0] if len(long) else '?'})"
            _try(name, lambda long=long: anova_twoway(long, "acc", "method", "condition"), out, skipped)
        else:
            skipped[f"baselines/{model}: top1 ~ method x condition"] = "no shift conditions were evaluated (baselines rows)"
    return out, skipped


def anova_frame(results: list[tuple[str, AnovaResult]]) -> pd.DataFrame:
    """Every ANOVA's table stacked, with its assumption checks on each row."""
    frames = []
    for name, r in results:
        table = r.table.reset_index(names="term")
        frames.append(table.assign(analysis=name, n=r.n, levene_p=r.levene_p, shapiro_p=r.shapiro_p))
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    return frame[["analysis", "term", *[c for c in frame.columns if c not in ("analysis", "term")]]]
