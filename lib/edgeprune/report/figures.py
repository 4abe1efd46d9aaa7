"""The report's figures: the Pareto view over every method (accuracy against stored size, measured latency and
modelled energy) and the static sweep against pruning intensity."""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib import ticker
import numpy as np
import pandas as pd

from edgeprune import results
from edgeprune.report.collect import Results

__all__ = ["intensity", "pareto", "pareto_front", "pareto_points"]

_KEY = ["stage", "model", "method", "setting", "precision"]


def pareto_points(res: Results, device: str = "rpi4") -> pd.DataFrame:
    """One point per (stage, model, method, setting, precision), means over seeds.

    ``precision`` is ``float`` for the row's own model (fp32, or PPO's simulated k-bit) and
    ``int8`` for its real int8 copy. ``energy_mj`` is the device-power stage's modelled (or
    metered) energy per image on ``device`` where that stage costed the kept model. Networks
    recovered at the primary budget only (the budget axis is in the claims check).
    """
    rows = results.at_budget(res.rows)
    if rows.empty:
        return pd.DataFrame(columns=[*_KEY, "label", "top1", "size_mb", "latency_ms", "energy_mj", "seeds"])
    common = rows[["stage", "model", "method", "setting", "seed"]]
    own = common.assign(precision="float", top1=rows["top1"], size_mb=rows["size_bytes"] / 1e6, latency_ms=rows["latency_b1_ms"])
    int8 = common.assign(precision="int8", top1=rows["int8_top1"], size_mb=rows["int8_size_bytes"] / 1e6,
                         latency_ms=rows["int8_latency_b1_ms"])  # fmt: skip
    points = pd.concat([own, int8], ignore_index=True).dropna(subset=["top1", "size_mb"])
    points = points.groupby(_KEY, as_index=False).agg(
        top1=("top1", "mean"), size_mb=("size_mb", "mean"), latency_ms=("latency_ms", "mean"), seeds=("seed", "nunique")
    )
    own_stage = (points["stage"] == "baselines") | (points["stage"] == points["method"]) | (points["method"] == "none")
    label = np.where(own_stage, points["method"], points["method"] + " (" + points["stage"] + ")")
    points["label"] = pd.Series(label, index=points.index) + np.where(points["precision"] == "int8", " int8", "")
    points["energy_mj"] = np.nan
    if res.power is not None:
        power = res.power[res.power["device"] == device]
        power = power.assign(precision=power["precision"].map({"fp32": "float", "int8": "int8"}))
        energy = power.groupby(_KEY)["energy_mj"].mean()
        keys = pd.MultiIndex.from_frame(points[_KEY])
        points["energy_mj"] = energy.reindex(keys).to_numpy()
    return points


def pareto_front(x: pd.Series, y: pd.Series) -> np.ndarray:
    """Boolean mask of the points no other point beats (smaller or equal x and larger or equal y, one strictly)."""
    xs, ys = x.to_numpy(float), y.to_numpy(float)
    keep = np.ones(len(xs), dtype=bool)
    for i in range(len(xs)):
        dominated = (xs <= xs[i]) & (ys >= ys[i]) & ((xs < xs[i]) | (ys > ys[i]))
        keep[i] = not dominated.any()
    return keep


def pareto(points: pd.DataFrame) -> plt.Figure:
    """Accuracy against stored MB, measured latency and modelled energy; the joint Pareto front drawn per panel."""
    panels = [("size_mb", "stored size (MB, real bit-widths)", True), ("latency_ms", "latency, batch 1 (ms, measured)", False),
              ("energy_mj", "energy per image (mJ, modelled)", False)]  # fmt: skip
    panels = [p for p in panels if points[p[0]].notna().any()]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 4), squeeze=False)
    labels = sorted(points["label"].unique())
    colours = {name: plt.cm.tab20(i % 20) for i, name in enumerate(labels)}
    for ax, (column, title, log) in zip(axes[0], panels, strict=False):
        part = points.dropna(subset=[column, "top1"])
        for name, group in part.groupby("label"):
            ax.scatter(group[column], group["top1"], s=28, color=colours[name], label=name,
                       marker="s" if name.endswith("int8") else "o")  # fmt: skip
        front = part[pareto_front(part[column], part["top1"])].sort_values(column)
        ax.step(front[column], front["top1"], where="post", color="black", lw=0.8, alpha=0.6)
        ax.set_xlabel(title)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("top-1 % (test subset)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    n = points["seeds"].max() if len(points) else 0
    fig.suptitle(f"Every method, means over up to {n} seeds (squares: real int8 copies; black: Pareto front)", fontsize=10)
    fig.tight_layout()
    return fig


def intensity(baselines: pd.DataFrame) -> plt.Figure:
    """Static sweep: top-1 and measured batch-1 latency against sparsity, one line per method.

    Top-1: mean over seeds with ±1 SD bars. Latency is measured once per architecture (seeds
    share the pruned structure), so it has no bars. The dense row is sparsity 0.
    """
    base = baselines.assign(sparsity=baselines["sparsity"].fillna(0.0))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for method, part in base.groupby("method"):
        for ax, metric, label in ((axes[0], "top1", "top-1 %"), (axes[1], "latency_b1_ms", "latency ms (measured, b1)")):
            means = part.groupby("sparsity")[metric].agg(["mean", "std"]).reset_index()
            ax.errorbar(100 * means["sparsity"], means["mean"], yerr=means["std"], marker="o", capsize=3, label=method)
            ax.set_xlabel("sparsity (% of prunable channels or weights)")
            ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    n = base.groupby(["method", "sparsity"])["seed"].nunique().max()
    fig.suptitle(f"Static sweep: top-1 means over {n} seeds, error bars ±1 SD over seeds; latency measured once per "
                 "architecture (median of repeats; seeds share the pruned structure, so no bars)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig
