"""The AKPERL stage's work (30_akperl_dqn): DQN searches, controls, recoveries and the stream."""

from __future__ import annotations

import math

from edgeprune.checkpoints import dense_seed_for
from edgeprune.bench.plan.rules import latency_figures, models_text, recover, report_row, steps_text, subset
from edgeprune.bench.plan.work import Context, StagePlan, Work

__all__ = ["akperl_stage"]

AKPERL_LEVELS = 5  # edgeprune.akperl.units.LEVELS: 0, 25, 50, 75, 100 %
# A-priori estimate (not measured, not fitted): Stable-Baselines3's own work per step, small next to
# the pruning and evaluation it drives.
DQN_UPDATE_S = 0.003  # Stable-Baselines3 DQN: one replay minibatch update of a small MLP plus its step bookkeeping


def akperl_stage(ctx: Context) -> StagePlan:
    """30_akperl_dqn, one item per model (``edgeprune.stages.akperl.run``).

    Search: the grid (one DQN run per alpha x beta x gamma, ``grid_steps`` each), one run per seed
    (the first seed's reused from the grid when ``grid_steps == dqn.steps``), one per ablation seed x
    ablation. A run of S steps is S / units episodes plus one greedy roll-out per condition; every
    ``accuracy_every``-th step and every episode's end scores accuracy (BatchNorm re-estimated on
    ``calib_images``, top-1 on ``val_images``) unless the task's cache knows the configuration: counted
    with the cache's structural bound only (:func:`_akperl_evaluations`), so an upper bound.
    Controls (``akperl.controls``): per seed as many random configurations as the agent finished
    episodes, each pruned and scored once. Networks: per seed and budget, L1, magnitude, AKPERL's
    clean network and each control's best recovered and measured (Table 1); on a stream seed at
    most one more network per condition and two statics at the stream's sparsity, recovered at the
    primary budget, and five methods plus the bank (each of the controller's networks alone) run
    the stream.
    """
    a = ctx.params.akperl
    if a is None:
        return StagePlan("akperl", 0, "no akperl section", {})
    work, steps = {}, []
    for model in a.models:
        work[model], steps = _akperl_model(ctx, max(1, ctx.facts[model].akperl_units))
    first = next(iter(work.values()), Work())
    n_runs = len(a.alpha) * len(a.beta) * len(a.gamma) + len(a.seeds) - int(a.grid_steps == a.dqn.steps)
    n_runs += len(a.ablation_seeds or a.seeds) * len(a.ablations)
    count = (f"{n_runs} DQN runs, {first.akperl_episodes:,.0f} episodes; {first.recoveries} recoveries ({steps_text(steps)}"
             f" steps) x {models_text(len(a.models))}")  # fmt: skip
    return StagePlan("akperl", len(a.models), count, work)


def _akperl_model(ctx: Context, units: int) -> tuple[Work, list[int]]:
    """One model's AKPERL work (see :func:`akperl_stage`) and its recoveries' steps."""
    p, a, sizes = ctx.params, ctx.params.akperl, ctx.sizes
    conditions = len(a.conditions or p.shift.conditions)
    n_test = subset(a.eval_images, sizes.test)
    accuracy_images = min(a.calib_images, sizes.train) + subset(a.val_images, sizes.val)
    n_ablation = len(a.ablation_seeds or a.seeds) * len(a.ablations)
    w, steps = Work(data_loads=1), []
    tasks: dict[int, list[int]] = {}  # dense seed -> steps of the runs on its task (they share its accuracy cache)
    first = dense_seed_for(p, a.seeds[0])
    tasks.setdefault(first, []).extend([a.grid_steps] * len(a.alpha) * len(a.beta) * len(a.gamma))
    for seed in a.seeds[int(a.grid_steps == a.dqn.steps):]:
        tasks.setdefault(dense_seed_for(p, seed), []).append(a.dqn.steps)
    for seed in a.ablation_seeds or a.seeds:
        tasks.setdefault(dense_seed_for(p, seed), []).extend([a.dqn.steps] * len(a.ablations))
    w.prunes += len(tasks)  # find_units traces one dependency graph per task
    for runs in tasks.values():
        episodes = sum(math.ceil(s / units) + conditions for s in runs)  # training episodes, greedy roll-outs
        w.akperl_episodes += episodes
        w.eval_images += _akperl_evaluations(units, conditions, a.accuracy_every, episodes) * accuracy_images
        w.fixed_s += sum(runs) * DQN_UPDATE_S
    w.akperl_episodes += (len(a.seeds) + n_ablation) * conditions  # ablation metrics: apply_levels per condition
    # the controls (akperl.controls), per seed, each configuration scored once at its end (new
    # configurations: no cache hits): random, as many as the agent finished training episodes; greedy,
    # every unit alone at three levels and the allocation
    per_seed = {"random": math.ceil(a.dqn.steps / units), "greedy": 3 * units + 1}
    controls = len(a.seeds) * sum(per_seed[name] for name in a.controls)
    w.akperl_episodes += controls
    w.eval_images += controls * accuracy_images
    networks = 3 + len(a.controls)  # L1 and magnitude at AKPERL's clean sparsity, AKPERL's network, each control's
    for seed in a.seeds:
        for b in range(len(p.finetune.budgets)):
            for _net in range(networks):
                w.prunes += 1
                steps.append(recover(w, p, b, sizes.train))
                report_row(w, n_test)
        for _arch in range(networks):  # later budgets reuse the first's timings
            latency_figures(w, 2, a.latency_repeats)
        if seed in (a.stream_seeds or a.seeds):
            extra = (conditions - 1) + 2  # at most: each other condition's configuration, two statics at the mean sparsity
            w.prunes += extra
            steps += [recover(w, p, 0, sizes.train) for _ in range(extra)]
            batch = min(a.stream_batch_size, n_test)
            methods = 5 + conditions  # switching, AKPERL static, dense, L1, magnitude; the bank (one per configuration, at most)
            w.eval_images += methods * (a.stream_segments * a.stream_batches + 1) * batch  # one warm-up batch each
    for _d in {dense_seed_for(p, s) for s in a.seeds}:  # the dense row, once per dense model
        report_row(w, n_test, latency=(2, a.latency_repeats))
    return w, steps


def _akperl_evaluations(units: int, conditions: int, every: int, episodes: int) -> int:
    """Accuracy evaluations on one task: every ``every``-th step of an episode and its last one,
    cached by (condition, levels so far), so depth t holds at most conditions x 5^t distinct
    prefixes and at most one per episode; plus the dense network per condition."""
    depths = sorted({*range(every, units + 1, every), units})
    return conditions + sum(min(conditions * AKPERL_LEVELS**t, episodes) for t in depths)
