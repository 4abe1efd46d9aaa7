"""The QSA stage's work (40_qsa): lambda paths, compression curves, recoveries and the controlled stream."""

from __future__ import annotations

from edgeprune.checkpoints import dense_seed_for
from edgeprune.bench.plan.rules import int8_copy, models_text, recover, report_row, seeds_text, shift_conditions, subset
from edgeprune.bench.plan.work import Context, StagePlan, Work

__all__ = ["qsa_stage"]

# QSA's CompressionCurve.smallest_fraction (edgeprune.qsa.threshold): fraction 0, then the brackets
# (0.25, 0.5, ...) until the target is crossed, then Brent's method to FRACTION_TOL = 0.005 inside a
# bracket 0.25 wide (~log2(50) iterations) and a step or two up: ~11 prunes on a fresh curve; a later
# target on a curve that already knows its points needs ~7; a later seed on a shared static curve,
# whose target moves a little with that seed's QSA network, ~3 (a tight bracket from the known points).
FIRST_CURVE_PRUNES = 11
LATER_CURVE_PRUNES = 7
SHARED_CURVE_PRUNES = 3


def qsa_stage(ctx: Context) -> StagePlan:
    """40_qsa, one item per model (``edgeprune.stages.qsa.run``).

    Per seed: the dense row with its int8 copy; the QSA lambda path (activations on
    ``calib_images``, ``steps`` Adam steps per lambda); per target compression the KL threshold search
    (a compression curve per lambda and ``candidates`` fractions, each KL evaluation re-estimating
    BatchNorm and reading the classifier's input on the calibration images); QSA and each static
    baseline (its curve shared by the seeds of one dense model) recovered at every budget and
    measured with an int8 copy (and latency with ``qsa.latency``). On a stream seed: one timed
    re-prune cycle, the arms' int8 networks on every stream batch, and the controller's re-prunes
    (with the acceptance gate's evaluations): one per condition change per controller arm plus the
    timer's, at most one per cooldown; not every change costs enough accuracy to fire, so an upper
    bound. Then the oracle's bank: the cycle run ahead on the labelled calibration images under each
    of the stream's conditions, and every bank network (those and the deployed one) on the stream.
    """
    p, q, sizes = ctx.params, ctx.params.qsa, ctx.sizes
    if q is None:
        return StagePlan("qsa", 0, "no qsa section", {})
    shifts = shift_conditions(p) if q.shift_accuracy else 0
    n_eval, calib = subset(q.eval_images, sizes.test), min(q.calib_images, sizes.train)
    latency = (3, q.latency_repeats) if q.latency else None
    budgets, n_lambdas = len(p.finetune.budgets), len(q.lambdas)
    c = q.controller
    segments = len(c.conditions)
    batches = segments * c.batches_per_condition
    buffer = c.buffer_batches * c.batch_size
    changes = sum(x != y for x, y in zip(c.conditions, c.conditions[1:]))
    triggers = min(changes + (batches // c.timer if c.timer else 0), batches // (c.cooldown + 1))
    controllers = 1 + int(bool(q.baselines))
    work = {}
    for model in q.models:
        w, curves = Work(data_loads=1), {}
        for seed in q.seeds:
            d = dense_seed_for(p, seed)
            report_row(w, n_eval, conditions=shifts, int8=True, calib=calib, latency=latency)  # dense and its int8 copy
            w.eval_images += n_lambdas * calib + 2 * calib  # activation samples per lambda; the KL reference
            w.qsa_steps += n_lambdas * q.steps
            for i, _target in enumerate(q.compressions):
                w.prunes += n_lambdas * ((FIRST_CURVE_PRUNES if i == 0 else LATER_CURVE_PRUNES) + q.candidates)
                w.eval_images += n_lambdas * q.candidates * 2 * calib
                for method in q.baselines:  # the static curves, shared by the seeds of one dense model
                    done = curves.get((d, method), 0)
                    w.prunes += SHARED_CURVE_PRUNES if done > i else FIRST_CURVE_PRUNES if i == 0 else LATER_CURVE_PRUNES
                    curves[(d, method)] = max(done, i + 1)
                for _net in range(1 + len(q.baselines)):
                    for b in range(budgets):
                        recover(w, p, b, sizes.train)
                        report_row(w, n_eval, conditions=shifts, int8=True, calib=calib, latency=latency)
            if q.stream_seeds is None or seed in q.stream_seeds:
                w.qsa_steps += c.retrain_steps  # the timed cycle on the calibration images
                w.prunes += 1
                w.eval_images += 2 * calib  # activation samples; BatchNorm re-estimated
                int8_copy(w, calib)
                for _net in range(controllers):  # the first deployments' int8 copies
                    int8_copy(w, calib)
                w.int8_images += 2 * controllers * batches * c.batch_size  # every arm on every stream batch
                for arm in range(controllers * triggers):
                    if arm < triggers:  # the QSA controller retrains its QSAs on the buffer's activations
                        w.qsa_steps += c.retrain_steps * buffer / calib
                        w.eval_images += buffer
                    w.prunes += 1
                    w.eval_images += buffer
                    labelled = max(0, c.buffer_batches - 1) * c.batch_size
                    w.recovery_images += c.fine_tune_epochs * labelled
                    int8_copy(w, buffer)
                    w.int8_images += 2 * c.batch_size  # the gate: candidate and deployed on the held-out batch
                if len(set(c.conditions)) > 1:  # the oracle's bank: the cycle run ahead on calibration images per condition
                    for _condition in set(c.conditions):
                        w.qsa_steps += c.retrain_steps
                        w.prunes += 1
                        w.eval_images += 2 * calib  # activation samples; BatchNorm re-estimated
                        w.recovery_images += c.fine_tune_epochs * calib
                        int8_copy(w, calib)
                    w.int8_images += (1 + len(set(c.conditions))) * batches * c.batch_size  # every bank network on the stream
        work[model] = w
    n_models = max(1, len(q.models))
    first = next(iter(work.values()), Work())
    count = (f"{seeds_text(len(q.seeds))} x {len(q.compressions)} targets x {1 + len(q.baselines)} networks x {budgets} "
             f"budgets = {first.recoveries} recoveries, {first.int8_copies} int8 copies, "
             f"<= {controllers * triggers} re-prunes and {len(set(c.conditions))} bank cycles a stream x "
             f"{models_text(n_models)}")  # fmt: skip
    return StagePlan("qsa", len(q.models), count, work)
