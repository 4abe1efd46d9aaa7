"""Every stage of dvc.yaml in pipeline order: the data, dense-training and report stages' work, and the
plan that gathers all of them (the method and device stages' counts are in their own modules)."""

from __future__ import annotations

import math

from edgeprune.bench.plan.akperl import akperl_stage
from edgeprune.bench.plan.baselines import baselines_stage
from edgeprune.bench.plan.device_power import device_power_stage
from edgeprune.bench.plan.ppo import ppo_stage
from edgeprune.bench.plan.qsa import qsa_stage
from edgeprune.bench.plan.rules import models_text, seeds_text, subset
from edgeprune.bench.plan.work import Context, StagePlan, Work

__all__ = ["STAGES", "data_stage", "dense_stage", "plan_stages", "report_stages"]

# dvc.yaml's stages, in pipeline order (a test checks the two agree).
STAGES = ("data", "train_dense", "baselines", "akperl", "ppo", "qsa", "device_power", "tables", "stats", "report")


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
    n = subset(t.train_subset, sizes.train)
    per_epoch = n // t.batch_size
    total = max(1, round(t.epochs * per_epoch))
    epochs_run = math.ceil(total / per_epoch)
    one = Work(train_images=total * t.batch_size, eval_images=epochs_run * sizes.val + sizes.test, data_loads=1)
    work = {m: one.times(len(t.seeds)) for m in t.models}
    count = (f"{t.epochs:g} epochs x {n:,} images x {models_text(len(t.models))} x {seeds_text(len(t.seeds))}"
             f" = {total * t.batch_size * len(t.models) * len(t.seeds):,} SGD images")  # fmt: skip
    return StagePlan("train_dense", len(t.models) * len(t.seeds), count, work)


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
