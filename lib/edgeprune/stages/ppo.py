"""Stage 50_ppo_prune_quant: PPO picks a prune rate and a bit-width per layer.

For one model, once per dense model (dense seed):

1. score channels by first-order Taylor importance on a few training batches;
2. evaluate the static baseline grid (one prune rate everywhere, every layer at 8 bits)
   and pick its densest configuration meeting the accuracy floor, confirmed on the
   selection images (validation images the search never sees);

then per seed (agent, fine-tuning subset and order):

3. train PPO over :class:`~edgeprune.envs.prune_quant.PruneQuantEnv` and extract the
   policy: the ``ppo.finalists`` densest configurations found that meet the floor are
   re-scored on the selection images, and the densest one still meeting it there is
   chosen (:func:`edgeprune.ppo.agent.select_policy`);
4. retrain the chosen structure twice with the shared ``finetune`` budget: fine-tuning
   from the final dense weights, and lottery-ticket rewinding (the same channels, the
   early weights of ``rewind.pt``); fine-tune the static choice like the first. Each
   retraining re-estimates BN statistics first when channels were removed and, with
   ``ppo.qat``, is quantization-aware (:func:`edgeprune.ppo.retrain.retrain`);
5. KL-calibrate and fake-quantize each at its bit-widths and report it on the test
   split (:func:`edgeprune.measure.report`): top-1 of the simulated k-bit model and
   size with every weight at its bit-width; real int8 conversion and latency of the
   float pruned model.

Rows: method ``ppo`` (settings ``policy-ft``, ``policy-lth``) and ``static_pq``
(setting ``uniform-8bit``). A finished seed is checkpointed, so an interrupted run
resumes with the next one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from dvclive import Live
from torch import nn

from edgeprune import fakequant, measure, results, stats
from edgeprune.checkpoints import dense_seed_for, load_dense
from edgeprune.data import PreparedData, load_prepared, normalize
from edgeprune.envs.prune_quant import Episode, PruneQuantEnv, density_reward
from edgeprune.io import atomic_write, read_json, save_module, write_csv_atomic, write_json_atomic
from edgeprune.paths import ResultPaths
from edgeprune.ppo.agent import Finalist, greedy_episode, log_episodes, select_policy, train_agent
from edgeprune.ppo.controls import random_search
from edgeprune.ppo.pruning import taylor_groups
from edgeprune.ppo.retrain import retrain
from edgeprune.ppo.search import BYTES_PER_MB, CompressionSearch, Outcome
from edgeprune.prune import PruneReport
from edgeprune.recover.protocol import Recovery
from edgeprune.placement import place, resolve_device
from edgeprune.train import evaluate, set_threads

if TYPE_CHECKING:
    from edgeprune.config import Params

STAGE = "ppo"
STATIC_BITS = 8
_HARDWARE_COLUMNS = ("int8_", "latency_", "layout", "cpu_load_1min")
# Targets of the issue (paper profile): >= 10x smaller than the fp32 dense model at
# <= 1.5 points top-1 loss, with performance density >= 1.2x the static baseline's.
TARGETS = {"size_reduction": (">=", 10.0), "top1_loss": ("<=", 1.5), "density_ratio": (">=", 1.2)}


def out_dir(paths: ResultPaths, model_name: str) -> Path:
    return paths.method_rows(STAGE, model_name).parent


def checkpoint_path(paths: ResultPaths, model_name: str, seed: int) -> Path:
    return paths.root / "checkpoints" / STAGE / model_name / f"s{seed}.json"


# --------------------------------------------------------------------------- per dense model


class DenseContext:
    """What every seed of one dense model shares: weights, Taylor groups, search cache, static choice."""

    def __init__(self, params: Params, paths: ResultPaths, data: PreparedData, model_name: str, dense_seed: int):
        cfg, device = params.ppo, resolve_device(params.device)
        self.model_name, self.dense_seed = model_name, dense_seed
        self.final = load_dense(paths, model_name, dense_seed, "model")
        self.rewind = load_dense(paths, model_name, dense_seed, "rewind")
        taylor = data.train.subset(cfg.taylor_images, seed=0)
        self.calib = data.train.subset(cfg.calib_images, seed=1)
        self.recovery = Recovery(params.finetune, data.train, device=device)
        val, unseen = data.val.split(cfg.search_val_images, seed=0)
        if len(unseen) == 0:
            raise ValueError(
                f"ppo.search_val_images ({cfg.search_val_images}) takes all {len(data.val)} validation images: "
                "none are left to re-score the finalists"
            )
        self.select = unseen.subset(cfg.select_val_images, seed=0)
        self.groups = taylor_groups(self.final, taylor.x, taylor.y)
        self.search = CompressionSearch(
            self.final, self.groups, self.calib.x, val.x, val.y,
            round_to=cfg.round_to, kl_bins=cfg.kl_bins, kl_stride=cfg.search_kl_stride,
            batch_size=cfg.batch_size, device=device,
        )  # fmt: skip
        dense_top1 = self.search.reference.top1
        self.floor = cfg.accuracy_floor if cfg.accuracy_floor is not None else dense_top1 - cfg.max_accuracy_drop
        if self.floor > dense_top1:
            raise ValueError(
                f"ppo.accuracy_floor {self.floor:.2f}% is above the dense {model_name} (seed {dense_seed}) "
                f"top-1 {dense_top1:.2f}% on the search subset"
            )
        reference = self.search.reference
        self.static_grid = []
        for rate in cfg.prune_rates:
            outcome = self.search.uniform(rate, STATIC_BITS)
            self.static_grid.append(
                Episode(
                    (rate,) * len(self.groups), (STATIC_BITS,) * len(self.search.layers), outcome,
                    density_reward(outcome, reference, self.floor, cfg.penalty), outcome.top1 >= self.floor,
                )  # fmt: skip
            )
        self._rescored: dict[tuple, float] = {}
        self.select_dense_top1 = self.search.dense_top1_on(self.select.x, self.select.y)
        self.select_floor = (
            cfg.accuracy_floor if cfg.accuracy_floor is not None else self.select_dense_top1 - cfg.max_accuracy_drop
        )
        self.static, self.static_finalists = select_policy(
            self.static_grid, self.rescore, self.select_floor, finalists=len(self.static_grid)
        )
        self.test = data.test.subset(cfg.eval_images, seed=0)
        top1 = evaluate(self.final, self.test.x, self.test.y, batch_size=cfg.batch_size, device=device)
        self.dense_test = Outcome(top1, reference.size_bytes, reference.params)
        self.fingerprint = _fingerprint(params, paths, model_name, dense_seed)

    def rescore(self, episode: Episode) -> float:
        """Top-1 of an episode's compressed model on the selection images (unseen by the search),
        once per configuration: the static grid and every seed's finalists often share one."""
        key = (episode.rates, episode.bits)
        if key not in self._rescored:
            self._rescored[key] = self.search.top1_on(episode.rates, episode.bits, self.select.x, self.select.y)
        return self._rescored[key]


def _fingerprint(params: Params, paths: ResultPaths, model_name: str, dense_seed: int) -> str:
    """Hash of everything a seed's record depends on: params, dense weights and this method's code
    (so a checkpoint made by other code is never resumed)."""
    keys = {name: getattr(params, name).model_dump() for name in ("ppo", "finetune", "shift")}
    digest = hashlib.sha1(json.dumps(keys, sort_keys=True).encode())
    for which in ("model", "rewind"):
        digest.update((paths.dense(model_name, dense_seed) / f"{which}.pt").read_bytes())
    package = Path(__file__).resolve().parents[1]
    sources = [
        *package.glob("ppo/*.py"), *package.glob("recover/*.py"), package / "envs" / "prune_quant.py",
        package / "fakequant.py", package / "train.py", Path(__file__),
    ]  # fmt: skip
    for source in sorted(sources):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- per seed


def _width(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def _prune_report(method: str, dense: nn.Module, pruned: nn.Module, ctx: DenseContext) -> PruneReport:
    """Measured channel sparsity (over the prunable groups' layers), parameters and MACs."""
    members = [name for group in ctx.groups for name in group.members]
    before, after = fakequant.quantized_layers(dense), fakequant.quantized_layers(pruned)
    realised = 1.0 - sum(_width(after[n]) for n in members) / sum(_width(before[n]) for n in members)
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
    """One tidy row of a network recovered at ``budget``: accuracy and size of the KL-calibrated
    fake-quantized model; with ``hardware``, int8 conversion and latency of the float pruned
    model (k-bit layers have no kernels here)."""
    cfg, device = params.ppo, resolve_device(params.device)
    model = place(model, device).eval()
    calib = normalize(ctx.calib.x).to(device)
    acts = fakequant.calibrate(model, calib, bits, bins=cfg.kl_bins, batch_size=cfg.batch_size)
    simulated = fakequant.quantize_model(model, bits, acts)
    shift = [c for c in params.shift.conditions if c != "clean"] if cfg.evaluate_shift else []
    common = dict(model_name=ctx.model_name, method=method, setting=setting, seed=seed, eval_batch_size=cfg.batch_size)
    row = measure.report(
        simulated, ctx.test.x, ctx.test.y, **common, device=device, conditions=shift, severity=params.shift.severity,
        pruning=_prune_report(method, ctx.final, model, ctx), bits=fakequant.weight_bits(bits),
        int8=False, latency=False,
    )  # fmt: skip
    measured = measure.report(
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
    }
    return row | ctx.recovery.columns(budget)


def _episode_json(e: Episode) -> dict[str, Any]:
    return {"rates": list(e.rates), "bits": list(e.bits), **asdict(e.outcome), "density": e.outcome.density,
            "reward": e.reward, "feasible": e.feasible}  # fmt: skip


def _episode_from_json(obj: dict[str, Any]) -> Episode:
    outcome = Outcome(obj["top1"], obj["size_bytes"], obj["params"])
    return Episode(tuple(obj["rates"]), tuple(obj["bits"]), outcome, obj["reward"], obj["feasible"])


def _select_top1(finalists: list[Finalist], chosen: Episode) -> float:
    return next(f.top1 for f in finalists if f.episode is chosen)


def _finalists_json(finalists: list[Finalist]) -> list[dict[str, Any]]:
    return [{**_episode_json(f.episode), "select_top1": f.top1, "confirmed": f.confirmed} for f in finalists]


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
            "out_channels_kept": _width(after[layer.name]),
            "params": layer.params,
        }
        for layer, b in zip(ctx.search.layers, chosen.bits, strict=True)
    ]


def kept_model_path(paths: ResultPaths, model_name: str, seed: int) -> Path:
    """Where a seed's fine-tuned PPO network is kept beside its checkpoint (survives a resumed run)."""
    return checkpoint_path(paths, model_name, seed).with_name(f"s{seed}-ppo-policy-ft.pt")


def run_seed(params: Params, data: PreparedData, ctx: DenseContext, seed: int, keep: Path | None = None) -> dict[str, Any]:
    """Search, retrain and report one seed; returns its record (JSON-serialisable).

    With ``keep``, the fine-tuned PPO network is saved there (for the device-power stage).
    """
    cfg = params.ppo
    timings = {}
    tic = time.perf_counter()
    evaluations = ctx.search.evaluations
    env = PruneQuantEnv(
        ctx.search, prune_rates=cfg.prune_rates, bits=cfg.bits, accuracy_floor=ctx.floor, penalty=cfg.penalty
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

    tic = time.perf_counter()  # the equal-budget control: as many random configurations, the same choice rule
    control_env = PruneQuantEnv(
        ctx.search, prune_rates=cfg.prune_rates, bits=cfg.bits, accuracy_floor=ctx.floor, penalty=cfg.penalty
    )
    randoms = random_search(control_env, episodes=len(env.episodes), seed=seed) if cfg.controls else []
    random_chosen, random_finalists = (
        select_policy(randoms, ctx.rescore, ctx.select_floor, cfg.finalists) if randoms else (None, [])
    )
    timings["control_search_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    bits, static_bits = ctx.search.bits_map(chosen.bits), ctx.search.bits_map(ctx.static.bits)
    plan, static_plan = ctx.search.plan(chosen.rates), ctx.search.plan(ctx.static.rates)
    common = dict(seed=seed, teacher=ctx.final, qat=cfg.qat)
    budgets = range(len(params.finetune.budgets))  # the budget axis: fine-tuned PPO and static at every budget
    tuned = [retrain(ctx.final, plan, bits, ctx.recovery, budget=b, **common) for b in budgets]
    static = [retrain(ctx.final, static_plan, static_bits, ctx.recovery, budget=b, **common) for b in budgets]
    rewound = retrain(ctx.rewind, plan, bits, ctx.recovery, lr=cfg.rewind_lr, **common)
    timings["retrain_s"] = time.perf_counter() - tic
    tic = time.perf_counter()
    if random_chosen is not None:
        random_bits, random_plan = ctx.search.bits_map(random_chosen.bits), ctx.search.plan(random_chosen.rates)
        randomised = [retrain(ctx.final, random_plan, random_bits, ctx.recovery, budget=b, **common) for b in budgets]
    timings["control_retrain_s"] = time.perf_counter() - tic

    tic = time.perf_counter()
    common = dict(seed=seed, ctx=ctx, params=params)
    searched = {
        "search_top1": chosen.outcome.top1, "search_size_bytes": chosen.outcome.size_bytes,
        "select_top1": _select_top1(finalists, chosen),
    }  # fmt: skip
    static_extra = {
        "prune_rate": ctx.static.rates[0], "search_top1": ctx.static.outcome.top1,
        "select_top1": _select_top1(ctx.static_finalists, ctx.static), "retrain": "fine-tune",
    }  # fmt: skip
    rows = []
    for b in budgets:  # hardware columns once per architecture: at the primary budget
        rows += [
            _report(tuned[b], bits, method="ppo", setting="policy-ft", **common, budget=b, hardware=b == 0,
                    extra={**searched, "retrain": "fine-tune"}),
            _report(static[b], static_bits, method="static_pq", setting="uniform-8bit", **common, budget=b,
                    hardware=b == 0, extra=static_extra),
        ]  # fmt: skip
    rows.append(
        _report(
            rewound, bits, method="ppo", setting="policy-lth", **common, budget=0, hardware=False,
            extra={**searched, "retrain": "rewind", "hardware": "same architecture as policy-ft: see that row"},
        )
    )  # fmt: skip
    if random_chosen is not None:
        random_extra = {"search_top1": random_chosen.outcome.top1, "search_size_bytes": random_chosen.outcome.size_bytes,
                        "select_top1": _select_top1(random_finalists, random_chosen), "retrain": "fine-tune",
                        "episodes": len(randoms)}  # fmt: skip
        rows += [
            _report(randomised[b], random_bits, method="random_search", setting="random-ft", **common, budget=b,
                    hardware=b == 0, extra=random_extra)  # fmt: skip
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
        "episodes": [_episode_json(e) for e in env.episodes],
        "greedy": _episode_json(greedy),
        "chosen": _episode_json(chosen),
        "static": _episode_json(ctx.static),
        "select_floor": ctx.select_floor,
        "select_dense_top1": ctx.select_dense_top1,
        "finalists": _finalists_json(finalists),
        "static_finalists": _finalists_json(ctx.static_finalists),
        "random_chosen": _episode_json(random_chosen) if random_chosen is not None else None,
        "random_finalists": _finalists_json(random_finalists),
        "plan": plan.to_json(),
        "policy": _policy_table(ctx, chosen, tuned[0]),
        "rows": rows,
        "timings": {k: round(v, 2) for k, v in timings.items()},
    }


# --------------------------------------------------------------------------- stage


def _resume(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """A finished seed's record, if it was made with the same params and dense weights."""
    if not path.is_file():
        return None
    record = read_json(path)
    return record if record.get("fingerprint") == fingerprint else None


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
        record = _resume(checkpoint_path(paths, model_name, seed), ctx.fingerprint)
        if record is None or (keep is not None and not keep.is_file()):
            record = run_seed(params, data, ctx, seed, keep)
            write_json_atomic(checkpoint_path(paths, model_name, seed), record)
        records.append(record)
        live_dir = paths.dvclive(STAGE, model_name) / f"s{seed}"
        with Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None) as live:
            log_episodes(live, [_episode_from_json(e) for e in record["episodes"]])
        keys = (
            "seed", "dense_seed", "accuracy_floor", "dense_search", "chosen", "greedy", "static", "select_floor",
            "select_dense_top1", "finalists", "static_finalists", "random_chosen", "random_finalists", "plan", "policy",
        )  # fmt: skip
        write_json_atomic(out / f"s{seed}" / "policy.json", {k: record[k] for k in keys})
        write_csv_atomic(pd.DataFrame(record["episodes"]).rename_axis("episode"), out / f"s{seed}" / "episodes.csv", index=True)
    with atomic_write(out / "models" / "ppo-policy-ft.pt") as tmp:  # kept for the device-power stage
        shutil.copyfile(kept_model_path(paths, model_name, cfg.seeds[0]), tmp)
    rows_path = paths.method_rows(STAGE, model_name)
    rows_path.unlink(missing_ok=True)  # a re-run replaces the rows, never mixes with an old run's
    results.append_rows(rows_path, [row for record in records for row in record["rows"]])
    comparison = compare(records, penalty=cfg.penalty)
    write_csv_atomic(comparison, out / "comparison.csv")
    grid = [
        {"dense_seed": d, "prune_rate": e.rates[0], "bits": STATIC_BITS, **_episode_json(e)}
        for d, ctx in contexts.items()
        for e in ctx.static_grid
    ]
    write_csv_atomic(pd.DataFrame(grid).drop(columns=["rates"]), out / "static_grid.csv")
    summary = summarise(comparison, model_name, time.perf_counter() - tic, records)
    write_json_atomic(out / "summary.json", summary)
    return summary


def compare(records: list[dict[str, Any]], penalty: float = 1.0) -> pd.DataFrame:
    """Per seed and recovery budget: PPO (fine-tuned; rewound at the primary budget) against the
    static baseline and the random-search control recovered at the same budget, and the dense model.

    ``*_reward`` is PPO's own objective on the test split after recovery: density relative to the
    dense model's, minus ``penalty`` per point below the accuracy floor (the dense test top-1 less
    the drop the search allowed). Density alone would reward a control whose pick broke the floor
    (a random search that finds no feasible configuration keeps its most accurate one, however bad)."""
    table = []
    for record in records:
        rows = {(r["method"], r["setting"], int(r["budget"])): r for r in record["rows"]}
        lth = rows["ppo", "policy-lth", 0]
        for budget in sorted({key[2] for key in rows}):
            ft, static = rows["ppo", "policy-ft", budget], rows["static_pq", "uniform-8bit", budget]
            control = rows.get(("random_search", "random-ft", budget))
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
                    "ppo_sparsity": ft["sparsity_realised"],
                    "ppo_density": ft["extra"]["density_pct_per_mb"],
                    "static_prune_rate": static["extra"]["prune_rate"],
                    "static_top1": static["top1"],
                    "static_size_mb": static["size_bytes"] / BYTES_PER_MB,
                    "static_density": static["extra"]["density_pct_per_mb"],
                    "lth_top1": lth["top1"] if primary else float("nan"),
                    "lth_density": lth["extra"]["density_pct_per_mb"] if primary else float("nan"),
                    "ft_top1_float": ft["extra"]["top1_float"],
                    "lth_top1_float": lth["extra"]["top1_float"] if primary else float("nan"),
                    "random_top1": control["top1"] if control else float("nan"),
                    "random_density": control["extra"]["density_pct_per_mb"] if control else float("nan"),
                }
            )
    df = pd.DataFrame(table)
    df["density_ratio"] = df.ppo_density / df.static_density
    df["density_gain_pct"] = 100 * (df.density_ratio - 1)
    df["top1_gap_vs_static"] = df.ppo_top1 - df.static_top1
    df["size_reduction"] = df.dense_size_mb / df.ppo_size_mb
    df["top1_loss"] = df.dense_top1 - df.ppo_top1
    df["lth_minus_ft_top1"] = df.lth_top1 - df.ppo_top1
    df["density_gain_vs_random_pct"] = 100 * (df.ppo_density / df.random_density - 1)
    floor = df.dense_top1 - df.allowed_drop
    dense_density = df.dense_top1 / df.dense_size_mb
    for arm in ("ppo", "random"):
        df[f"{arm}_reward"] = df[f"{arm}_density"] / dense_density - penalty * (floor - df[f"{arm}_top1"]).clip(lower=0)
    df["reward_gain_vs_random"] = df.ppo_reward - df.random_reward
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
        "metrics": metrics,
        "targets": targets,
        "budget_axis": axis,
        "stage_seconds": round(seconds, 1),
        "seed_timings": {str(r["seed"]): r["timings"] for r in records},
    }


# --------------------------------------------------------------------------- notebook helpers


def load_outputs(paths: ResultPaths, model_name: str) -> dict[str, Any]:
    """Everything the stage wrote for one model, as DataFrames / dicts."""
    out = out_dir(paths, model_name)
    summary = read_json(out / "summary.json")
    seeds = summary["seeds"]
    return {
        "rows": results.read_table(paths.method_rows(STAGE, model_name)),
        "comparison": pd.read_csv(out / "comparison.csv"),
        "static_grid": pd.read_csv(out / "static_grid.csv"),
        "summary": summary,
        "policies": {s: read_json(out / f"s{s}" / "policy.json") for s in seeds},
        "episodes": {s: pd.read_csv(out / f"s{s}" / "episodes.csv") for s in seeds},
    }


def budget_axis(comparison: pd.DataFrame) -> pd.DataFrame:
    """PPO against the static baseline (and the equal-budget random-search control, when it ran) at every
    recovery budget: density gains, top-1s and PPO's loss against dense, mean ± 95% CI over seeds, one
    column per budget."""
    metrics = ["density_gain_pct", "reward_gain_vs_random", "density_gain_vs_random_pct", "ppo_top1", "static_top1",
               "random_top1", "top1_loss"]
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
    for dense_seed, df in grid.groupby("dense_seed"):
        ax.plot(df.size_bytes / BYTES_PER_MB, df.top1, "k-o", ms=4, label=f"static uniform 8-bit (dense s{dense_seed})")
    for seed, policy in outputs["policies"].items():
        ax.scatter(policy["chosen"]["size_bytes"] / BYTES_PER_MB, policy["chosen"]["top1"], marker="*", s=150,
                   edgecolor="k", label=f"chosen, seed {seed}")  # fmt: skip
    ax.axhline(next(iter(outputs["policies"].values()))["accuracy_floor"], color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set(xlabel="stored MB (real bit-widths, log)", ylabel="search top-1 (%, BN-recalibrated, no fine-tuning)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    ax.set_title(f"{model_name}: accuracy vs size during the search", fontsize=10)
    fig.tight_layout()
    return fig
