"""Stage 50_ppo_prune_quant: PPO picks a prune rate and a bit-width per layer.

For one model, once per dense model (dense seed):

1. score channels by first-order Taylor importance on a few training batches;
2. evaluate the static baseline grid (one prune rate and one bit-width everywhere, every
   pair of ``ppo.prune_rates`` x ``ppo.bits``) and pick its densest configuration meeting
   the accuracy floor, confirmed on the selection images (validation images the search
   never sees): PPO's own rule over the uniform space;

then per seed (agent, fine-tuning subset and order):

3. train PPO over :class:`~edgeprune.envs.prune_quant.PruneQuantEnv` and extract the
   policy: the ``ppo.finalists`` densest configurations found that meet the floor are
   re-scored on the selection images, and the densest one still meeting it there is
   chosen (:func:`edgeprune.ppo.agent.select_policy`);
4. retrain the chosen structure twice with the shared ``finetune`` budget: fine-tuning
   from the final dense weights, and lottery-ticket rewinding (the same channels, the
   early weights of ``rewind.pt``); fine-tune the static choice like the first
   (quantization-aware too when its bit-width is below 8). Each
   retraining re-estimates BN statistics first when channels were removed and, with
   ``ppo.qat``, is quantization-aware (:func:`edgeprune.ppo.retrain.retrain`);
5. KL-calibrate and fake-quantize each at its bit-widths and report it on the test
   split (:func:`edgeprune.harness.report`): top-1 of the simulated k-bit model and
   size with every weight at its bit-width; real int8 conversion and latency of the
   float pruned model.

Rows: method ``ppo`` (settings ``policy-ft``, ``policy-lth``), ``static_pq`` (setting
``uniform``; its rate and bits in ``extra``) and each control's ``<name>_search``. A finished seed is checkpointed, so an interrupted run
resumes with the next one.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch
from dvclive import Live
from torch import nn

from edgeprune import fakequant, harness, measure, results
from edgeprune.checkpoints import dense_seed_for, record_path, resume
from edgeprune.data import PreparedData, load_prepared, normalize
from edgeprune.envs.prune_quant import Episode, PruneQuantEnv
from edgeprune.groups import width
from edgeprune.io import atomic_write, save_module, write_csv_atomic, write_json_atomic
from edgeprune.paths import ResultPaths
from edgeprune.ppo.agent import Finalist, greedy_episode, log_episodes, select_policy, train_agent
from edgeprune.ppo.context import DenseContext
from edgeprune.ppo.controls import SEARCHES
from edgeprune.ppo.outputs import (
    STAGE, budget_axis, compare, load, lth_table, out_dir, plot_learning_curves, plot_policy, plot_sensitivity,
    plot_tradeoff, predictor_table, summarise,
)  # fmt: skip
from edgeprune.ppo.retrain import retrain
from edgeprune.ppo.search import Outcome
from edgeprune.prune import PruneReport
from edgeprune.placement import place, resolve_device
from edgeprune.train import set_threads

if TYPE_CHECKING:
    from edgeprune.config import Params

_HARDWARE_COLUMNS = ("int8_", "latency_", "layout", "cpu_load_1min")
# The read side (comparison, summary, outputs, figures) lives in edgeprune.ppo.outputs; re-exported for the notebook.
__all__ = [
    "DenseContext", "run", "run_seed",
    "budget_axis", "compare", "load", "lth_table", "plot_learning_curves", "plot_policy", "plot_sensitivity",
    "plot_tradeoff", "predictor_table",
]  # fmt: skip


# --------------------------------------------------------------------------- per seed


def _prune_report(method: str, dense: nn.Module, pruned: nn.Module, ctx: DenseContext) -> PruneReport:
    """Measured channel sparsity (over the prunable groups' layers), parameters and MACs."""
    members = [name for group in ctx.groups for name in group.members]
    before, after = fakequant.quantized_layers(dense), fakequant.quantized_layers(pruned)
    realised = 1.0 - sum(width(after[n]) for n in members) / sum(width(before[n]) for n in members)
    return PruneReport(
        method, realised, "channels", realised,
        measure.count_params(dense)[0], measure.count_params(pruned)[0],
        measure.count_macs(dense), measure.count_macs(pruned),
    )  # fmt: skip


def _report(
    model: nn.Module,
    bits: dict[str, int],
    *,
    method: str,
    setting: str,
    seed: int,
    ctx: DenseContext,
    params: Params,
    extra: dict[str, Any],
    budget: int,
    hardware: bool = True,
) -> dict[str, Any]:
    """One tidy row of a network recovered at ``budget``: accuracy and size of the fake-quantized
    model (quantized as ``ctx.scheme`` says); with ``hardware``, int8 conversion and latency of the
    float pruned model (k-bit layers have no kernels here)."""
    cfg, device = params.ppo, resolve_device(params.device)
    model = place(model, device).eval()
    simulated = fakequant.deploy(model, bits, ctx.scheme, normalize(ctx.calib.x).to(device), bins=cfg.kl_bins,
                                 batch_size=cfg.batch_size)  # fmt: skip
    shift = [c for c in params.shift.conditions if c != "clean"] if cfg.evaluate_shift else []
    common = dict(model_name=ctx.model_name, method=method, setting=setting, seed=seed, eval_batch_size=cfg.batch_size)
    row = harness.report(
        simulated, ctx.test.x, ctx.test.y, **common, device=device, conditions=shift, severity=params.shift.severity,
        pruning=_prune_report(method, ctx.final, model, ctx), bits=fakequant.weight_bits(bits),
        int8=False, latency=False,
    )  # fmt: skip
    measured = harness.report(
        model, ctx.test.x, ctx.test.y, **common, device=device, conditions=[], int8=cfg.int8 and hardware,
        calib_x=ctx.calib.x, latency=cfg.latency and hardware, warmup=cfg.latency_warmup, repeats=cfg.latency_repeats,
        threads=torch.get_num_threads(),
    )  # fmt: skip
    row.update({k: v for k, v in measured.items() if k.startswith(_HARDWARE_COLUMNS) or k == "latency_repeats"})
    row["extra"] = {
        **extra,
        "top1_float": measured["top1"],
        "density_pct_per_mb": Outcome(row["top1"], row["size_bytes"], row["params"]).density,
        "dense_seed": ctx.dense_seed,
        "hardware_model": "int8_* and latency_*: the float pruned model (k-bit layers are simulated only)",
        "qat": cfg.qat,
        "signal": cfg.signal,
        "quantized": ctx.scheme.label,
        "weight_clip": ctx.scheme.weight_clip,
    }
    return row | ctx.recovery.columns(budget)


def _select_top1(finalists: list[Finalist], chosen: Episode) -> float:
    return next(f.top1 for f in finalists if f.episode is chosen)


def _finalists_json(finalists: list[Finalist]) -> list[dict[str, Any]]:
    return [{**f.episode.to_json(), "select_top1": f.top1, "confirmed": f.confirmed} for f in finalists]


def _policy_table(ctx: DenseContext, chosen: Episode, pruned: nn.Module) -> list[dict[str, Any]]:
    """Per layer: the group it belongs to, its prune rate and bit-width, channels kept."""
    after = fakequant.quantized_layers(pruned)
    return [
        {
            "layer": layer.name,
            "kind": layer.kind,
            "group": ctx.groups[layer.group].root if layer.group is not None else None,
            "prune_rate": chosen.rates[layer.group] if layer.group is not None else 0.0,
            "bits": b,
            "out_channels": layer.out_channels,
            "out_channels_kept": width(after[layer.name]),
            "params": layer.params,
        }
        for layer, b in zip(ctx.search.layers, chosen.bits, strict=True)
    ]


def kept_model_path(paths: ResultPaths, model_name: str, seed: int) -> Path:
    """Where a seed's fine-tuned PPO network is kept beside its checkpoint (survives a resumed run)."""
    return paths.stage_checkpoints(STAGE, model_name) / f"s{seed}-ppo-policy-ft.pt"


def run_seed(params: Params, data: PreparedData, ctx: DenseContext, seed: int, keep: Path | None = None) -> dict[str, Any]:
    """Search, retrain and report one seed; returns its record (JSON-serialisable).

    With ``keep``, the fine-tuned PPO network is saved there (for the device-power stage).
    """
    cfg = params.ppo
    timings = {}
    tic = time.perf_counter()
    evaluations = ctx.search.evaluations
    env = PruneQuantEnv(
        ctx.search, prune_rates=cfg.prune_rates, bits=cfg.bits, accuracy_floor=ctx.floor, penalty=cfg.penalty,
        repair=cfg.repair,
    )
    agent = train_agent(
        env, episodes=cfg.episodes, episodes_per_update=cfg.episodes_per_update, learning_rate=cfg.learning_rate,
        n_epochs=cfg.n_epochs, ent_coef=cfg.ent_coef, clip_range=cfg.clip_range, net_arch=cfg.net_arch, seed=seed,
        warm_start=cfg.warm_start,
    )  # fmt: skip
    greedy = greedy_episode(agent, env)
    chosen, finalists = select_policy(env.episodes, ctx.rescore, ctx.select_floor, cfg.finalists)
    timings["search_s"] = time.perf_counter() - tic
    timings["new_evaluations"] = ctx.search.evaluations - evaluations

    tic = time.perf_counter()  # the equal-budget controls: as many scored configurations, the same choice rule
    controls = {}
    for name in cfg.controls:
        control_env = PruneQuantEnv(
            ctx.search, prune_rates=cfg.prune_rates, bits=cfg.bits, accuracy_floor=ctx.floor, penalty=cfg.penalty,
            repair=cfg.repair,
        )
        scored = SEARCHES[name](control_env, episodes=len(env.episodes), seed=seed)
        controls[name] = (scored, *select_policy(scored, ctx.rescore, ctx.select_floor, cfg.finalists))
    timings["control_search_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    bits, static_bits = ctx.search.bits_map(chosen.bits), ctx.search.bits_map(ctx.static.bits)
    plan, static_plan = ctx.search.plan(chosen.rates), ctx.search.plan(ctx.static.rates)
    common = dict(seed=seed, teacher=ctx.final, qat=cfg.qat, scheme=ctx.scheme)
    budgets = range(len(params.finetune.budgets))  # the budget axis: fine-tuned PPO and static at every budget
    tuned = [retrain(ctx.final, plan, bits, ctx.recovery, budget=b, **common) for b in budgets]
    static = [retrain(ctx.final, static_plan, static_bits, ctx.recovery, budget=b, **common) for b in budgets]
    rewound = retrain(ctx.rewind, plan, bits, ctx.recovery, lr=cfg.rewind_lr, **common)
    timings["retrain_s"] = time.perf_counter() - tic
    tic = time.perf_counter()
    control_nets = {
        name: [retrain(ctx.final, ctx.search.plan(pick.rates), ctx.search.bits_map(pick.bits), ctx.recovery, budget=b,
                       **common) for b in budgets]
        for name, (_, pick, _) in controls.items()
    }  # fmt: skip
    timings["control_retrain_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    common = dict(seed=seed, ctx=ctx, params=params)
    searched = {
        "search_top1": chosen.outcome.top1, "search_size_bytes": chosen.outcome.size_bytes,
        "select_top1": _select_top1(finalists, chosen),
    }  # fmt: skip
    static_extra = {
        "prune_rate": ctx.static.rates[0], "static_bits": ctx.static.bits[0], "search_top1": ctx.static.outcome.top1,
        "select_top1": _select_top1(ctx.static_finalists, ctx.static), "retrain": "fine-tune",
    }  # fmt: skip
    rows = []
    for b in budgets:  # hardware columns once per architecture: at the primary budget
        rows += [
            _report(tuned[b], bits, method="ppo", setting="policy-ft", **common, budget=b, hardware=b == 0,
                    extra={**searched, "retrain": "fine-tune"}),
            _report(static[b], static_bits, method="static_pq", setting="uniform", **common, budget=b,
                    hardware=b == 0, extra=static_extra),
        ]  # fmt: skip
    rows.append(
        _report(
            rewound, bits, method="ppo", setting="policy-lth", **common, budget=0, hardware=False,
            extra={**searched, "retrain": "rewind", "hardware": "same architecture as policy-ft: see that row"},
        )
    )  # fmt: skip
    for name, (scored, pick, pick_finalists) in controls.items():
        control_extra = {"search_top1": pick.outcome.top1, "search_size_bytes": pick.outcome.size_bytes,
                         "select_top1": _select_top1(pick_finalists, pick), "retrain": "fine-tune",
                         "episodes": len(scored)}  # fmt: skip
        rows += [
            _report(control_nets[name][b], ctx.search.bits_map(pick.bits), method=f"{name}_search",
                    setting=f"{name}-ft", **common, budget=b, hardware=b == 0, extra=control_extra)  # fmt: skip
            for b in budgets
        ]
    timings["report_s"] = time.perf_counter() - tic
    if keep is not None:
        save_module(tuned[0], keep)
    return {
        "seed": seed,
        "dense_seed": ctx.dense_seed,
        "fingerprint": ctx.fingerprint,
        "accuracy_floor": ctx.floor,
        "dense_search": asdict(ctx.search.reference),
        "dense_test": asdict(ctx.dense_test),
        "episodes": [e.to_json() for e in env.episodes],
        "greedy": greedy.to_json(),
        "chosen": chosen.to_json(),
        "static": ctx.static.to_json(),
        "select_floor": ctx.select_floor,
        "select_dense_top1": ctx.select_dense_top1,
        "finalists": _finalists_json(finalists),
        "static_finalists": _finalists_json(ctx.static_finalists),
        **{f"{name}_chosen": pick.to_json() for name, (_, pick, _) in controls.items()},
        **{f"{name}_finalists": _finalists_json(picks) for name, (_, _, picks) in controls.items()},
        "plan": plan.to_json(),
        "policy": _policy_table(ctx, chosen, tuned[0]),
        "rows": rows,
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }


# --------------------------------------------------------------------------- stage


def run(params: Params, paths: ResultPaths, model_name: str) -> dict[str, Any]:
    """Run every seed of ``params.ppo`` for ``model_name`` and write the stage's files.

    Under ``results/ppo/<model>/``: ``rows.csv`` (tidy rows), ``comparison.csv`` (per
    seed: PPO against the static baseline, fine-tuning against rewinding),
    ``static_grid.csv``, ``summary.json`` (means with 95% CIs over seeds, targets) and per
    seed ``s<seed>/policy.json`` and ``s<seed>/episodes.csv``. Learning curves go to
    ``results/dvclive/ppo/<model>/s<seed>/``, finished seeds to
    ``results/checkpoints/ppo/<model>/s<seed>.json``.
    """
    cfg = params.ppo
    if cfg is None:
        raise ValueError("params has no `ppo` section: the 50_ppo_prune_quant stage needs one")
    if model_name not in cfg.models:
        raise ValueError(f"model {model_name!r} is not in ppo.models {cfg.models}")
    if model_name not in params.train.models:
        raise ValueError(f"model {model_name!r} has no dense training: it is not in train.models {params.train.models}")
    tic = time.perf_counter()
    set_threads(params.num_threads)
    data = load_prepared(paths.prepared)
    out = out_dir(paths, model_name)
    contexts: dict[int, DenseContext] = {}
    records = []
    for seed in cfg.seeds:
        dense_seed = dense_seed_for(params, seed)
        if dense_seed not in contexts:
            contexts[dense_seed] = DenseContext(params, paths, data, model_name, dense_seed)
        ctx = contexts[dense_seed]
        keep = kept_model_path(paths, model_name, seed) if seed == cfg.seeds[0] else None
        record = resume(record_path(paths, STAGE, model_name, seed), ctx.fingerprint)
        if record is None or (keep is not None and not keep.is_file()):
            record = run_seed(params, data, ctx, seed, keep)
            write_json_atomic(record_path(paths, STAGE, model_name, seed), record)
        records.append(record)
        live_dir = paths.dvclive(STAGE, model_name) / f"s{seed}"
        with Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None) as live:
            log_episodes(live, [Episode.from_json(e) for e in record["episodes"]])
        keys = (
            "seed", "dense_seed", "accuracy_floor", "dense_search", "chosen", "greedy", "static", "select_floor",
            "select_dense_top1", "finalists", "static_finalists", "plan", "policy",
        )  # fmt: skip
        picks = {f"{name}_{part}": record[f"{name}_{part}"] for name in cfg.controls for part in ("chosen", "finalists")}
        write_json_atomic(out / f"s{seed}" / "policy.json", {k: record[k] for k in keys} | picks)
        write_csv_atomic(pd.DataFrame(record["episodes"]).rename_axis("episode"), out / f"s{seed}" / "episodes.csv", index=True)
    with atomic_write(out / "models" / "ppo-policy-ft.pt") as tmp:  # kept for the device-power stage
        shutil.copyfile(kept_model_path(paths, model_name, cfg.seeds[0]), tmp)
    rows_path = paths.method_rows(STAGE, model_name)
    rows_path.unlink(missing_ok=True)  # a re-run replaces the rows, never mixes with an old run's
    results.append_rows(rows_path, [row for record in records for row in record["rows"]])
    comparison = compare(records, penalty=cfg.penalty)
    write_csv_atomic(comparison, out / "comparison.csv")
    grid = [
        {"dense_seed": d, "prune_rate": e.rates[0], **e.to_json(), "bits": e.bits[0]}
        for d, ctx in contexts.items()
        for e in ctx.static_grid
    ]
    write_csv_atomic(pd.DataFrame(grid).drop(columns=["rates"]), out / "static_grid.csv")
    for dense_seed, ctx in contexts.items():
        if ctx.table is not None:
            write_json_atomic(out / f"sensitivity-d{dense_seed}.json", {"table": ctx.table.to_json(), "predictor": ctx.sensitivity})
    summary = summarise(comparison, model_name, time.perf_counter() - tic, records)
    summary["signal"], summary["repair"] = cfg.signal, cfg.repair  # the method version (report.reference compares it)
    summary["predictor"] = {
        str(d): {k: ctx.sensitivity[k] for k in ("spearman_holdout", "mae_holdout", "fitted_on", "seconds")}
        | {"table_seconds": ctx.table.seconds}
        for d, ctx in contexts.items() if ctx.table is not None
    }  # fmt: skip
    write_json_atomic(out / "summary.json", summary)
    return summary
