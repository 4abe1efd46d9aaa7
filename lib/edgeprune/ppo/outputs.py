"""Reading back what the 50_ppo_prune_quant stage wrote, and the notebook's tables and figures over it.

The stage (:mod:`edgeprune.stages.ppo`) writes ``results/ppo/<model>/``: ``rows.csv`` (the tidy
results table), ``comparison.csv`` (:func:`compare`: per seed and recovery budget, PPO against the
static baseline and the search controls), ``static_grid.csv``, ``summary.json``
(:func:`summarise`) and per seed ``s<seed>/policy.json`` and ``s<seed>/episodes.csv``.
:func:`load` reads them back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from edgeprune import results, stats
from edgeprune.io import read_json
from edgeprune.paths import ResultPaths
from edgeprune.ppo.params import BYTES_PER_MB

__all__ = [
    "STAGE", "TARGETS", "budget_axis", "compare", "load", "lth_table", "out_dir", "plot_learning_curves", "plot_policy",
    "plot_tradeoff", "summarise",
]  # fmt: skip

STAGE = "ppo"
CONTROLS = ("random", "greedy")
"""The search controls (``ppo.controls``); their rows are ``<name>_search`` / ``<name>-ft``."""
"""The stage's DVC name and results folder."""
# Targets of the issue (paper profile): >= 10x smaller than the fp32 dense model at
# <= 1.5 points top-1 loss, with performance density >= 1.2x the static baseline's.
TARGETS = {"size_reduction": (">=", 10.0), "top1_loss": ("<=", 1.5), "density_ratio": (">=", 1.2)}


def out_dir(paths: ResultPaths, model_name: str) -> Path:
    return paths.stage_dir(STAGE, model_name)


def compare(records: list[dict[str, Any]], penalty: float = 1.0) -> pd.DataFrame:
    """Per seed and recovery budget: PPO (fine-tuned; rewound at the primary budget) against the
    static baseline and the search controls (:data:`CONTROLS`: random, greedy) recovered at the same
    budget, and the dense model; a control that did not run gives NaN columns.

    ``*_reward`` is PPO's own objective on the test split after recovery: density relative to the
    dense model's, minus ``penalty`` per point below the accuracy floor (the dense test top-1 less
    the drop the search allowed). Density alone would reward a control whose pick broke the floor
    (a random search that finds no feasible configuration keeps its most accurate one, however bad)."""
    table = []
    for record in records:
        rows = {(r["method"], r["setting"], int(r["budget"])): r for r in record["rows"]}
        lth = rows["ppo", "policy-lth", 0]
        for budget in sorted({key[2] for key in rows}):
            ft = rows["ppo", "policy-ft", budget]
            static = next(r for (method, _, b), r in rows.items() if method == "static_pq" and b == budget)
            picks = {name: rows.get((f"{name}_search", f"{name}-ft", budget)) for name in CONTROLS}
            primary = budget == 0
            table.append(
                {
                    "seed": record["seed"],
                    "dense_seed": record["dense_seed"],
                    "budget": budget,
                    "recovery_steps": ft["recovery_steps"],
                    "dense_top1": record["dense_test"]["top1"],
                    "dense_size_mb": record["dense_test"]["size_bytes"] / BYTES_PER_MB,
                    "allowed_drop": record["dense_search"]["top1"] - record["accuracy_floor"],
                    "ppo_top1": ft["top1"],
                    "ppo_size_mb": ft["size_bytes"] / BYTES_PER_MB,
                    "ppo_bits": ft["bits"],
                    "quantized": ft["extra"].get("quantized", "weights+activations"),  # rows before the choice existed
                    "weight_clip": ft["extra"].get("weight_clip", "max"),
                    "ppo_sparsity": ft["sparsity_realised"],
                    "ppo_density": ft["extra"]["density_pct_per_mb"],
                    "static_prune_rate": static["extra"]["prune_rate"],
                    "static_bits": static["extra"].get("static_bits", 8),  # 8: rows from before the uniform-bits grid
                    "static_top1": static["top1"],
                    "static_size_mb": static["size_bytes"] / BYTES_PER_MB,
                    "static_density": static["extra"]["density_pct_per_mb"],
                    "lth_top1": lth["top1"] if primary else float("nan"),
                    "lth_density": lth["extra"]["density_pct_per_mb"] if primary else float("nan"),
                    "ft_top1_float": ft["extra"]["top1_float"],
                    "lth_top1_float": lth["extra"]["top1_float"] if primary else float("nan"),
                    **{f"{name}_top1": pick["top1"] if pick else float("nan") for name, pick in picks.items()},
                    **{f"{name}_density": pick["extra"]["density_pct_per_mb"] if pick else float("nan")
                       for name, pick in picks.items()},
                }  # fmt: skip
            )
    df = pd.DataFrame(table)
    df["density_ratio"] = df.ppo_density / df.static_density
    df["density_gain_pct"] = 100 * (df.density_ratio - 1)
    df["top1_gap_vs_static"] = df.ppo_top1 - df.static_top1
    df["size_reduction"] = df.dense_size_mb / df.ppo_size_mb
    df["top1_loss"] = df.dense_top1 - df.ppo_top1
    df["lth_minus_ft_top1"] = df.lth_top1 - df.ppo_top1
    floor = df.dense_top1 - df.allowed_drop
    dense_density = df.dense_top1 / df.dense_size_mb
    for arm in ("ppo", *CONTROLS):
        df[f"{arm}_reward"] = df[f"{arm}_density"] / dense_density - penalty * (floor - df[f"{arm}_top1"]).clip(lower=0)
    for name in CONTROLS:
        df[f"density_gain_vs_{name}_pct"] = 100 * (df.ppo_density / df[f"{name}_density"] - 1)
        df[f"reward_gain_vs_{name}"] = df.ppo_reward - df[f"{name}_reward"]
    return df


def summarise(
    comparison: pd.DataFrame, model_name: str, seconds: float, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """Means with 95% Student-t CIs over seeds at the primary budget, whether each target's mean
    is met, and the headline comparisons at every budget (``budget_axis``, keyed by SGD steps)."""
    columns = (
        "density_ratio", "density_gain_pct", "ppo_density", "static_density", "ppo_top1", "static_top1",
        "top1_gap_vs_static", "size_reduction", "top1_loss", "ppo_bits", "lth_top1", "lth_minus_ft_top1",
    )  # fmt: skip

    def metrics_of(part: pd.DataFrame, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
        out = {}
        for column in names:
            mean, half = stats.mean_ci(part[column].dropna())
            out[column] = {"mean": mean, "ci95": half, "n": int(part[column].notna().sum())}
        return out

    primary = comparison[comparison.budget == 0]
    metrics = metrics_of(primary, columns)
    targets = {}
    for name, (op, value) in TARGETS.items():
        mean = metrics[name]["mean"]
        met = mean >= value if op == ">=" else mean <= value
        targets[name] = {"target": f"{op} {value}", "mean": mean, "met": bool(met)}
    axis = {
        str(int(steps)): metrics_of(part, ("density_gain_pct", "ppo_top1", "static_top1", "top1_loss"))
        for steps, part in comparison.groupby("recovery_steps")
    }
    return {
        "model": model_name,
        "seeds": primary.seed.tolist(),
        "quantized": ", ".join(sorted(set(primary.quantized))),
        "weight_clip": ", ".join(sorted(set(primary.weight_clip))),
        "metrics": metrics,
        "targets": targets,
        "budget_axis": axis,
        "stage_seconds": round(seconds, 1),
        "seed_timings": {str(r["seed"]): r["timings"] for r in records},
    }


def load(paths: ResultPaths, model_name: str) -> dict[str, Any]:
    """The stage's outputs for one model: ``rows`` and ``summary`` (``FileNotFoundError`` naming the stage when
    it has not run), ``comparison`` and ``static_grid`` where they exist, and per seed ``policies`` and ``episodes``."""
    out = out_dir(paths, model_name)
    for path in (paths.method_rows(STAGE, model_name), out / "summary.json"):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: run the {STAGE} stage for {model_name}")
    summary = read_json(out / "summary.json")
    seeds = summary["seeds"]
    found = {
        "rows": results.read_table(paths.method_rows(STAGE, model_name)),
        "summary": summary,
        "policies": {s: read_json(out / f"s{s}" / "policy.json") for s in seeds},
        "episodes": {s: pd.read_csv(out / f"s{s}" / "episodes.csv") for s in seeds},
    }
    found["sensitivity"] = {
        int(path.stem.split("-d")[1]): read_json(path) for path in sorted(out.glob("sensitivity-d*.json"))
    }  # per dense seed: {"table", "predictor"} (ppo.signal: sensitivity)
    return found | {name: pd.read_csv(out / f"{name}.csv") for name in ("comparison", "static_grid")
                    if (out / f"{name}.csv").is_file()}  # fmt: skip


def predictor_table(outputs: dict[str, Any]) -> pd.DataFrame:
    """Per dense seed: how the sensitivity predictor was fitted and how well it ranks held-out configurations."""
    rows = []
    for dense_seed, found in outputs.get("sensitivity", {}).items():
        fit, table = found["predictor"], found["table"]
        rows.append({
            "dense_seed": dense_seed, "table_entries": sum(len(r) - 1 for r in table["bits_scores"] + table["rate_scores"]),
            "entry_steps": table["settings"]["steps"], "table_seconds": table["seconds"], "fitted_on": fit["fitted_on"],
            "slope": fit["slope"], "intercept": fit["intercept"], "spearman_holdout": fit["spearman_holdout"],
            "mae_holdout": fit["mae_holdout"], "validate_seconds": fit["seconds"],
        })  # fmt: skip
    return pd.DataFrame(rows)


def plot_sensitivity(table: dict[str, Any], model_name: str) -> plt.Figure:
    """Heat map of the sensitivity table: top-1 points lost by each single change after the short recovery."""
    base = table["base"]["top1"]
    bits = [[base - s["top1"] for s in row[1:]] for row in table["bits_scores"]]
    rates = [[base - s["top1"] for s in row[1:]] for row in table["rate_scores"]]
    fig, (ax_bits, ax_rates) = plt.subplots(
        1, 2, figsize=(9.5, max(4.0, 0.13 * len(bits))), gridspec_kw={"width_ratios": [len(table["bits"]) - 1 or 1,
                                                                                         len(table["rates"]) - 1 or 1]}
    )  # fmt: skip
    for ax, values, labels, names, title in (
        (ax_bits, bits, [f"{b}b" for b in table["bits"][1:]], table["layers"], "layer to a lower bit-width"),
        (ax_rates, rates, [f"{r:g}" for r in table["rates"][1:]], table["groups"], "channel group to a prune rate"),
    ):
        image = ax.imshow(values, aspect="auto", cmap="magma_r", vmin=min(0.0, min(map(min, values), default=0.0)))
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=4.5)
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, shrink=0.6, label="top-1 points lost")
    fig.suptitle(f"{model_name}: sensitivity after {table['settings']['steps']} recovery steps "
                 f"(base {base:.1f}%, search images)", fontsize=10)  # fmt: skip
    fig.tight_layout()
    return fig


def budget_axis(comparison: pd.DataFrame) -> pd.DataFrame:
    """PPO against the static baseline (and the equal-budget search controls that ran) at every recovery
    budget: density gains, reward gains over the controls, top-1s and PPO's loss against dense, mean ± 95%
    CI over seeds, one column per budget."""
    gains = [f"{kind}_vs_{name}{unit}" for name in CONTROLS for kind, unit in (("reward_gain", ""), ("density_gain", "_pct"))]
    metrics = ["density_gain_pct", *gains, "ppo_top1", "static_top1", *(f"{name}_top1" for name in CONTROLS), "top1_loss"]
    metrics = [m for m in metrics if m in comparison and comparison[m].notna().any()]
    long = comparison.melt(id_vars=["seed", "budget", "recovery_steps"], value_vars=metrics, var_name="quantity")
    table = stats.by_budget(long, "value", ["quantity"])
    return table.sort_values("quantity", key=lambda q: q.map(metrics.index), ignore_index=True)


def lth_table(comparison: pd.DataFrame) -> pd.DataFrame:
    """Lottery-ticket rewinding against fine-tuning, same structure, bit-widths and primary budget."""
    comparison = comparison[comparison.budget == 0]
    summary = stats.summarise(
        comparison.assign(model="all"), by=["model"],
        metrics=["ppo_top1", "lth_top1", "ft_top1_float", "lth_top1_float", "ppo_density", "lth_density"],
    )  # fmt: skip
    table = pd.DataFrame(
        {
            "retraining": ["fine-tune from final weights", "rewind to early weights (LTH)"],
            "top1 float (%)": [summary.ft_top1_float_mean[0], summary.lth_top1_float_mean[0]],
            "top1 quantized (%)": [summary.ppo_top1_mean[0], summary.lth_top1_mean[0]],
            "± 95% CI": [summary.ppo_top1_ci[0], summary.lth_top1_ci[0]],
            "density (%/MB)": [summary.ppo_density_mean[0], summary.lth_density_mean[0]],
        }
    )
    return table.round(2)


def plot_policy(policy: dict[str, Any], model_name: str) -> plt.Figure:
    """Per-layer prune rate and bit-width of a chosen policy."""
    table = pd.DataFrame(policy["policy"])
    fig, (ax_rate, ax_bits) = plt.subplots(2, 1, figsize=(max(6.0, 0.16 * len(table)), 4.6), sharex=True)
    x = range(len(table))
    ax_rate.bar(x, table.prune_rate, color=["tab:orange" if k == "depthwise" else "tab:blue" for k in table.kind])
    ax_rate.set_ylabel("prune rate (group)")
    ax_bits.bar(x, table.bits, color="tab:green")
    ax_bits.set_ylabel("bits")
    ax_bits.set_xticks(list(x), table.layer, rotation=90, fontsize=5)
    chosen = policy["chosen"]
    fig.suptitle(
        f"{model_name} seed {policy['seed']}: PPO policy (search top-1 {chosen['top1']:.1f}%, "
        f"{chosen['size_bytes'] / BYTES_PER_MB:.3f} MB; orange = depthwise)", fontsize=9,
    )  # fmt: skip
    fig.tight_layout()
    return fig


def plot_learning_curves(episodes: dict[int, pd.DataFrame], floor: float, model_name: str) -> plt.Figure:
    """Reward, search top-1 and size per episode, one line per seed (running mean over 8)."""
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    for seed, df in episodes.items():
        for ax, column in zip(axes, ("reward", "top1", "size_bytes")):
            values = df[column] / (BYTES_PER_MB if column == "size_bytes" else 1)
            ax.plot(df.episode, values.rolling(8, min_periods=1).mean(), label=f"seed {seed}")
    axes[0].set_ylabel("reward (density / dense density - penalty)")
    axes[1].axhline(floor, color="k", ls="--", lw=0.8, label="accuracy floor")
    axes[1].set_ylabel("search top-1 (%)")
    axes[2].set_ylabel("stored MB")
    for ax in axes:
        ax.set_xlabel("episode")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.suptitle(f"{model_name}: PPO learning curves (running mean over 8 episodes)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_tradeoff(outputs: dict[str, Any], model_name: str) -> plt.Figure:
    """Search top-1 against stored MB: every PPO episode, the static grid, the chosen points."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for seed, df in outputs["episodes"].items():
        ax.scatter(df.size_bytes / BYTES_PER_MB, df.top1, s=6, alpha=0.35, label=f"PPO episodes, seed {seed}")
    grid = outputs["static_grid"]
    for (dense_seed, bits), df in grid.groupby(["dense_seed", "bits"]):
        ax.plot(df.size_bytes / BYTES_PER_MB, df.top1, "-o", color=str(0.75 - 0.09 * bits), ms=3, lw=0.8,
                label=f"static uniform {bits}-bit (dense s{dense_seed})")  # fmt: skip
    for seed, policy in outputs["policies"].items():
        ax.scatter(policy["chosen"]["size_bytes"] / BYTES_PER_MB, policy["chosen"]["top1"], marker="*", s=150,
                   edgecolor="k", label=f"chosen, seed {seed}")  # fmt: skip
    ax.axhline(next(iter(outputs["policies"].values()))["accuracy_floor"], color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set(xlabel="stored MB (real bit-widths, log)",
           ylabel="search top-1 (%: post-training, or predicted after recovery)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title(f"{model_name}: accuracy vs size during the search", fontsize=10)
    fig.tight_layout()
    return fig
