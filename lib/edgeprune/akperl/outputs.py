"""Reading back what the 30_akperl_dqn stage wrote, and the notebook's tables and figures over it.

The stage (:mod:`edgeprune.stages.akperl`) writes ``results/akperl/<model>/``: ``rows.csv`` (the
tidy results table, :mod:`edgeprune.results`) and its own CSVs (grid, runs, episodes, policies,
ablations, controls, stream, units) and ``summary.json``. :func:`load` reads them all,
:func:`read` one; the rest turns them into the paper's Table 1, the control gap, the stream
summaries and the figures.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from edgeprune import results
from edgeprune.akperl.params import LEVELS
from edgeprune.io import read_json
from edgeprune.paths import ResultPaths
from edgeprune.stats import format_mean_ci, format_summary, mean_ci, summarise

__all__ = [
    "NOTEBOOK", "OUTPUTS", "STAGE", "TABLE1_METRICS", "control_gap", "controller_accuracy", "load", "out_dir",
    "plot_convergence", "plot_policies", "plot_stream", "read", "save_figure", "stream_summary", "table1",
]  # fmt: skip

STAGE = "akperl"
"""The stage's DVC name and results folder."""
NOTEBOOK = "30_akperl_dqn"
"""The stage's notebook, which names its figures folder."""
OUTPUTS = ("grid", "runs", "episodes", "policies", "ablations", "controls", "stream", "units", "rows", "summary")
TABLE1_METRICS = ["top1", "power_mw_modelled", "latency_b1_ms", "sparsity_pct"]


def out_dir(paths: ResultPaths, model_name: str) -> Path:
    return paths.stage_dir(STAGE, model_name)


def _path(paths: ResultPaths, model_name: str, name: str) -> Path:
    if name not in OUTPUTS:
        raise ValueError(f"unknown {STAGE} output {name!r}; outputs are {list(OUTPUTS)}")
    if name == "rows":
        return paths.method_rows(STAGE, model_name)
    return out_dir(paths, model_name) / ("summary.json" if name == "summary" else f"{name}.csv")


def read(paths: ResultPaths, model_name: str, name: str) -> pd.DataFrame | dict:
    """One of the stage's :data:`OUTPUTS` for one model (``FileNotFoundError`` naming the stage if absent)."""
    path = _path(paths, model_name, name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run the {STAGE} stage for {model_name}")
    if name == "summary":
        return read_json(path)
    return results.read_table(path) if name == "rows" else pd.read_csv(path)


def load(paths: ResultPaths, model_name: str) -> dict[str, Any]:
    """The stage's :data:`OUTPUTS` for one model by name: ``rows`` (``FileNotFoundError`` naming the stage when
    it has not run) and every other output that exists (older runs lack some)."""
    found = {"rows": read(paths, model_name, "rows")}
    return found | {name: read(paths, model_name, name) for name in OUTPUTS if _path(paths, model_name, name).is_file()}


def table1(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 shape at the primary recovery budget: method x (top-1 %, power mW (modelled),
    inference ms, sparsity %), mean ± 95 % CI."""
    df = results.at_budget(df).copy()
    extra = df["extra"].map(lambda e: json.loads(e) if isinstance(e, str) and e else {})
    df["power_mw_modelled"] = extra.map(lambda e: e.get("power_mw_modelled", np.nan))
    df["sparsity_pct"] = 100 * df["sparsity_realised"].astype(float)
    order = {m: i for i, m in enumerate(["none", "l1_filter", "l1_regularised", "magnitude_structured", "random_search", "greedy_search", "akperl"])}
    summary = summarise(df, ["method"], TABLE1_METRICS).sort_values("method", key=lambda s: s.map(order))
    table = format_summary(summary, TABLE1_METRICS, digits={"top1": 2, "power_mw_modelled": 1, "latency_b1_ms": 2, "sparsity_pct": 1})
    table["n_seeds"] = summary["top1_n"].to_numpy()
    return table[["method", *TABLE1_METRICS, "n_seeds"]].rename(
        columns={"top1": "top-1 %", "power_mw_modelled": "power mW (modelled)", "latency_b1_ms": "inference ms (measured, b1)",
                 "sparsity_pct": "sparsity %"}  # fmt: skip
    )


def control_gap(rows: pd.DataFrame) -> pd.DataFrame:
    """AKPERL minus each equal-budget search control after recovery, per recovery budget: top-1 (pt) and
    channel sparsity (pt), mean ± 95 % CI over seeds of the per-seed differences. The two searches optimise
    the same reward, so a control may trade accuracy for sparsity differently: read both columns."""
    ranked = rows[(rows["method"] == "akperl") | rows["method"].str.endswith("_search")]
    ranked = ranked.assign(sparsity_pct=100 * ranked["sparsity_realised"].astype(float))
    metrics = {"top1": "top-1 (pt)", "sparsity_pct": "sparsity (pt)"}
    wide = ranked.pivot_table(index=["recovery_steps", "seed"], columns="method", values=list(metrics))
    gaps = []
    for control in sorted({c for _, c in wide.columns if c.endswith("_search")}):
        for steps, part in wide.groupby(level=0):
            gap: dict[str, Any] = {"control": control, "recovery steps": int(steps)}
            for metric, label in metrics.items():
                diff = (part[(metric, "akperl")] - part[(metric, control)]).dropna()
                gap[f"AKPERL − control {label}"] = format_mean_ci(*mean_ci(diff.to_numpy()), 2)
            gaps.append(gap | {"seeds": len(part)})
    return pd.DataFrame(gaps)


def stream_summary(stream: pd.DataFrame) -> pd.DataFrame:
    """Per method: stream means of top-1, latency, modelled power and sparsity, mean ± CI over seeds."""
    metrics = ["top1", "latency_ms", "power_mw_modelled", "sparsity_pct"]
    per_seed = stream.groupby(["method", "seed"], as_index=False)[metrics].mean()
    return format_summary(summarise(per_seed, ["method"], metrics), metrics, digits=2)


def controller_accuracy(stream: pd.DataFrame) -> pd.DataFrame:
    """How often the controller identified each condition correctly (share of batches)."""
    dyn = stream[stream.method == "akperl_dynamic"]
    return pd.crosstab(dyn.condition, dyn.identified, normalize="index").round(2)


def plot_convergence(episodes: pd.DataFrame) -> plt.Figure:
    """Episode reward R (rolling mean) and greedy Q of the probe states against environment steps."""
    fig, (ax_r, ax_q) = plt.subplots(1, 2, figsize=(10, 3.4))
    for (label, seed), group in episodes.groupby(["label", "seed"]):
        if label.startswith("grid"):
            continue
        window = max(3, len(group) // 10)
        ax_r.plot(group.step, group.R.rolling(window, min_periods=1).mean(), label=f"{label} s{seed}")
        ax_q.plot(group.step, group.q_max, label=f"{label} s{seed}")
    ax_r.set(xlabel="environment steps", ylabel="episode R (rolling mean)")
    ax_q.set(xlabel="environment steps", ylabel="mean max Q of probe states")
    ax_r.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_policies(policies: pd.DataFrame, units: pd.DataFrame, label: str = "akperl") -> plt.Figure:
    """Pruning level per unit (columns) and condition (rows) of every seed's greedy policy."""
    chosen = policies[policies.label == label]
    seeds = sorted(chosen.seed.unique())
    fig, axes = plt.subplots(len(seeds), 1, figsize=(10, 2.0 + 1.1 * len(seeds)), squeeze=False, sharex=True)
    for ax, seed in zip(axes[:, 0], seeds):
        rows = chosen[chosen.seed == seed]
        grid = np.array([[LEVELS[int(v)] * 100 for v in str(lv).strip("()").split(",") if v.strip()] for lv in rows.levels])
        im = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_yticks(range(len(rows)), rows.condition, fontsize=7)
        ax.set_ylabel(f"seed {seed}", fontsize=8)
    axes[-1, 0].set_xticks(range(len(units)), units.name, rotation=90, fontsize=6)
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="pruned % (100 = block removed)")
    return fig


def plot_stream(stream: pd.DataFrame, seed: int | None = None) -> plt.Figure:
    """Accuracy, measured latency, modelled power and sparsity per batch of one seed's stream, every arm on one
    time axis (the bank's networks through ``best_static`` and ``oracle``), condition segments shaded, and the
    batches where the controller switched network marked (dotted)."""
    seed = stream.seed.min() if seed is None else seed
    one = stream[(stream.seed == seed) & ~stream.method.str.startswith("bank:")]  # the bank is in best_static / oracle
    metrics = [("top1", "top-1 %"), ("latency_ms", "latency ms (measured)"), ("power_mw_modelled", "power mW (modelled)"),
               ("sparsity_pct", "sparsity %")]  # fmt: skip
    fig, axes = plt.subplots(len(metrics), 1, figsize=(10, 8), sharex=True)
    segments = one[one.method == one.method.iloc[0]].groupby("segment").agg(
        start=("batch", "min"), end=("batch", "max"), condition=("condition", "first")
    )
    dynamic = one[one.method == "akperl_dynamic"].sort_values("batch")
    switches = dynamic.batch[dynamic.network != dynamic.network.shift()].iloc[1:]
    for ax, (col, label) in zip(axes, metrics):
        for i, (start, end) in enumerate(zip(segments.start, segments.end)):
            ax.axvspan(start - 0.5, end + 0.5, color="0.92" if i % 2 else "white", zorder=0)
        for method, group in one.groupby("method"):
            ax.plot(group.batch, group[col], marker=".", label=method)
        for batch in switches:
            ax.axvline(batch - 0.5, color="black", ls=":", lw=0.8)
        ax.set_ylabel(label, fontsize=8)
    for start, end, condition in zip(segments.start, segments.end, segments.condition):
        axes[0].text((start + end) / 2, 1.0, condition, ha="center", va="bottom", fontsize=7,
                     transform=axes[0].get_xaxis_transform())  # fmt: skip
    axes[-1].set_xlabel("stream batch (dotted: the controller switched network before that batch)")
    axes[0].legend(fontsize=7, ncol=4)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, paths: ResultPaths, name: str) -> Path:
    folder = paths.figures(NOTEBOOK)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
