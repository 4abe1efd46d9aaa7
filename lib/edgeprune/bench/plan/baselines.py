"""The baselines stage's work (20_baselines): pruned, recovered and measured per method, sparsity and budget."""

from __future__ import annotations

import copy

from edgeprune.checkpoints import dense_seed_for
from edgeprune.recover.protocol import schedule
from edgeprune.bench.plan.rules import latency_figures, recover, report_row, seeds_text, shift_conditions, steps_text, subset
from edgeprune.bench.plan.work import Context, StagePlan, Work

__all__ = ["baselines_stage"]


def baselines_stage(ctx: Context) -> StagePlan:
    """20_baselines, one item per model (``edgeprune.stages.baselines.run``).

    Per seed: the dense row, then every method x sparsity pruned, recovered at the primary budget
    (and at every budget on the axis: ``axis_methods`` x ``axis_sparsities``) and measured: clean and
    shifted top-1 and an int8 copy at the primary budget, clean top-1 only on the axis. Prunes are
    cached per dense model, latency per architecture (unstructured masks share the dense one). An
    unreachable sparsity would skip its rows: counted here as reached. ``l1_regularised`` first trains
    each dense model with its L1 penalty for ``baselines.slimming.budget``.
    """
    p, cfg, sizes = ctx.params, ctx.params.baselines, ctx.sizes
    if cfg is None:
        return StagePlan("baselines", len(p.train.models), "no baselines section", {})
    n_eval, shifts = subset(cfg.eval_images, sizes.test), shift_conditions(p)
    jobs = [(m, s) for m in cfg.methods for s in cfg.sparsities]
    budgets = range(len(p.finetune.budgets))
    one, steps = Work(data_loads=1), []
    dense_models = len({dense_seed_for(p, s) for s in cfg.seeds})
    one.prunes += dense_models * len(jobs)
    if "l1_regularised" in cfg.methods:  # network slimming's L1-penalised training, once per dense model
        slimming = schedule(cfg.slimming.budget, sizes.train, p.finetune.batch_size)
        one.train_images += dense_models * slimming.steps * slimming.batch_size  # SGD on the dense network as trained
    for _seed in cfg.seeds:
        report_row(one, n_eval, conditions=shifts, int8=cfg.int8, calib=cfg.calib_images)  # the dense row
        for method, sparsity in jobs:
            on_axis = sparsity in cfg.axis_sparsities and method in (cfg.axis_methods or cfg.methods)
            for b in budgets if on_axis else [0]:
                kind = "masked" if method == "magnitude_unstructured" else "pruned"
                steps.append(recover(one, p, b, sizes.train, kind))
                primary = b == 0
                report_row(one, n_eval, conditions=shifts if primary else 0, int8=cfg.int8 and primary, calib=cfg.calib_images)
    structured = sum(m != "magnitude_unstructured" for m in cfg.methods)
    for _arch in range(1 + structured * len(cfg.sparsities)):
        latency_figures(one, cfg.latency_warmup, cfg.latency_repeats, int8=cfg.int8)
    count = (f"{seeds_text(len(cfg.seeds))} x {len(jobs)} settings: {one.recoveries} recoveries ({steps_text(steps)} steps"
             f" of {p.finetune.batch_size}), {one.rows} rows, {one.int8_copies} int8 copies")  # fmt: skip
    return StagePlan("baselines", len(p.train.models), count, {m: copy.deepcopy(one) for m in p.train.models})
