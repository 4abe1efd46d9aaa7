"""The PPO stage's work (50_ppo_prune_quant): search evaluations, retraining at every budget, measured rows."""

from __future__ import annotations

from edgeprune.checkpoints import dense_seed_for
from edgeprune.bench.plan.rules import models_text, recover, report_row, seeds_text, shift_conditions, subset
from edgeprune.bench.plan.work import Context, StagePlan, Work
from edgeprune.recover.params import Budget
from edgeprune.recover.protocol import schedule

__all__ = ["ppo_stage"]

# A-priori estimates (not measured, not fitted): Stable-Baselines3's own work per step, small next to
# the pruning and evaluation it drives.
PPO_STEP_S = 0.001  # Stable-Baselines3 PPO: one policy forward and rollout-buffer step (one layer of an episode)
PPO_MINIBATCH_S = 0.004  # one PPO minibatch update (one episode's steps)


def ppo_stage(ctx: Context) -> StagePlan:
    """50_ppo_prune_quant, one item per model (``edgeprune.stages.ppo.run``).

    Per dense model: Taylor scores on ``taylor_images`` (a forward and backward pass each), the
    static grid (one uniform rate and bit-width per pair of prune rates x bits), the selection and test references. Per
    seed: ``episodes`` search evaluations and the greedy one, each counted as new (the oracle's cache
    hits are not subtracted: an upper bound): the network pruned, BatchNorm re-estimated and every
    layer's input histogrammed on ``calib_images``, a KL threshold and weight clip ratios per layer, top-1 of the
    fake-quantized network on ``search_val_images``; ``finalists`` re-scored on the selection
    images. Retraining: the policy fine-tuned at every budget and rewound once, quantization-aware
    with ``ppo.qat`` (assumed: the policy keeps some layer below 8 bits); the static choice at
    every budget, quantization-aware (assumed: a uniform bit-width below 8 meets the floor). Rows: KL calibration,
    simulated and float top-1 on the test images, int8 copy and latency of the primary budget's.
    Each control (``ppo.controls``: random, greedy) repeats the search's evaluations and the
    finalists with its own configurations, and its pick is retrained and reported at every budget.

    With ``ppo.signal: sensitivity`` (:mod:`edgeprune.ppo.sensitivity`) a search evaluation is a
    prune only (the size; top-1 is predicted), and per dense model the table is measured: the
    base and one entry per layer and lower bit-width (a QAT recovery of ``sensitivity.steps``
    steps sharing the dense input quantizers and clip ratios) and per channel group and higher
    prune rate (a prune and a float recovery, then calibration), each scored on the search
    images; ``calibration + holdout`` configurations recovered at budget 0 (QAT) and scored. Every
    finalist (the static grid's and each search's) is then recovered at budget 0 before its
    top-1 on the selection images.
    """
    p, c, sizes = ctx.params, ctx.params.ppo, ctx.sizes
    if c is None:
        return StagePlan("ppo", 0, "no ppo section", {})
    search_val = min(c.search_val_images, sizes.val)
    n_select = subset(c.select_val_images, max(0, sizes.val - search_val))
    n_test, calib = subset(c.eval_images, sizes.test), min(c.calib_images, sizes.train)
    shifts = shift_conditions(p) if c.evaluate_shift else 0
    budgets = len(p.finetune.budgets)
    dense_seeds = {dense_seed_for(p, s) for s in c.seeds}
    predicted = c.signal == "sensitivity"
    work = {}
    for model in c.models:
        layers, groups = max(1, ctx.facts[model].layers), max(1, ctx.facts[model].groups)
        w = Work(data_loads=1)
        search = {"calib": calib, "kl_candidates": layers * c.kl_bins / c.search_kl_stride, "val": search_val}
        scored = dict(search, params=p, train=sizes.train, layers=layers)  # a configuration recovered, then scored
        for _d in dense_seeds:
            w.train_images += min(c.taylor_images, sizes.train)
            w.eval_images += search_val + n_select + n_test  # dense references: search, selection, test
            if predicted:
                _sensitivity_table(w, c, groups, **scored)
                for _ in range(c.sensitivity.calibration + c.sensitivity.holdout):
                    _recovered_score(w, **scored)
            for rate in c.prune_rates:
                for _bits in c.bits:
                    _ppo_evaluation(w, **search, pruned=rate > 0, predicted=predicted)
            _finalists(w, c.finalists, predicted, **(scored | {"val": n_select}))  # the static grid's
        controls = len(c.controls)  # each control scores as many configurations as the agent's
        kind = "qat" if c.qat else "pruned"
        for _seed in c.seeds:
            for _ in range((1 + controls) * (c.episodes + 1)):  # the agent's episodes and greedy one; the control's
                _ppo_evaluation(w, **search, predicted=predicted)
            w.fixed_s += c.episodes * layers * PPO_STEP_S * (1 + controls) + c.episodes * c.n_epochs * PPO_MINIBATCH_S
            _finalists(w, (1 + controls) * c.finalists, predicted, **(scored | {"val": n_select}))
            retrained = [(b, kind) for b in range(budgets)] + [(0, kind)]  # fine-tuned at every budget, rewound once
            retrained += [(b, kind) for b in range(budgets)]  # the static choice, fine-tuned at every budget
            retrained += [(b, kind) for b in range(budgets)] * controls  # the control's pick, fine-tuned at every budget
            for b, k in retrained:
                w.prunes += 1
                recover(w, p, b, sizes.train, k, layers=layers)
            rows = [b == 0 for b in range(budgets)] * (2 + controls) + [False]  # ft, static, control; lth (no hardware)
            for hardware in rows:  # the primary budget's rows measure int8 and latency of the float network
                w.histogram_images += calib
                w.kl_candidates += layers * c.kl_bins
                w.weight_clips += 1
                w.fakequant_images += n_test * (1 + shifts)
                report_row(w, n_test, int8=c.int8 and hardware, calib=calib,
                        latency=(c.latency_warmup, c.latency_repeats) if c.latency and hardware else None)  # fmt: skip
        work[model] = w
    first = next(iter(work.values()), Work())
    searches = 1 + len(c.controls)
    count = (f"{seeds_text(len(c.seeds))} x ({c.episodes} episodes + 1) x {searches} searches (agent"
             f"{''.join(f', {name} control' for name in c.controls)}) = {len(c.seeds) * (c.episodes + 1) * searches} "
             f"evaluations; "
             f"{first.recoveries} recoveries ({'QAT' if c.qat else 'float'}) x {models_text(len(c.models))}")  # fmt: skip
    return StagePlan("ppo", len(c.models), count, work)


def _ppo_evaluation(
    w: Work, *, calib: int, kl_candidates: float, val: int, pruned: bool = True, predicted: bool = False
) -> None:
    """One new configuration for PPO's search oracle (:meth:`edgeprune.ppo.search.CompressionSearch.evaluate`):
    pruned, BatchNorm re-estimated (when pruned), histograms and KL thresholds, weight clip ratios, simulated top-1;
    with a ``predicted`` top-1 (``ppo.signal: sensitivity``), the prune alone (the size)."""
    w.prunes += 1
    if predicted:
        return
    w.weight_clips += 1
    w.eval_images += calib if pruned else 0
    w.histogram_images += calib
    w.kl_candidates += kl_candidates
    w.fakequant_images += val


def _finalists(w: Work, count: int, predicted: bool, **scored) -> None:
    """``count`` finalists re-scored on the selection images (``scored["val"]`` of them): recovered first with
    ``ppo.signal: sensitivity``, the search's post-training quantized network otherwise."""
    for _ in range(count):
        if predicted:
            _recovered_score(w, **scored)
        else:
            w.fakequant_images += scored["val"]


def _recovered_score(
    w: Work, *, params, train: int, layers: int, calib: int, kl_candidates: float, val: int,
    budget: int | Budget = 0, kind: str = "qat", batch_size: int | None = None,
) -> None:  # fmt: skip
    """One configuration pruned, recovered at ``budget`` (``batch_size`` images a step) and scored
    (:class:`edgeprune.ppo.sensitivity.RecoveredScorer`): inputs KL-calibrated on ``calib`` images, top-1 of the
    fake-quantized network on ``val`` images."""
    w.prunes += 1
    recover(w, params, budget, train, kind, layers=layers, batch_size=batch_size)
    w.histogram_images += calib
    w.kl_candidates += kl_candidates
    w.weight_clips += 1 if kind != "qat" else 0  # a QAT recovery chose them already
    w.fakequant_images += val


def _sensitivity_table(w: Work, c, groups: int, **scored) -> None:
    """The sensitivity table of one dense model (:func:`edgeprune.ppo.sensitivity.measure_table`)."""
    budget, batch, layers = Budget(steps=c.sensitivity.steps), c.sensitivity.batch_size, scored["layers"]
    w.histogram_images += scored["calib"]  # the dense inputs' histograms, shared by every bit-width entry
    w.weight_clips += 1
    entry = schedule(budget, scored["train"], batch)  # as the protocol runs it
    for _ in range(1 + layers * (len(c.bits) - 1)):  # the base and every (layer, lower bit-width)
        w.prunes += 1  # the dense copy (apply_plan of an empty plan)
        w.qat_images += entry.steps * entry.batch_size
        w.recoveries += 1
        w.recovery_steps += entry.steps
        w.fakequant_images += scored["val"]
    for _ in range(groups * (len(c.prune_rates) - 1)):  # every (group, higher prune rate): a float recovery
        _recovered_score(w, **scored, budget=budget, kind="pruned", batch_size=batch)
