"""Reading back what the 40_qsa stage wrote, and the notebook's tables and figures over it.

The stage (:mod:`edgeprune.stages.qsa`) writes ``results/qsa/<model>/``: ``rows.csv`` (the tidy
results table, :mod:`edgeprune.results`), ``candidates.csv`` (every (λ, τ) the KL search
evaluated), ``stream.csv`` and ``triggers.csv`` (the drift stream and the controller's
re-prunes), ``summary.json`` and the kept ``models/``. :func:`load` reads them back; the rest
turns them into the comparison at equal compression, the ablation and the figures. Torch-free.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from edgeprune import results
from edgeprune.io import read_json
from edgeprune.paths import ResultPaths

STAGE = "qsa"
"""The stage's results folder."""
CSVS = ("candidates", "stream", "triggers")


def out_dir(paths: ResultPaths, model_name: str) -> Path:
    return paths.stage_dir(STAGE, model_name)


def setting(target: float) -> str:
    """The ``setting`` of the rows pruned to compression ``target``."""
    return f"c{target:g}x"


def load(paths: ResultPaths, model_name: str) -> dict[str, Any]:
    """The stage's outputs for one model: ``results`` (the rows at the primary recovery budget, ``extra``
    expanded into columns), ``all_budgets``, and :data:`CSVS` as DataFrames and ``summary`` where they exist
    (older runs lack some). ``FileNotFoundError`` naming the stage when it has not run (no rows)."""
    out, rows = out_dir(paths, model_name), paths.method_rows(STAGE, model_name)
    if not rows.is_file():
        raise FileNotFoundError(f"{rows} does not exist: run the {STAGE} stage for {model_name}")
    table = results.read_table(rows)
    table = table.join(pd.json_normalize(table["extra"].map(json.loads)).set_index(table.index))
    found = {"results": results.at_budget(table), "all_budgets": table}
    found |= {name: pd.read_csv(out / f"{name}.csv") for name in CSVS if (out / f"{name}.csv").is_file()}
    if (out / "summary.json").is_file():
        found["summary"] = read_json(out / "summary.json")
    return found


def comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Per method and setting: int8 compression and top-1, mean ± std over seeds, and the drop vs dense fp32."""
    dense = table[table.method == "none"].set_index("seed")["top1"]
    table = table.assign(drop=table.seed.map(dense) - table.int8_top1)
    grouped = table.groupby(["setting", "method"])
    return grouped.agg(
        compression=("compression_int8", "mean"),
        int8_top1=("int8_top1", "mean"),
        int8_top1_std=("int8_top1", "std"),
        drop=("drop", "mean"),
        seeds=("seed", "nunique"),
    ).round(3)


def best_within(table: pd.DataFrame, max_drop: float = 1.0) -> pd.DataFrame:
    """Per method, the highest measured compression whose mean int8 top-1 is within ``max_drop``
    points of the dense fp32 model (the sweep's resolution is the ``compressions`` list)."""
    summary = comparison(table).reset_index()
    ok = summary[summary["drop"] <= max_drop]
    best = ok.loc[ok.groupby("method")["compression"].idxmax()] if len(ok) else ok
    return best.set_index("method")[["setting", "compression", "int8_top1", "drop", "seeds"]]


def ablation(table: pd.DataFrame, target: float) -> pd.DataFrame:
    """Quantization only (dense int8), sparsity only (QSA fp32) and both (QSA int8) at ``target``."""
    dense = table[table.method == "none"]
    qsa = table[(table.method == "qsa") & (table.setting == setting(target))]
    parts = {
        "quantization only": (dense.compression_int8, dense.int8_top1),
        "sparsity only": (qsa.compression_fp32, qsa.top1),
        "both": (qsa.compression_int8, qsa.int8_top1),
        "neither (dense fp32)": (dense.compression_fp32, dense.top1),
    }
    rows = {name: {"compression": c.mean(), "top1": a.mean(), "top1_std": a.std(), "seeds": len(a)} for name, (c, a) in parts.items()}
    return pd.DataFrame(rows).T.round(3)


def compression_figure(table: pd.DataFrame) -> plt.Figure:
    """int8 top-1 against compression, one marker per seed, per method."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for method, part in table.groupby("method"):
        agg = part.groupby("setting").agg(c=("compression_int8", "mean"), a=("int8_top1", "mean"), s=("int8_top1", "std"))
        agg = agg.sort_values("c")
        ax.errorbar(agg.c, agg.a, yerr=agg.s.fillna(0), marker="o", capsize=3, label=method)
    ax.set(xlabel="compression (fp32 dense bytes / int8 bytes)", ylabel="int8 top-1 (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def stream_figure(stream: pd.DataFrame, triggers: pd.DataFrame, seed: int) -> plt.Figure:
    """Top-1 per stream batch for every arm, condition segments shaded, re-prunes marked."""
    part = stream[(stream.seed == seed) & ~stream.arm.str.startswith("bank:")]  # the bank is in best_static / oracle
    fig, ax = plt.subplots(figsize=(9, 3.6))
    first = part[part.arm == part.arm.iloc[0]]
    segments = (first.condition != first.condition.shift()).cumsum()
    for i, (_, seg) in enumerate(first.groupby(segments)):
        ax.axvspan(seg.batch.min() - 0.5, seg.batch.max() + 0.5, color="0.92" if i % 2 else "white")
        label = seg.condition.iloc[0]
        ax.text(seg.batch.mean(), 1.0, label, ha="center", va="bottom", fontsize=7, transform=ax.get_xaxis_transform())
    for arm, rows in part.groupby("arm", sort=False):
        line = ax.plot(rows.batch, rows.top1, marker=".", label=arm)[0]
        fired = triggers[(triggers.seed == seed) & (triggers.arm == arm)]
        for batch, accepted in zip(fired.batch, fired.accepted.astype(bool)):
            ax.axvline(batch + 0.5, color=line.get_color(), ls="--" if accepted else ":", lw=0.8)
    ax.set(xlabel="stream batch (re-prune after that batch: dashed deployed, dotted rejected)", ylabel="top-1 (%)")
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    return fig
