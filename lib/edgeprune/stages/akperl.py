"""Stage 30_akperl_dqn: AKPERL's DQN search, its grid and ablations, Table 1 and the dynamic stream.

For one model (the DVC matrix item), :func:`run`:

1. builds a :class:`~edgeprune.akperl.task.PruningTask` per dense model (accuracy and
   power cached by configuration and shared by every run on that model);
2. grid-searches (alpha, beta, gamma) with one agent per combination (first seed);
3. trains one agent per seed with the chosen coefficients (the grid run is reused for
   the first seed when it had as many steps), and the ablations (no input statistics
   in the state, no power term, uniform layer weights) per ablation seed;
4. per seed, prunes each distinct configuration the policy picks across conditions
   once and recovers it with the shared protocol (:mod:`edgeprune.recover`), and does the
   same for the static baselines (L1-norm and global magnitude filter pruning) at the
   AKPERL clean configuration's sparsity; Table 1's networks are recovered at every
   ``finetune`` budget (the budget axis), the stream's at the primary one;
5. measures the dense model, the baselines and AKPERL's clean-condition network through
   :func:`edgeprune.harness.report` (Table 1, clean test split) and runs the
   non-stationary stream: AKPERL switching vs the static networks at the same
   average sparsity.

Seeds vary the agent and the fine-tuning; seed ``s`` prunes dense model ``s`` when the
dense stage trained it, else the first dense seed, as in the 20_baselines stage.
Outputs: ``results/akperl/<model>/`` (``rows.csv``, the tidy results table, and the
stage's own CSVs and ``summary.json``; read back by :mod:`edgeprune.akperl.outputs`), DVCLive
curves under ``results/dvclive/akperl/<model>/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from edgeprune import harness, measure, prune, results
from edgeprune.akperl.agent import AgentRun, grid_search, train_agent
from edgeprune.akperl.controls import SEARCHES, ControlRun
from edgeprune.akperl.networks import SeedNetworks, static_methods
from edgeprune.akperl.dynamic import SwitchingNetwork, make_index_stream, run_stream
from edgeprune.akperl.outputs import (
    STAGE, control_gap, controller_accuracy, out_dir, plot_convergence, plot_policies, plot_stream, read, save_figure,
    stream_summary, table1,
)  # fmt: skip
from edgeprune.akperl.reward import RewardCoefficients, layer_weights
from edgeprune.akperl.task import PowerModel, PruningTask, canonical_key
from edgeprune.akperl.units import apply_levels, channel_sparsity, levels_percent
from edgeprune.checkpoints import dense_seed_for, load_dense
from edgeprune.config import Params
from edgeprune.data import PreparedData, Split, load_prepared
from edgeprune.io import save_module, write_csv_atomic, write_json_atomic
from edgeprune.paths import ResultPaths
from edgeprune.recover.protocol import Recovery
from edgeprune.placement import resolve_device
from edgeprune.streams import hindsight_arms
from edgeprune.train import set_threads

# The read side (outputs, Table 1, the figures) lives in edgeprune.akperl.outputs; re-exported for the notebook.
__all__ = [
    "build_task", "run",
    "control_gap", "controller_accuracy", "plot_convergence", "plot_policies", "plot_stream", "read", "save_figure",
    "stream_summary", "table1",
]  # fmt: skip

CONTROL_COLUMNS = ["label", "seed", "condition", "episodes", "R", "val_acc", "power_rel", "sparsity", "seconds"]
# Static networks are reused for the stream when their sparsity is this close to the stream's average.
SPARSITY_MATCH = 0.02


@contextmanager
def _timed(timing: dict[str, float], name: str) -> Iterator[None]:
    """Record the wall-clock and CPU (this process) seconds of a phase as ``<name>_s`` and ``<name>_cpu_s``."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    timing[f"{name}_s"] = time.perf_counter() - wall
    timing[f"{name}_cpu_s"] = time.process_time() - cpu


def build_task(params: Params, data: PreparedData, model: nn.Module, device: torch.device) -> PruningTask:
    """The search task of one dense model, with the akperl section's subsets and settings."""
    p = params.akperl
    seed = params.data.split_seed
    # calibration and statistics images: disjoint halves of one stratified training subset
    pool = data.train.subset(p.calib_images + p.stats_pool, seed=seed + 1)
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    return PruningTask.build(
        model,
        val=data.val.subset(p.val_images, seed=seed),
        calib_x=pool.x[order[: p.calib_images]],
        stats_x=pool.x[order[p.calib_images :]],
        conditions=p.conditions or params.shift.conditions,
        severity=params.shift.severity,
        power_profile=p.power_profile,
        frame_rate_hz=p.frame_rate_hz,
        energy=p.energy_model,
        min_mac_share=p.min_mac_share,
        round_to=p.round_to,
        device=device,
    )


def _floor(params: Params) -> float | None:
    """The channel-sparsity floor of every episode, or None when the reward alone decides."""
    p = params.akperl
    return p.target_sparsity if p.enforce_target_sparsity else None


def _train(task: PruningTask, params: Params, coefficients: RewardCoefficients, *, seed: int, label: str, live: Path,
           input_stats: bool = True) -> AgentRun:  # fmt: skip
    p = params.akperl
    return train_agent(
        task, coefficients, dqn=p.dqn, steps=p.dqn.steps, seed=seed, label=label, input_stats=input_stats,
        accuracy_every=p.accuracy_every, stats_batch=p.stats_batch, min_sparsity=_floor(params), live_dir=live,
    )  # fmt: skip


def _ablation_metrics(run: AgentRun, task: PruningTask, variant: str) -> dict[str, Any]:
    """Search-time metrics of what a variant would deploy, averaged over conditions.

    With input statistics the policy's configuration for each condition serves that
    condition; without them (``no_stats``: no monitor at run time) the clean
    configuration serves every condition. Accuracy is the BN-recalibrated validation
    accuracy of the evaluator (no fine-tuning), power the modelled relative power.
    """
    rows = []
    for condition in task.conditions:
        source = "clean" if variant == "no_stats" and "clean" in task.conditions else condition
        levels = run.levels(source)
        model = apply_levels(task.model, task.units, levels, task.input_shape)
        key = canonical_key(levels)
        rows.append(
            {
                "acc": 100.0 * task.evaluator(model, condition, key),
                "power": task.power.relative(model, key),
                "sparsity": float(run.policy.set_index("condition").loc[source, "sparsity"]),
            }
        )
    df = pd.DataFrame(rows)
    return {"variant": variant, "seed": run.seed, "val_top1": df.acc.mean(), "power_rel": df.power.mean(),
            "sparsity_pct": 100 * df.sparsity.mean(), "final_R": run.summary()["final_R"],
            "steps_to_99": run.steps_to_99}  # fmt: skip


def _prune_report(method: str, dense: nn.Module, pruned: nn.Module, requested: float) -> prune.PruneReport:
    """A :class:`~edgeprune.prune.PruneReport` measured on ``pruned`` (channel sparsity, parameters, MACs)."""
    return prune.PruneReport(
        method, round(requested, 4), "channels", channel_sparsity(dense, pruned), measure.count_params(dense)[0],
        measure.count_params(pruned)[0], measure.count_macs(dense), measure.count_macs(pruned),
    )  # fmt: skip


@dataclass
class _Search:
    """What the search phase produced."""

    grid: pd.DataFrame
    chosen: RewardCoefficients
    grid_runs: list[AgentRun]
    runs: list[AgentRun]  # one per seed, with the chosen coefficients
    ablation_runs: list[AgentRun]
    controls: dict[int, list[ControlRun]]  # per seed: the equal-budget search controls (akperl.controls)


def _search(params: Params, task_for: Callable[[int], PruningTask], live_root: Path, timing: dict[str, float]) -> _Search:
    """Grid search on the first seed, then one agent per seed and the ablations per ablation seed."""
    p = params.akperl
    first = task_for(p.seeds[0])
    with _timed(timing, "grid"):
        grid, chosen, grid_runs = grid_search(
            first, (p.alpha, p.beta, p.gamma), weights=layer_weights(first.units, p.layer_weights), lam=p.lam,
            target_sparsity=p.target_sparsity, dqn=p.dqn, steps=p.grid_steps, seed=p.seeds[0],
            accuracy_every=p.accuracy_every, stats_batch=p.stats_batch, min_sparsity=_floor(params), live_root=live_root,
        )  # fmt: skip
    runs, ablation_runs = [], []
    with _timed(timing, "agents"):
        for seed in p.seeds:
            if seed == p.seeds[0] and p.grid_steps == p.dqn.steps:  # the grid already trained this agent
                runs.append(replace(next(r for r in grid_runs if r.coefficients == chosen), label="akperl"))
            else:
                live = live_root / f"akperl-s{seed}"
                runs.append(_train(task_for(seed), params, chosen, seed=seed, label="akperl", live=live))
    with _timed(timing, "ablations"):
        for seed in p.ablation_seeds or p.seeds:
            task = task_for(seed)
            for variant in p.ablations:
                coef = replace(
                    chosen,
                    beta=0.0 if variant == "no_power" else chosen.beta,
                    weights=layer_weights(task.units, "uniform" if variant == "uniform" else p.layer_weights),
                )
                ablation_runs.append(
                    _train(task, params, coef, seed=seed, label=variant, input_stats=variant != "no_stats",
                           live=live_root / f"{variant}-s{seed}")  # fmt: skip
                )
    with _timed(timing, "controls"):
        controls = {run.seed: _controls(task_for(run.seed), params, run) for run in runs}
    return _Search(grid, chosen, grid_runs, runs, ablation_runs, controls)


def _controls(task: PruningTask, params: Params, run: AgentRun) -> list[ControlRun]:
    """The seed's search controls, each with the agent's coefficients and as many scored configurations
    as the agent finished episodes (:mod:`edgeprune.akperl.controls`)."""
    p = params.akperl
    condition = "clean" if "clean" in task.conditions else task.conditions[0]  # Table 1's network
    return [
        SEARCHES[name](task, run.coefficients, episodes=len(run.episodes), seed=run.seed, condition=condition,
                       min_sparsity=_floor(params), stats_batch=p.stats_batch)  # fmt: skip
        for name in p.controls
    ]


def _describer(dense: nn.Module, power: PowerModel) -> Callable[[nn.Module], dict[str, float]]:
    """What the stream records about the network that ran a batch."""

    def describe(net: nn.Module) -> dict[str, float]:
        return {
            "sparsity_pct": 100 * channel_sparsity(dense, net),
            "power_mw_modelled": power.summary(net)["power_mw_modelled"],
            "macs": measure.count_macs(net),
        }

    return describe


def _table1_rows(nets: SeedNetworks, test: Split, model_name: str, with_dense: bool) -> list[dict[str, Any]]:
    """Dense (once per dense model), then per recovery budget: the static baselines (:func:`static_methods`)
    at AKPERL's clean sparsity, and AKPERL's clean network."""
    params, run, power = nets.params, nets.run, nets.task.power
    p = params.akperl
    report = dict(conditions=(), severity=params.shift.severity, int8=False, repeats=p.latency_repeats, warmup=2,
                  eval_batch_size=params.train.eval_batch_size, device="cpu", model_name=model_name)  # fmt: skip
    extra = {
        "dense_seed": dense_seed_for(params, run.seed),
        "coefficients": [run.coefficients.alpha, run.coefficients.beta, run.coefficients.gamma, run.coefficients.lam],
    }
    rows = []
    if with_dense:
        rows.append(harness.report(nets.dense, test.x, test.y, method="none", setting="dense", seed=extra["dense_seed"],
                                   extra=power.summary(nets.dense), **report))  # fmt: skip
    s_clean = nets.sparsity(nets.akperl(nets.clean_levels))
    levels = levels_percent(nets.clean_levels)
    latency: dict[tuple, dict] = {}  # per architecture: later budgets reuse the first's timings
    for budget in range(len(params.finetune.budgets)):
        networks = [(m, nets.static(m, s_clean, budget), {}) for m in static_methods(params, nets.dense)]
        networks.append(("akperl", nets.akperl(nets.clean_levels, budget), {"levels": levels}))
        for control in nets.controls:  # same units, same recovery: a network equal to the agent's is shared
            best = control.summary()
            networks.append((f"{control.label}_search", nets.akperl(control.levels, budget),
                             {"levels": levels_percent(control.levels),
                              "search_R": best["R"], "episodes": best["episodes"]}))  # fmt: skip
        for method, net, more in networks:
            setting = "clean-config" if method == "akperl" or method.endswith("_search") else f"s{s_clean:.2f}"
            arch = measure.architecture_key(net)
            row = harness.report(net, test.x, test.y, method=method, setting=setting, seed=run.seed,
                                 pruning=_prune_report(method, nets.dense, net, nets.sparsity(net) if method.endswith("_search") else s_clean),
                                 extra={**power.summary(net), **extra, **more},
                                 **{**report, "latency": arch not in latency})  # fmt: skip
            row |= nets.recovery.columns(budget)
            if arch in latency:
                row |= latency[arch]
            else:
                latency[arch] = {c: row[c] for c in row if c.startswith("latency_")}
            rows.append(row)
    return rows


def _stream(nets: SeedNetworks, test: Split) -> pd.DataFrame:
    """AKPERL switching between its networks vs static networks at its average sparsity, on one seed's stream."""
    p, conditions = nets.params.akperl, list(nets.task.conditions)
    subnets = {name: nets.akperl(levels) for levels, name in nets.names.items()}
    switching = SwitchingNetwork(subnets, {c: nets.names[nets.configs[c]] for c in conditions}, nets.task.reference_stats)
    s_clean = nets.sparsity(nets.akperl(nets.clean_levels))
    s_mean = float(np.mean([nets.sparsity(subnets[nets.names[nets.configs[c]]]) for c in conditions]))
    target = s_clean if abs(s_mean - s_clean) <= SPARSITY_MATCH else s_mean  # reuse Table 1's baselines when as sparse
    methods = {
        "akperl_dynamic": switching,
        "akperl_static": nets.akperl(nets.clean_levels),
        "none": nets.dense,
        **{method: nets.static(method, target) for method in ("l1_filter", "magnitude_structured")},
        **{f"bank:{name}": net for name, net in subnets.items()},  # each network of the controller's bank, static
    }
    stream = make_index_stream(conditions, len(test), segments=p.stream_segments, batches_per_segment=p.stream_batches,
                         batch_size=min(p.stream_batch_size, len(test)), seed=nets.run.seed)  # fmt: skip
    frame = run_stream(methods, stream, test.x, test.y, describe=_describer(nets.dense, nets.task.power),
                       severity=nets.params.shift.severity)  # fmt: skip
    if frame["condition"].nunique() > 1:  # what switching among the bank could gain at best (issue 19)
        frame = hindsight_arms(frame, [f"bank:{name}" for name in subnets])
    frame.insert(0, "seed", nets.run.seed)
    return frame


def run(params: Params, paths: ResultPaths, model_name: str) -> dict[str, Any]:
    """Run the whole stage for ``model_name``; write its files under ``results/akperl/<model>/``."""
    wall, cpu = time.perf_counter(), time.process_time()
    p = params.akperl
    threads = set_threads(params.num_threads)
    device = resolve_device(params.device)
    out = out_dir(paths, model_name)
    data = load_prepared(paths.prepared)
    recovery = Recovery(params.finetune, data.train, device=device)
    test = data.test.subset(p.eval_images, seed=params.data.split_seed)
    tasks: dict[int, PruningTask] = {}
    dense_models: dict[int, nn.Module] = {}

    def task_for(seed: int) -> PruningTask:
        d = dense_seed_for(params, seed)
        if d not in tasks:
            dense_models[d] = load_dense(paths, model_name, d)
            tasks[d] = build_task(params, data, dense_models[d], device)
        return tasks[d]

    timing: dict[str, float] = {}
    search = _search(params, task_for, paths.dvclive(STAGE, model_name), timing)
    rows, frames = [], []
    with _timed(timing, "networks_and_measurement"):
        for run_ in search.runs:
            d = dense_seed_for(params, run_.seed)
            nets = SeedNetworks(params, run_, task_for(run_.seed), dense_models[d], recovery, search.controls[run_.seed])
            with_dense = not any(r["method"] == "none" and r["seed"] == d for r in rows)
            rows += _table1_rows(nets, test, model_name, with_dense=with_dense)
            if run_.seed == p.seeds[0]:  # kept for the device-power stage (first seed, as in 20_baselines)
                save_module(nets.akperl(nets.clean_levels), out / "models" / "akperl-clean-config.pt")
            if run_.seed in (p.stream_seeds or p.seeds):
                frames.append(_stream(nets, test))

    with _timed(timing, "ablation_metrics"):
        ablations = pd.DataFrame(
            [_ablation_metrics(r, task_for(r.seed), "full") for r in search.runs]
            + [_ablation_metrics(r, task_for(r.seed), r.label) for r in search.ablation_runs]
        )
    table_path = paths.method_rows(STAGE, model_name)
    table_path.unlink(missing_ok=True)  # this stage owns its table: a re-run replaces it whole
    results.append_rows(table_path, rows)
    every = [*search.grid_runs, *search.runs, *search.ablation_runs]
    write_csv_atomic(search.grid, out / "grid.csv")
    write_csv_atomic(pd.DataFrame([r.summary() for r in [*search.runs, *search.ablation_runs]]), out / "runs.csv")
    write_csv_atomic(pd.concat([r.episodes.assign(label=r.label, seed=r.seed) for r in every]), out / "episodes.csv")
    write_csv_atomic(pd.concat([r.policy.assign(label=r.label, seed=r.seed) for r in every]), out / "policies.csv")
    write_csv_atomic(ablations, out / "ablations.csv")
    controls = [c for runs_ in search.controls.values() for c in runs_]
    write_csv_atomic(pd.DataFrame([c.summary() for c in controls], columns=CONTROL_COLUMNS), out / "controls.csv")
    write_csv_atomic(pd.concat(frames, ignore_index=True), out / "stream.csv")
    write_csv_atomic(pd.DataFrame([asdict(u) for u in task_for(p.seeds[0]).units]), out / "units.csv")
    timing["total_s"], timing["total_cpu_s"] = time.perf_counter() - wall, time.process_time() - cpu
    chosen = search.chosen
    summary = {
        "model": model_name,
        "coefficients": {"alpha": chosen.alpha, "beta": chosen.beta, "gamma": chosen.gamma, "lambda": chosen.lam},
        "steps_to_99": {str(r.seed): r.steps_to_99 for r in search.runs},
        "steps_per_run": p.dqn.steps,
        "accuracy_evaluations": {str(d): t.evaluator.evaluations for d, t in tasks.items()},
        "accuracy_eval_seconds": {str(d): round(t.evaluator.seconds, 1) for d, t in tasks.items()},
        "threads": threads,
        "device": str(device),
        "timing_s": {k: round(v, 1) for k, v in timing.items()},
    }
    write_json_atomic(out / "summary.json", summary)
    return summary
