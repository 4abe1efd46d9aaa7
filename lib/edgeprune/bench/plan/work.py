"""The work each DVC stage does, counted from a params file by the rules of the stage's own code."""

from __future__ import annotations

import copy
import math
import zipfile
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from edgeprune.checkpoints import dense_seed_for
from edgeprune.config import Params
from edgeprune.data import IMAGE_SUFFIXES
from edgeprune.paths import from_root
from edgeprune.recover.protocol import schedule

# dvc.yaml's stages, in pipeline order (a test checks the two agree).
STAGES = ("data", "train_dense", "baselines", "akperl", "ppo", "qsa", "device_power", "tables", "stats", "report")

# Measurement sizes: the dense SGD step is timed at min(train.batch_size, TRAIN_BATCH) images; the
# recovery steps (pruned, masked, quantization-aware) at SMALL_BATCH, relative to the dense step at
# the same batch; forward passes on min(train.eval_batch_size, EVAL_BATCH) images. Per-image costs
# are then scaled linearly to the counts (a larger batch is usually a little cheaper per image, so
# the prediction errs high).
TRAIN_BATCH = 128
SMALL_BATCH = 32
EVAL_BATCH = 128
INT8_CALIB_BATCH = 64  # edgeprune.quant.quantize_int8 calibrates in batches of 64
LATENCY_BATCH = 64  # edgeprune.harness.LATENCY_BATCH_SIZES = (1, 64)
KL_BINS = 2048  # edgeprune.fakequant.KL_BINS: the histogram of a recovery's KL calibration
DECODE_SAMPLE = 256  # archive members read and decoded to time the data stage

# A-priori estimates (not measured, not fitted): the reinforcement-learning libraries' own work per
# step, small next to the pruning and evaluation they drive.
DQN_UPDATE_S = 0.003  # Stable-Baselines3 DQN: one replay minibatch update of a small MLP plus its step bookkeeping
PPO_STEP_S = 0.001  # Stable-Baselines3 PPO: one policy forward and rollout-buffer step (one layer of an episode)
PPO_MINIBATCH_S = 0.004  # one PPO minibatch update (one episode's steps)

# QSA's CompressionCurve.smallest_fraction (edgeprune.qsa.threshold): fraction 0, then the brackets
# (0.25, 0.5, ...) until the target is crossed, then Brent's method to FRACTION_TOL = 0.005 inside a
# bracket 0.25 wide (~log2(50) iterations) and a step or two up: ~11 prunes on a fresh curve; a later
# target on a curve that already knows its points needs ~7; a later seed on a shared static curve,
# whose target moves a little with that seed's QSA network, ~3 (a tight bracket from the known points).
FIRST_CURVE_PRUNES = 11
LATER_CURVE_PRUNES = 7
SHARED_CURVE_PRUNES = 3
AKPERL_LEVELS = 5  # edgeprune.akperl.units.LEVELS: 0, 25, 50, 75, 100 %


# --------------------------------------------------------------------------- what a stage does


@dataclass(frozen=True)
class DataSizes:
    """Images per split after the data stage (decoded counts from the archive's listing)."""

    train: int
    val: int
    test: int
    image_shape: tuple[int, int, int] = (3, 32, 32)
    source: str = "CIFAR-10 sizes (assumed: archive not found)"

    @property
    def decoded(self) -> int:
        return self.train + self.val + self.test


@dataclass(frozen=True)
class ModelFacts:
    """Structure of a model that sets how many steps its searches take (from the model itself)."""

    akperl_units: int = 0  # AKPERL decision units (edgeprune.akperl.units.find_units): steps per episode
    layers: int = 0  # Conv2d / Linear layers (edgeprune.fakequant.quantized_layers): PPO steps per episode


@dataclass
class Work:
    """The work of one stage on one model, in the units whose costs are measured.

    Image counts are images through one pass (an SGD step, a forward pass); the rest are counts of
    fixed items. ``recoveries`` and ``recovery_steps`` are shown, their cost is in the image counts.
    """

    train_images: float = 0.0  # SGD step of the dense network as trained (dense training; Taylor scores)
    masked_images: float = 0.0  # SGD step of an unpruned fp32 network in the recovery loop (unstructured masks)
    recovery_images: float = 0.0  # SGD step of a channel-pruned network (float recovery)
    qat_images: float = 0.0  # SGD step with k-bit fake quantizers in the loop (quantization-aware recovery)
    eval_images: float = 0.0  # fp32 forward (accuracy, BatchNorm re-estimation, activation samples, latency batches)
    int8_images: float = 0.0  # real int8 forward
    histogram_images: float = 0.0  # fp32 forward with an activation histogram on every layer (KL calibration)
    fakequant_images: float = 0.0  # forward of a fake-quantized (simulated k-bit) network
    b1_calls: float = 0.0  # batch-1 fp32 forward calls (latency figures)
    int8_b1_calls: float = 0.0  # batch-1 int8 forward calls
    prunes: float = 0.0  # structural prunes (Torch-Pruning dependency graph and removal)
    int8_conversions: float = 0.0  # quantize_int8 calls (one calibration batch each)
    int8_extra_batches: float = 0.0  # further calibration batches of those conversions
    exports: float = 0.0  # TorchScript export files (trace, save, reload, compare), priced as an int8 conversion
    kl_candidates: float = 0.0  # histogram bins tried by KL threshold searches (bins / stride per threshold)
    akperl_episodes: float = 0.0  # AKPERL episodes' pruning (graph, one prune and modelled power per unit)
    qsa_steps: float = 0.0  # Adam steps over every layer's QSA at qsa.calib_images x positions samples
    data_loads: float = 0.0  # torch.load of results/data/prepared.pt (every stage that reads images)
    decoded_images: float = 0.0  # JPEGs decoded
    read_images: float = 0.0  # archive members read (CRC checked)
    fixed_s: float = 0.0  # seconds known without a unit: RL libraries' updates (estimated), metered inference (its duration)
    recoveries: int = 0
    recovery_steps: int = 0
    int8_copies: int = 0
    rows: int = 0

    def __iadd__(self, other: Work) -> Work:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def times(self, k: int) -> Work:
        """This work done ``k`` times."""
        return Work(**{f.name: getattr(self, f.name) * k for f in fields(self)})


@dataclass
class StagePlan:
    """One stage of dvc.yaml: its items (papermill runs), what it does per model and what to print."""

    name: str
    items: int
    count: str
    work: dict[str, Work] = field(default_factory=dict)  # model name ("" for model-independent work) -> work

    @property
    def total(self) -> Work:
        total = Work()
        for w in self.work.values():
            total += w
        return total


@dataclass(frozen=True)
class Context:
    """What every stage's count needs: the params, the data sizes, the models' structure, the host."""

    params: Params
    sizes: DataSizes
    facts: Mapping[str, ModelFacts]
    host_meter: bool = False  # a power meter (RAPL, INA) the device_power stage reads for every kept model


def _recover(w: Work, params: Params, budget: int, train_images: int, kind: str = "pruned", layers: int = 0) -> int:
    """One pass through :meth:`edgeprune.recover.protocol.Recovery.recover` at ``budget`` (an index);
    returns its SGD steps.

    ``kind``: "pruned" (channels removed), "masked" (unstructured masks: the dense shape),
    "qat" (k-bit quantizers in the loop, KL-calibrated first over ``layers`` layers).
    """
    f = params.finetune
    plan = schedule(f.budgets[budget], train_images, f.batch_size)
    images = plan.steps * plan.batch_size
    calib = min(f.calib_images, train_images)
    w.eval_images += calib  # BatchNorm re-estimated on finetune.calib_images (every network here was pruned)
    if kind == "qat":
        w.histogram_images += calib  # fakequant.calibrate: a KL threshold per layer (KL_BINS bins, stride 1)
        w.kl_candidates += layers * KL_BINS
        w.qat_images += images
    elif kind == "masked":
        w.masked_images += images
    else:
        w.recovery_images += images
    w.recoveries += 1
    w.recovery_steps += plan.steps
    return plan.steps


def _report(w: Work, n_eval: int, *, conditions: int = 0, int8: bool = False, calib: int = 0,
            latency: tuple[int, int] | None = None) -> None:  # fmt: skip
    """One :func:`edgeprune.harness.report` row: top-1 clean and under ``conditions`` shift conditions,
    an int8 copy calibrated on ``calib`` images and its top-1, and latency (warm-up, repeats) if asked."""
    w.rows += 1
    w.eval_images += n_eval * (1 + conditions)
    if int8:
        _int8(w, calib)
        w.int8_images += n_eval
    if latency is not None:
        _latency(w, *latency, int8=int8)


def _int8(w: Work, calib: int) -> None:
    """One :func:`edgeprune.quant.quantize_int8` on ``calib`` images."""
    w.int8_conversions += 1
    w.int8_extra_batches += max(0, math.ceil(calib / INT8_CALIB_BATCH) - 1)
    w.int8_copies += 1


def _latency(w: Work, warmup: int, repeats: int, *, int8: bool = False) -> None:
    """Latency figures at batch 1 and 64 (fp32, and int8 if ``int8``) by edgeprune.timing.time_call:
    ``warmup`` calls, then ``repeats`` timed runs each after torch's two untimed ones."""
    calls = warmup + 3 * repeats
    w.b1_calls += calls
    w.eval_images += calls * LATENCY_BATCH
    if int8:
        w.int8_b1_calls += calls
        w.int8_images += calls * LATENCY_BATCH


def _n(limit: int | None, available: int) -> int:
    """A subset of ``limit`` images of ``available`` (None = all)."""
    return available if limit is None else min(limit, available)


def _shift(params: Params) -> int:
    """Shift conditions other than clean (measured beside clean top-1 in the rows that ask for them)."""
    return sum(c != "clean" for c in params.shift.conditions)


def _seeds_text(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _models_text(n: int) -> str:
    return f"{n} model{'s' if n != 1 else ''}"


def _steps_text(steps: Iterable[int]) -> str:
    """Recovery steps grouped: "18 x 8 + 3 x 64"."""
    counts = Counter(steps)
    return " + ".join(f"{n} x {s}" for s, n in sorted(counts.items()))


# --------------------------------------------------------------------------- one function per stage


def data_stage(ctx: Context) -> StagePlan:
    """00_data: every image of the archive read twice (zipfile's CRC pass, then the decode pass) and
    decoded once (``edgeprune.data.prepare``); saving the tensors and the condition grid are small."""
    n = ctx.sizes.decoded
    work = Work(decoded_images=n, read_images=2 * n)
    return StagePlan("data", 1, f"{n:,} images read twice (CRC, decode) and decoded", {"": work})


def dense_stage(ctx: Context) -> StagePlan:
    """10_train_dense, one item per model x seed: ``train.epochs`` passes of SGD over the train split
    (``edgeprune.train.fit``), the validation split after every epoch, the test split once."""
    t, sizes = ctx.params.train, ctx.sizes
    n = _n(t.train_subset, sizes.train)
    per_epoch = n // t.batch_size
    total = max(1, round(t.epochs * per_epoch))
    epochs_run = math.ceil(total / per_epoch)
    one = Work(train_images=total * t.batch_size, eval_images=epochs_run * sizes.val + sizes.test, data_loads=1)
    work = {m: one.times(len(t.seeds)) for m in t.models}
    count = (f"{t.epochs:g} epochs x {n:,} images x {_models_text(len(t.models))} x {_seeds_text(len(t.seeds))}"
             f" = {total * t.batch_size * len(t.models) * len(t.seeds):,} SGD images")  # fmt: skip
    return StagePlan("train_dense", len(t.models) * len(t.seeds), count, work)


def baselines_stage(ctx: Context) -> StagePlan:
    """20_baselines, one item per model (``edgeprune.stages.baselines.run``).

    Per seed: the dense row, then every method x sparsity pruned, recovered at the primary budget
    (and at every budget on the axis: ``axis_methods`` x ``axis_sparsities``) and measured: clean and
    shifted top-1 and an int8 copy at the primary budget, clean top-1 only on the axis. Prunes are
    cached per dense model, latency per architecture (unstructured masks share the dense one). An
    unreachable sparsity would skip its rows: counted here as reached.
    """
    p, cfg, sizes = ctx.params, ctx.params.baselines, ctx.sizes
    if cfg is None:
        return StagePlan("baselines", len(p.train.models), "no baselines section", {})
    n_eval, shifts = _n(cfg.eval_images, sizes.test), _shift(p)
    jobs = [(m, s) for m in cfg.methods for s in cfg.sparsities]
    budgets = range(len(p.finetune.budgets))
    one, steps = Work(data_loads=1), []
    one.prunes += len({dense_seed_for(p, s) for s in cfg.seeds}) * len(jobs)
    for _seed in cfg.seeds:
        _report(one, n_eval, conditions=shifts, int8=cfg.int8, calib=cfg.calib_images)  # the dense row
        for method, sparsity in jobs:
            on_axis = sparsity in cfg.axis_sparsities and method in (cfg.axis_methods or cfg.methods)
            for b in budgets if on_axis else [0]:
                kind = "masked" if method == "magnitude_unstructured" else "pruned"
                steps.append(_recover(one, p, b, sizes.train, kind))
                primary = b == 0
                _report(one, n_eval, conditions=shifts if primary else 0, int8=cfg.int8 and primary, calib=cfg.calib_images)
    structured = sum(m != "magnitude_unstructured" for m in cfg.methods)
    for _arch in range(1 + structured * len(cfg.sparsities)):
        _latency(one, cfg.latency_warmup, cfg.latency_repeats, int8=cfg.int8)
    count = (f"{_seeds_text(len(cfg.seeds))} x {len(jobs)} settings: {one.recoveries} recoveries ({_steps_text(steps)} steps"
             f" of {p.finetune.batch_size}), {one.rows} rows, {one.int8_copies} int8 copies")  # fmt: skip
    return StagePlan("baselines", len(p.train.models), count, {m: copy.deepcopy(one) for m in p.train.models})


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
    count = (f"{n_runs} DQN runs, {first.akperl_episodes:,.0f} episodes; {first.recoveries} recoveries ({_steps_text(steps)}"
             f" steps) x {_models_text(len(a.models))}")  # fmt: skip
    return StagePlan("akperl", len(a.models), count, work)


def _akperl_model(ctx: Context, units: int) -> tuple[Work, list[int]]:
    """One model's AKPERL work (see :func:`akperl_stage`) and its recoveries' steps."""
    p, a, sizes = ctx.params, ctx.params.akperl, ctx.sizes
    conditions = len(a.conditions or p.shift.conditions)
    n_test = _n(a.eval_images, sizes.test)
    accuracy_images = min(a.calib_images, sizes.train) + _n(a.val_images, sizes.val)
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
    # the equal-budget controls (akperl.controls): per seed as many random configurations as the agent
    # finished training episodes, each scored once at its end (new configurations: no cache hits)
    controls = len(a.controls) * len(a.seeds) * math.ceil(a.dqn.steps / units)
    w.akperl_episodes += controls
    w.eval_images += controls * accuracy_images
    networks = 3 + len(a.controls)  # L1 and magnitude at AKPERL's clean sparsity, AKPERL's network, each control's
    for seed in a.seeds:
        for b in range(len(p.finetune.budgets)):
            for _net in range(networks):
                w.prunes += 1
                steps.append(_recover(w, p, b, sizes.train))
                _report(w, n_test)
        for _arch in range(networks):  # later budgets reuse the first's timings
            _latency(w, 2, a.latency_repeats)
        if seed in (a.stream_seeds or a.seeds):
            extra = (conditions - 1) + 2  # at most: each other condition's configuration, two statics at the mean sparsity
            w.prunes += extra
            steps += [_recover(w, p, 0, sizes.train) for _ in range(extra)]
            batch = min(a.stream_batch_size, n_test)
            methods = 5 + conditions  # switching, AKPERL static, dense, L1, magnitude; the bank (one per configuration, at most)
            w.eval_images += methods * (a.stream_segments * a.stream_batches + 1) * batch  # one warm-up batch each
    for _d in {dense_seed_for(p, s) for s in a.seeds}:  # the dense row, once per dense model
        _report(w, n_test, latency=(2, a.latency_repeats))
    return w, steps


def _akperl_evaluations(units: int, conditions: int, every: int, episodes: int) -> int:
    """Accuracy evaluations on one task: every ``every``-th step of an episode and its last one,
    cached by (condition, levels so far), so depth t holds at most conditions x 5^t distinct
    prefixes and at most one per episode; plus the dense network per condition."""
    depths = sorted({*range(every, units + 1, every), units})
    return conditions + sum(min(conditions * AKPERL_LEVELS**t, episodes) for t in depths)


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
    shifts = _shift(p) if q.shift_accuracy else 0
    n_eval, calib = _n(q.eval_images, sizes.test), min(q.calib_images, sizes.train)
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
            _report(w, n_eval, conditions=shifts, int8=True, calib=calib, latency=latency)  # dense and its int8 copy
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
                        _recover(w, p, b, sizes.train)
                        _report(w, n_eval, conditions=shifts, int8=True, calib=calib, latency=latency)
            if q.stream_seeds is None or seed in q.stream_seeds:
                w.qsa_steps += c.retrain_steps  # the timed cycle on the calibration images
                w.prunes += 1
                w.eval_images += 2 * calib  # activation samples; BatchNorm re-estimated
                _int8(w, calib)
                for _net in range(controllers):  # the first deployments' int8 copies
                    _int8(w, calib)
                w.int8_images += 2 * controllers * batches * c.batch_size  # every arm on every stream batch
                for arm in range(controllers * triggers):
                    if arm < triggers:  # the QSA controller retrains its QSAs on the buffer's activations
                        w.qsa_steps += c.retrain_steps * buffer / calib
                        w.eval_images += buffer
                    w.prunes += 1
                    w.eval_images += buffer
                    labelled = max(0, c.buffer_batches - 1) * c.batch_size
                    w.recovery_images += c.fine_tune_epochs * labelled
                    _int8(w, buffer)
                    w.int8_images += 2 * c.batch_size  # the gate: candidate and deployed on the held-out batch
                if len(set(c.conditions)) > 1:  # the oracle's bank: the cycle run ahead on calibration images per condition
                    for _condition in set(c.conditions):
                        w.qsa_steps += c.retrain_steps
                        w.prunes += 1
                        w.eval_images += 2 * calib  # activation samples; BatchNorm re-estimated
                        w.recovery_images += c.fine_tune_epochs * calib
                        _int8(w, calib)
                    w.int8_images += (1 + len(set(c.conditions))) * batches * c.batch_size  # every bank network on the stream
        work[model] = w
    n_models = max(1, len(q.models))
    first = next(iter(work.values()), Work())
    count = (f"{_seeds_text(len(q.seeds))} x {len(q.compressions)} targets x {1 + len(q.baselines)} networks x {budgets} "
             f"budgets = {first.recoveries} recoveries, {first.int8_copies} int8 copies, "
             f"<= {controllers * triggers} re-prunes and {len(set(c.conditions))} bank cycles a stream x "
             f"{_models_text(n_models)}")  # fmt: skip
    return StagePlan("qsa", len(q.models), count, work)


def ppo_stage(ctx: Context) -> StagePlan:
    """50_ppo_prune_quant, one item per model (``edgeprune.stages.ppo.run``).

    Per dense model: Taylor scores on ``taylor_images`` (a forward and backward pass each), the
    static grid (one uniform rate per prune rate, 8 bits), the selection and test references. Per
    seed: ``episodes`` search evaluations and the greedy one, each counted as new (the oracle's cache
    hits are not subtracted: an upper bound): the network pruned, BatchNorm re-estimated and every
    layer's input histogrammed on ``calib_images``, a KL threshold per layer, top-1 of the
    fake-quantized network on ``search_val_images``; ``finalists`` re-scored on the selection
    images. Retraining: the policy fine-tuned at every budget and rewound once, quantization-aware
    with ``ppo.qat`` (assumed: the policy keeps some layer below 8 bits); the static choice at
    every budget only when the grid has no rate 0 (with rate 0 among them the static choice has
    been "no pruning, 8 bits", which the protocol returns untouched). Rows: KL calibration,
    simulated and float top-1 on the test images, int8 copy and latency of the primary budget's.
    The random-search control (``ppo.controls``) repeats the search's evaluations and the
    finalists with random configurations, and its pick is retrained and reported at every budget.
    """
    p, c, sizes = ctx.params, ctx.params.ppo, ctx.sizes
    if c is None:
        return StagePlan("ppo", 0, "no ppo section", {})
    search_val = min(c.search_val_images, sizes.val)
    n_select = _n(c.select_val_images, max(0, sizes.val - search_val))
    n_test, calib = _n(c.eval_images, sizes.test), min(c.calib_images, sizes.train)
    shifts = _shift(p) if c.evaluate_shift else 0
    budgets = len(p.finetune.budgets)
    static_recovered = min(c.prune_rates) > 0
    dense_seeds = {dense_seed_for(p, s) for s in c.seeds}
    work = {}
    for model in c.models:
        layers = max(1, ctx.facts[model].layers)
        w = Work(data_loads=1)
        search = {"calib": calib, "kl_candidates": layers * c.kl_bins / c.search_kl_stride, "val": search_val}
        for _d in dense_seeds:
            w.train_images += min(c.taylor_images, sizes.train)
            w.eval_images += search_val + n_select + n_test  # dense references: search, selection, test
            for rate in c.prune_rates:
                _ppo_evaluation(w, **search, pruned=rate > 0)
            w.fakequant_images += len(c.prune_rates) * n_select  # the static finalists re-scored
        controls = 1 if c.controls else 0  # the random-search control, as many configurations as the agent's
        kind = "qat" if c.qat else "pruned"
        for _seed in c.seeds:
            for _ in range((1 + controls) * (c.episodes + 1)):  # the agent's episodes and greedy one; the control's
                _ppo_evaluation(w, **search)
            w.fixed_s += c.episodes * layers * PPO_STEP_S * (1 + controls) + c.episodes * c.n_epochs * PPO_MINIBATCH_S
            w.fakequant_images += (1 + controls) * c.finalists * n_select
            retrained = [(b, kind) for b in range(budgets)] + [(0, kind)]  # fine-tuned at every budget, rewound once
            retrained += [(b, "pruned") for b in range(budgets)] if static_recovered else []
            retrained += [(b, kind) for b in range(budgets)] * controls  # the control's pick, fine-tuned at every budget
            for b, k in retrained:
                w.prunes += 1
                _recover(w, p, b, sizes.train, k, layers=layers)
            rows = [b == 0 for b in range(budgets)] * (2 + controls) + [False]  # ft, static, control; lth (no hardware)
            for hardware in rows:  # the primary budget's rows measure int8 and latency of the float network
                w.histogram_images += calib
                w.kl_candidates += layers * c.kl_bins
                w.fakequant_images += n_test * (1 + shifts)
                _report(w, n_test, int8=c.int8 and hardware, calib=calib,
                        latency=(c.latency_warmup, c.latency_repeats) if c.latency and hardware else None)  # fmt: skip
        work[model] = w
    first = next(iter(work.values()), Work())
    searches = 1 + (1 if c.controls else 0)
    count = (f"{_seeds_text(len(c.seeds))} x ({c.episodes} episodes + 1) x {searches} searches (agent"
             f"{', random control' if c.controls else ''}) = {len(c.seeds) * (c.episodes + 1) * searches} evaluations; "
             f"{first.recoveries} recoveries ({'QAT' if c.qat else 'float'}"
             f"{'' if static_recovered else '; static choice assumed unpruned'}) x {_models_text(len(c.models))}")  # fmt: skip
    return StagePlan("ppo", len(c.models), count, work)


def _ppo_evaluation(w: Work, *, calib: int, kl_candidates: float, val: int, pruned: bool = True) -> None:
    """One new configuration for PPO's search oracle (:meth:`edgeprune.ppo.search.CompressionSearch.evaluate`):
    pruned, BatchNorm re-estimated (when pruned), histograms and KL thresholds, simulated top-1."""
    w.prunes += 1
    w.eval_images += calib if pruned else 0
    w.histogram_images += calib
    w.kl_candidates += kl_candidates
    w.fakequant_images += val


def kept_models(params: Params) -> dict[str, dict[str, int]]:
    """Models each method stage keeps for the devices, per model: {model: {stage: count}}."""
    kept: dict[str, dict[str, int]] = {}
    cfg = params.device_power
    stages = cfg.stages if cfg is not None else []
    for stage in stages:
        section = getattr(params, stage, None)
        if section is None:
            continue
        models = getattr(section, "models", None) or params.train.models
        n = {"baselines": 1 + len(getattr(section, "methods", [])) * len(getattr(section, "sparsities", [])),
             "qsa": len(getattr(section, "compressions", [])), "akperl": 1, "ppo": 1}.get(stage, 0)  # fmt: skip
        for model in models:
            kept.setdefault(model, {})[stage] = n
    return kept


def device_power_stage(ctx: Context) -> StagePlan:
    """60_device_power, one item (``edgeprune.stages.device_power.run``).

    Every kept model is loaded and modelled on every profile (cheap), its host latency taken from
    its method stage's table where that measured it (baselines always, int8 with
    ``baselines.int8``; AKPERL fp32 only; QSA and PPO with their ``latency``), else timed here
    (``host_warmup`` + 3 x ``host_repeats`` batch-1 calls, after an int8 conversion for int8), metered
    for ``host_energy_seconds`` per precision where the host has a meter, and exported with
    ``export`` (fp32 and int8-qnnpack files: one conversion, two exports).
    """
    p, cfg = ctx.params, ctx.params.device_power
    if cfg is None:
        return StagePlan("device_power", 1, "no device_power section", {})
    host = [x for x in ("fp32", "int8") if x in cfg.precisions] if cfg.host_profile else []
    in_table = {  # (stage) -> precisions whose batch-1 latency the method stage's table holds
        "baselines": {"fp32", *(["int8"] if p.baselines is not None and p.baselines.int8 else [])},
        "akperl": {"fp32"},
        "qsa": {"fp32", "int8"} if p.qsa is not None and p.qsa.latency else set(),
        "ppo": ({"fp32", *(["int8"] if p.ppo.int8 else [])} if p.ppo is not None and p.ppo.latency else set()),
    }
    work, n_kept, timed = {"": Work(data_loads=1)}, 0, 0  # the calibration images come from the prepared tensors
    for model, stages in kept_models(p).items():
        w = Work()
        for stage, n in stages.items():
            n_kept += n
            for precision in host:
                if precision not in in_table.get(stage, set()):  # timed here: warm-up, then timed runs (3 calls each)
                    timed += n
                    calls = n * (cfg.host_warmup + 3 * cfg.host_repeats)
                    if precision == "int8":
                        for _ in range(n):
                            _int8(w, cfg.calib_images)
                        w.int8_b1_calls += calls
                    else:
                        w.b1_calls += calls
                if ctx.host_meter:
                    w.fixed_s += n * cfg.host_energy_seconds  # metered inference runs for a fixed time
            if cfg.export:
                for _ in range(n):
                    _int8(w, cfg.calib_images)  # the qnnpack copy
                w.exports += 2 * n
        work[model] = w
    count = (f"{n_kept} kept models x {len(cfg.profiles)} profiles; {timed} host latency figures timed here"
             f"{', metered' if ctx.host_meter else ''}{f', {2 * n_kept} exports' if cfg.export else ''}")  # fmt: skip
    return StagePlan("device_power", 1, count, work)


def report_stages(ctx: Context) -> list[StagePlan]:
    """90_tables, 91_stats and the HTML report: one item each; reading the tidy tables, the
    statistics and the figures are small next to their start-up (left out)."""
    return [StagePlan(name, 1, "start-up; tables, statistics and figures not counted") for name in ("tables", "stats", "report")]


def plan_stages(ctx: Context) -> list[StagePlan]:
    """Every stage of dvc.yaml, in :data:`STAGES` order."""
    plans = [data_stage(ctx), dense_stage(ctx), baselines_stage(ctx), akperl_stage(ctx), ppo_stage(ctx), qsa_stage(ctx),
             device_power_stage(ctx), *report_stages(ctx)]  # fmt: skip
    order = {name: i for i, name in enumerate(STAGES)}
    return sorted(plans, key=lambda s: order[s.name])


# --------------------------------------------------------------------------- the data's size


def dataset_sizes(params: Params) -> DataSizes:
    """Train / val / test images the data stage will produce, from the archive's listing (no decoding).

    Without the archive: CIFAR-10's 50,000 / 10,000 images (said in ``source``)."""
    d = params.data
    path = from_root(d.archive)
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    elif path.is_dir():
        names = [str(f.relative_to(path)) for f in path.rglob("*")]
    else:
        names = []
    folders: dict[str, Counter] = {}  # split folder -> images per class (data.read_class_folders' layout)
    for name in names:
        parts = Path(name).parts
        if len(parts) == 3 and name.lower().endswith(IMAGE_SUFFIXES):
            folders.setdefault(parts[0], Counter())[parts[1]] += 1
    if "test" not in folders and "val" in folders:
        folders["test"] = folders.pop("val")
    if folders.get("train") and folders.get("test"):
        per_class, source = folders, d.archive
    else:
        per_class = {"train": Counter({str(c): 5000 for c in range(10)}), "test": Counter({str(c): 1000 for c in range(10)})}
        source = f"CIFAR-10 sizes (assumed: {d.archive} not found)"
    cap = d.max_per_class or math.inf
    full_train = int(sum(min(n, cap) for n in per_class["train"].values()))
    test = int(sum(min(n, cap) for n in per_class["test"].values()))
    val = round(d.val_fraction * full_train)
    side = d.image_size or 32  # the measured sample sets it when the archive is read (measure_costs)
    return DataSizes(full_train - val, val, test, (3, side, side), source)

def stage_models(params: Params) -> list[str]:
    """Every model some stage trains, prunes or measures."""
    names = list(params.train.models)
    for section in (params.akperl, params.qsa, params.ppo):
        names += [m for m in (section.models if section else []) if m not in names]
    return names
