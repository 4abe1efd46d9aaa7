"""The three papers' tables and the claims check, from :class:`~edgeprune.report.collect.Results`.

Each table function returns ``(numeric, display)``: ``numeric`` has one column per mean,
CI half-width and n (for further analysis), ``display`` the same rows with "mean ± CI"
strings, the paper's numbers where the paper has a table, and column names that say what
was measured and what was modelled. :func:`write_table` saves a table as CSV (the numeric
frame), Markdown and LaTeX.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from edgeprune.io import atomic_write
from edgeprune.report.collect import Results, dense_reference, extra
from edgeprune.results import INT8_SLOW
from edgeprune.report.evidence import claim_measurements
from edgeprune.stats import format_summary, summarise
from edgeprune.verdicts import VERDICTS, claims_table, compare_with_reference, conflicts

__all__ = [
    "AKPERL_PAPER_TABLE1",
    "Table",
    "akperl_table1",
    "baselines_sweep",
    "claims",
    "claims_summary",
    "build_all",
    "ppo_density",
    "ppo_lth",
    "qsa_ablation",
    "qsa_compression",
    "qsa_dynamic",
    "slow_int8",
    "speedups",
    "write_table",
]

Table = tuple[pd.DataFrame, pd.DataFrame]

AKPERL_PAPER_TABLE1: dict[str, tuple[float, float, float, float]] = {
    # AKPERL Table 1, MobileNetV3 (the steering notes' ANCHORS.md): top-1 %, power mW, inference ms, sparsity %
    "none": (72.5, 150.0, 20.0, 0.0),
    "l1_filter": (68.0, 120.0, 18.0, 30.0),
    "magnitude_structured": (67.5, 115.0, 17.0, 35.0),
    "akperl": (72.0, 100.0, 19.0, 45.0),
}


def _summary(df: pd.DataFrame, by: list[str], metrics: Mapping[str, tuple[str, int]], order: Mapping[str, list] | None = None) -> Table:
    """Mean ± 95% CI over seeds of ``metrics`` (column -> (display name, decimals)) per group of ``by``."""
    numeric = summarise(df, by, list(metrics))
    for column, levels in (order or {}).items():
        rank = {v: i for i, v in enumerate(levels)}
        numeric = numeric.sort_values(column, key=lambda s, rank=rank: s.map(lambda v: rank.get(v, len(rank))), kind="stable")
    numeric = numeric.reset_index(drop=True)
    display = format_summary(numeric, list(metrics), {m: d for m, (_, d) in metrics.items()})
    display = display[[*by, *metrics]].rename(columns={m: name for m, (name, _) in metrics.items()})
    display["seeds"] = numeric[[f"{m}_n" for m in metrics]].max(axis=1).to_numpy()
    return numeric, display


# --------------------------------------------------------------------------- static baselines


def baselines_sweep(res: Results) -> Table:
    """20_baselines: every static method x sparsity, accuracy, stored size and measured latency."""
    rows = res.stage("baselines")
    if rows.empty:
        raise LookupError("no 20_baselines results: run the baselines stage")
    rows = rows.assign(size_mb=rows["size_bytes"] / 1e6, int8_size_mb=rows["int8_size_bytes"] / 1e6, sparsity_pct=100 * rows["sparsity"].fillna(0))
    metrics = {
        "top1": ("top-1 %", 2),
        "int8_top1": ("int8 top-1 %", 2),
        "size_mb": ("stored MB (fp32, sparse index included)", 3),
        "int8_size_mb": ("int8 MB", 3),
        "latency_b1_ms": ("latency ms (measured, host, b1)", 2),
    }
    order = {"method": ["none", "l1_filter", "magnitude_structured", "magnitude_unstructured"]}
    return _summary(rows, ["model", "method", "sparsity_pct"], metrics, order)


# --------------------------------------------------------------------------- AKPERL


def akperl_table1(res: Results, power_profile: str = "rpi4") -> Table:
    """AKPERL Table 1: method x (top-1, power, inference time, sparsity), ours beside the paper's.

    Power is the ``power_profile`` device model's power above idle for the pruned network at
    ``akperl.frame_rate_hz`` (modelled, as in AKPERL's reward); inference time
    is measured on this machine's CPU at batch 1; sparsity is the share of prunable channels
    removed. The paper's numbers are for MobileNetV3 on its own data and device.
    """
    rows = res.stage("akperl")
    if rows.empty:
        raise LookupError("no 30_akperl_dqn results: run the akperl stage")
    rows = rows.assign(
        power_mw=extra(rows, "power_mw_modelled").astype(float), sparsity_pct=100 * rows["sparsity_realised"].fillna(0).astype(float)
    )
    metrics = {
        "top1": ("top-1 %", 2),
        "power_mw": (f"power mW (modelled, {power_profile}, above idle)", 1),
        "latency_b1_ms": ("inference ms (measured, host CPU, b1)", 2),
        "sparsity_pct": ("sparsity % (channels)", 1),
    }
    numeric, display = _summary(rows, ["model", "method"], metrics, {"method": list(AKPERL_PAPER_TABLE1)})
    paper = pd.DataFrame(AKPERL_PAPER_TABLE1, index=["paper top-1 %", "paper power mW", "paper inference ms", "paper sparsity %"]).T
    display = display.join(paper, on="method")
    return numeric, display


# --------------------------------------------------------------------------- QSA


def _qsa_rows(res: Results) -> pd.DataFrame:
    rows = res.stage("qsa")
    if rows.empty:
        raise LookupError("no 40_qsa results: run the qsa stage")
    rows = rows.assign(
        target=extra(rows, "target").astype(float),
        compression_int8=extra(rows, "compression_int8").astype(float),
        compression_fp32=extra(rows, "compression_fp32").astype(float),
    )
    frames = []
    for _, part in rows.groupby("model", sort=False):
        dense = dense_reference(part, "top1")
        frames.append(part.assign(drop_int8=dense - part["int8_top1"], drop_fp32=dense - part["top1"]))
    return pd.concat(frames, ignore_index=True)


def qsa_compression(res: Results) -> Table:
    """QSA vs static pruning at equal compression: int8 compression, int8 top-1 and its drop from dense fp32."""
    rows = _qsa_rows(res)
    rows = rows[rows["method"] != "none"]
    metrics = {
        "compression_int8": ("compression x (int8, measured bytes)", 2),
        "int8_top1": ("int8 top-1 %", 2),
        "drop_int8": ("drop vs dense fp32, pt", 2),
    }
    numeric, display = _summary(rows, ["model", "target", "method"], metrics, {"method": ["qsa"]})
    order = numeric.sort_values(["model", "target"], kind="stable").index
    return numeric.loc[order].reset_index(drop=True), display.loc[order].reset_index(drop=True)


def qsa_ablation(res: Results) -> Table:
    """The QSA paper's ablation: quantization only, sparsity only, both, per target compression."""
    rows = _qsa_rows(res)
    dense = rows[rows["method"] == "none"]
    qsa = rows[rows["method"] == "qsa"]
    parts = [
        dense.assign(variant="neither (dense fp32)", compression=dense["compression_fp32"], acc=dense["top1"], target=float("nan")),
        dense.assign(variant="quantization only (int8)", compression=dense["compression_int8"], acc=dense["int8_top1"], target=float("nan")),
        qsa.assign(variant="sparsity only (QSA, fp32)", compression=qsa["compression_fp32"], acc=qsa["top1"]),
        qsa.assign(variant="both (QSA + int8)", compression=qsa["compression_int8"], acc=qsa["int8_top1"]),
    ]
    frame = pd.concat(parts, ignore_index=True)
    frame["target"] = frame["target"].map(lambda t: "-" if pd.isna(t) else f"{t:g}x")
    metrics = {"compression": ("compression x (measured bytes)", 2), "acc": ("top-1 %", 2)}
    return _summary(frame, ["model", "target", "variant"], metrics, {"variant": [p["variant"].iloc[0] for p in parts if len(p)]})


def qsa_dynamic(res: Results) -> Table:
    """The drift stream: mean int8 top-1 per arm (static, QSA, each with and without the controller)."""
    frames = [files["stream"].assign(model=model) for model, files in res.qsa.items() if "stream" in files]
    if not frames:
        raise LookupError("no QSA stream: run the qsa stage with qsa.stream_seeds")
    stream = pd.concat(frames, ignore_index=True)
    per_seed = stream.groupby(["model", "arm", "seed"], as_index=False)[["top1", "latency_ms"]].mean()
    metrics = {"top1": ("stream top-1 % (int8)", 2), "latency_ms": ("latency ms per batch (measured)", 2)}
    order = {"arm": ["static", "static+controller", "qsa", "qsa+controller"]}
    return _summary(per_seed, ["model", "arm"], metrics, order)


# --------------------------------------------------------------------------- PPO


def ppo_density(res: Results) -> Table:
    """PPO vs static prune+quant per model: performance density (top-1 % per MB), top-1, size."""
    if not res.ppo:
        raise LookupError("no 50_ppo_prune_quant results: run the ppo stage")
    comp = pd.concat([res.ppo_comparison(m).assign(model=m) for m in res.ppo], ignore_index=True)
    metrics = {
        "ppo_density": ("PPO density %/MB", 1),
        "static_density": ("static density %/MB", 1),
        "density_gain_pct": ("density gain %", 1),
        "random_density": ("random-search density %/MB (equal budget)", 1),
        "density_gain_vs_random_pct": ("density gain over random search %", 1),
        "reward_gain_vs_random": ("reward gain over random search (PPO's objective)", 2),
        "greedy_density": ("greedy-allocation density %/MB (equal budget)", 1),
        "density_gain_vs_greedy_pct": ("density gain over greedy allocation %", 1),
        "reward_gain_vs_greedy": ("reward gain over greedy allocation (PPO's objective)", 2),
        "ppo_top1": ("PPO top-1 % (simulated k-bit)", 2),
        "static_top1": ("static top-1 % (uniform rate and bits)", 2),
        "dense_top1": ("dense top-1 %", 2),
        "size_reduction": ("PPO size reduction x", 2),
        "ppo_bits": ("PPO mean bits", 2),
    }
    metrics = {k: v for k, v in metrics.items() if k in comp and comp[k].notna().any()}  # a run without a control
    return _summary(comp, ["model"], metrics)


def ppo_lth(res: Results) -> Table:
    """Lottery-ticket rewinding vs fine-tuning: the same PPO structure and bit-widths, the same budget."""
    if not res.ppo:
        raise LookupError("no 50_ppo_prune_quant results: run the ppo stage")
    frames = []
    for model in res.ppo:
        c = res.ppo_comparison(model)
        frames.append(pd.DataFrame({"model": model, "retraining": "fine-tune (final weights)", "seed": c["seed"],
                                    "top1": c["ppo_top1"], "top1_float": c["ft_top1_float"], "density": c["ppo_density"]}))
        frames.append(pd.DataFrame({"model": model, "retraining": "rewind (LTH, early weights)", "seed": c["seed"],
                                    "top1": c["lth_top1"], "top1_float": c["lth_top1_float"], "density": c["lth_density"]}))  # fmt: skip
    metrics = {"top1": ("top-1 % (quantized)", 2), "top1_float": ("top-1 % (float)", 2), "density": ("density %/MB", 1)}
    return _summary(pd.concat(frames, ignore_index=True), ["model", "retraining"], metrics)


# --------------------------------------------------------------------------- claims


def _headline(given: object) -> tuple[float | None, float | None]:
    """(mean, CI half-width) of a claim's measurement at its largest budget."""
    if isinstance(given, Mapping):
        given = given[max(given)] if given else (None, None)
    return given[0], given[1]


def claims(res: Results, reference: pd.DataFrame | None = None) -> Table:
    """The claims check: one row per claim, the paper's number, ours with its CI per recovery budget,
    the verdict; with ``reference`` (the committed reference run's claims table), its verdict beside ours."""
    measured = claim_measurements(res)
    display = claims_table(measured)
    if reference is not None:
        display = compare_with_reference(display, reference)
    headline = display["id"].map(lambda i: _headline(measured.get(i, (None, None))))
    numeric = display.assign(mean=headline.map(lambda h: h[0]), ci95=headline.map(lambda h: h[1]))
    return numeric, display


# --------------------------------------------------------------------------- writing


def _latex(display: pd.DataFrame, caption: str, label: str) -> str:
    return display.to_latex(index=False, escape=True, caption=caption, label=f"tab:{label}", na_rep="--")


def write_table(numeric: pd.DataFrame, display: pd.DataFrame, folder: str | Path, name: str, caption: str) -> list[Path]:
    """Write ``<name>.csv`` (numeric), ``<name>.md`` and ``<name>.tex`` (display) under ``folder``, atomically."""
    if not name or "/" in name:
        raise ValueError(f"table name must be a plain file stem, got {name!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    outputs = {
        ".csv": lambda p: numeric.to_csv(p, index=False),
        ".md": lambda p: p.write_text(f"**{caption}**\n\n{display.to_markdown(index=False)}\n"),
        ".tex": lambda p: p.write_text(_latex(display, caption, name)),
    }
    for suffix, write in outputs.items():
        path = folder / f"{name}{suffix}"
        with atomic_write(path) as tmp:
            write(tmp)
        written.append(path)
    return written


CAPTIONS: dict[str, str] = {
    "claims": "Claims check: the three papers' claims, the paper's number, ours (mean ± 95% CI over seeds) and the verdict.",
    "akperl_table1": "AKPERL Table 1: method x (top-1, power, inference time, sparsity), mean ± 95% CI over seeds; "
    "power modelled, inference time measured on the host CPU; the paper's numbers beside ours.",
    "baselines_sweep": "Static baselines: accuracy, stored size and measured latency per sparsity, mean ± 95% CI over seeds.",
    "qsa_compression": "QSA vs static pruning at equal compression (int8), mean ± 95% CI over seeds.",
    "qsa_ablation": "QSA ablation: quantization only, sparsity only, both; mean ± 95% CI over seeds.",
    "qsa_dynamic": "QSA on the drifting stream: mean top-1 per arm (int8), mean ± 95% CI over stream seeds.",
    "ppo_density": "PPO vs static prune+quant: performance density (top-1 % per MB stored), mean ± 95% CI over seeds; "
    "sub-8-bit accuracies are simulated (fake quantization).",
    "ppo_lth": "Lottery-ticket rewinding vs fine-tuning (same structure, bit-widths and budget), mean ± 95% CI over seeds.",
    "slow_int8": f"Networks whose real int8 copy runs more than {INT8_SLOW:g}x slower than their fp32 parent at batch 64 "
    "(measured on this CPU; an empty table is the target).",
    "speedups": "Realised speedup beside MACs reduction: measured batch-1 and batch-64 speedup over the dense fp32 network "
    "timed in the same stage, realised / MACs, and the int8 copy's batch-64 speedup; mean ± 95% CI over seeds.",
}


def claims_summary(numeric: pd.DataFrame) -> dict[str, object]:
    """``dvc metrics`` view of the claims check: claims per verdict, our mean for each claim (at its
    largest budget) and, beside a reference run, the conflicts (reproduced vs not reproduced)."""
    counts = numeric["verdict"].value_counts()
    summary: dict[str, object] = {
        "verdicts": {v: int(counts.get(v, 0)) for v in VERDICTS},
        "ours": {row.id: (None if pd.isna(row.mean) else round(float(row.mean), 4)) for row in numeric.itertuples()},
    }
    if "quick vs reference" in numeric:
        summary["reference_conflicts"] = conflicts(numeric)["id"].tolist()
    return summary


def slow_int8(res: Results) -> Table:
    """Every measured network whose int8 copy runs more than :data:`edgeprune.results.INT8_SLOW` times
    slower than its fp32 parent at batch 64 (latency measured in the same row), with the ratio."""
    rows = res.rows.dropna(subset=["int8_latency_ratio_b64"])
    if rows.empty:
        raise LookupError("no row measured both fp32 and int8 latency")
    ratio = rows.groupby(["stage", "model", "method", "setting"], as_index=False)["int8_latency_ratio_b64"].max()
    numeric = ratio[ratio["int8_latency_ratio_b64"] > INT8_SLOW].reset_index(drop=True)
    display = numeric.assign(int8_latency_ratio_b64=numeric["int8_latency_ratio_b64"].round(2)).rename(
        columns={"int8_latency_ratio_b64": "int8 / fp32 latency, b64 (measured)"}
    )
    return numeric, display


def speedups(res: Results) -> Table:
    """Realised speedup beside MACs reduction: every network whose latency was measured on this CPU,
    its MACs reduction and measured batch-1 / batch-64 speedup over the dense fp32 network it was
    pruned from, timed in the same stage (:func:`~edgeprune.report.collect.dense_reference`), their
    ratio (realised / MACs, b64), and its int8 copy's batch-64 speedup over that same dense fp32 network. Stages whose rows carry no latency (QSA, PPO in the quick profile) come
    from the device-power stage's host timings (batch 1, one kept network per method) against the
    dense network timed there."""
    measured = res.rows.dropna(subset=["latency_b1_ms"])
    measured = measured[(measured["budget"].isna()) | (measured["budget"] == 0)]
    parts = []
    for (_, _), rows in measured.groupby(["stage", "model"]):
        dense = rows[rows["method"] == "none"]
        if dense.empty:
            continue
        base = {column: dense_reference(rows, column) for column in ("macs", "latency_b1_ms", "latency_b64_ms")}
        parts.append(rows.assign(
            macs_reduction=base["macs"] / rows["macs"], speedup_b1=base["latency_b1_ms"] / rows["latency_b1_ms"],
            speedup_b64=base["latency_b64_ms"] / rows["latency_b64_ms"],
            int8_speedup_b64=base["latency_b64_ms"] / rows.get("int8_latency_b64_ms", float("nan")),
        ))  # fmt: skip
    if res.power is not None:
        host = res.power[res.power["device"].str.startswith("host") & (res.power["precision"] == "fp32")]
        for _, rows in host.groupby("model"):
            dense = rows[rows["method"] == "none"]
            rows = rows[~rows["stage"].isin(measured["stage"])]
            if dense.empty:
                continue
            parts.append(rows.assign(
                seed=0, macs_reduction=dense["macs"].mean() / rows["macs"],
                speedup_b1=dense["latency_ms"].mean() / rows["latency_ms"], speedup_b64=float("nan"),
                int8_speedup_b64=float("nan"),
            ))  # fmt: skip
    if not parts:
        raise LookupError("no network with a measured latency and a dense network timed beside it")
    rows = pd.concat(parts, ignore_index=True)
    rows = rows[rows["method"] != "none"].assign(realised_b64=lambda r: r["speedup_b64"] / r["macs_reduction"])
    metrics = {
        "macs_reduction": ("MACs reduction x", 2),
        "speedup_b1": ("speedup b1 x (measured)", 2),
        "speedup_b64": ("speedup b64 x (measured)", 2),
        "realised_b64": ("realised / MACs (b64)", 2),
        "int8_speedup_b64": ("int8 speedup b64 x vs dense fp32", 2),
    }
    return _summary(rows, ["stage", "model", "method", "setting"], metrics)


def build_all(
    res: Results, power_profile: str = "rpi4", reference: pd.DataFrame | None = None
) -> tuple[dict[str, Table], dict[str, str]]:
    """Every table the results allow, and for each one they do not, the reason (a stage has not run)."""
    makers = {
        "claims": lambda r: claims(r, reference),
        "akperl_table1": lambda r: akperl_table1(r, power_profile),
        "baselines_sweep": baselines_sweep,
        "qsa_compression": qsa_compression,
        "qsa_ablation": qsa_ablation,
        "qsa_dynamic": qsa_dynamic,
        "ppo_density": ppo_density,
        "ppo_lth": ppo_lth,
        "slow_int8": slow_int8,
        "speedups": speedups,
    }
    built, skipped = {}, {}
    for name, make in makers.items():
        try:
            built[name] = make(res)
        except LookupError as err:
            skipped[name] = str(err)
    return built, skipped
