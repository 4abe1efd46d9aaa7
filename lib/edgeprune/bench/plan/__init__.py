"""Predict the wall time of every DVC stage of a params file on this machine, before running it.

``python -m edgeprune.bench plan --params FILE`` measures a few unit costs here, in seconds (per
model: one SGD step, one evaluation batch, one int8 conversion, one structural prune ...; per stage
item: the start-up of dvc, papermill, the kernel and nbconvert), then multiplies them by the work
each stage does, counted from the params by the rules of the stage's own code
(``edgeprune.stages.*`` and the method packages): images through SGD steps, recoveries and their
steps, images evaluated, int8 copies, prunes, agent episodes. It prints one row per stage of
``dvc.yaml`` with its count, the predicted seconds and the total.

Nothing here is fitted to a measured run. Unit costs are measured with one warm-up and one timed
step or batch per model (the faster of two for the cheap 32-image recovery steps) at small
batches, and scaled linearly per image (so a step at the params' batch size is predicted from a
smaller one: see TRAIN_BATCH); the prediction is for the CPU, whatever ``device`` says. Where a
count depends on what a run finds (cache hits of the search oracles, which configurations a
policy picks, how often a drift controller fires), the count is the bound the code allows, or
the assumption is named in a comment; small per-row bookkeeping (MAC counting, sizes, figures,
CSVs, DVC hashing the outputs) is left out. A machine busy with other jobs inflates every unit
cost, unevenly (two torch threads contending for two busy cores slow some operations tenfold):
the printed load average says how far to trust the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping

from edgeprune.config import ParamsError, load_params
from edgeprune.paths import from_root
from edgeprune.timing import cpu_model
from edgeprune.bench.plan.costs import Costs, ModelCosts, host_has_meter, measure_costs, seconds, stage_seconds
from edgeprune.bench.plan.pipeline import STAGES, plan_stages
from edgeprune.bench.plan.work import Context, DataSizes, ModelFacts, StagePlan, Work, dataset_sizes, stage_models

__all__ = [
    "STAGES", "Context", "Costs", "DataSizes", "ModelCosts", "ModelFacts", "StagePlan", "Work", "dataset_sizes",
    "format_costs", "format_table", "main", "measure_costs", "plan_stages", "seconds", "stage_models", "stage_seconds",
]  # fmt: skip


# --------------------------------------------------------------------------- printing

# The quick profile's measured stage seconds (docs/benchmarks.md, 2026-11-30: 28 min 29 s, at 4d79c79),
# shown beside the prediction by --compare; never used to predict. That run predates issue 19's search
# controls and stream seeds: params with akperl.stream_seeds and qsa.stream_seeds [0] and empty
# akperl.controls and ppo.controls ask for its work (the QSA bank arms excepted).
QUICK_MEASURED = {"data": 22, "train_dense": 399, "baselines": 209, "akperl": 339, "ppo": 279, "qsa": 375,
                  "device_power": 32, "tables": 24, "stats": 19, "report": 11}  # fmt: skip


def _fmt_s(s: float) -> str:
    """Seconds below 10 minutes, minutes below 10 hours, hours above."""
    return f"{s / 3600:.1f} h" if s >= 36000 else f"{s / 60:.1f} min" if s >= 600 else f"{s:.0f} s"


def format_costs(costs: Costs) -> str:
    """The measured unit costs, one line per model."""
    lines = [
        f"unit costs, measured in {costs.measure_s:.1f} s with {costs.threads} torch thread(s), load average "
        f"{costs.load:.1f} on {os.cpu_count()} cores (one warm-up and one timed step or batch each, at small batches, "
        "scaled linearly per image; other jobs inflate them):",
        f"  {'model':<20} {'SGD ms/img':>22} {'forward ms/img':>18} {'b1 ms':>11} {'prune':>6} {'int8 conv':>12}"
        f" {'AKPERL ep':>9} {'QSA step':>8} {'units/layers':>12}",
        f"  {'':<20} {'dense/pruned/QAT':>22} {'fp32/int8':>18} {'fp32/int8':>11} {'s':>6} {'s (+/batch)':>12}"
        f" {'s':>9} {'s':>8}",
    ]
    for name, m in costs.models.items():
        sgd = f"{m.train_image_s * 1e3:.2f}/{m.recovery_image_s * 1e3:.2f}/{m.qat_image_s * 1e3:.2f}"
        fwd = f"{m.eval_image_s * 1e3:.3f}/{m.int8_image_s * 1e3:.3f}"
        b1 = f"{m.b1_s * 1e3:.1f}/{m.int8_b1_s * 1e3:.1f}"
        conv = f"{m.int8_convert_s:.2f}+{m.int8_batch_s:.2f}"
        lines.append(f"  {name:<20} {sgd:>22} {fwd:>18} {b1:>11} {m.prune_s:>6.2f} {conv:>12} {m.akperl_episode_s:>9.2f}"
                     f" {m.qsa_step_s:>8.3f} {m.facts.akperl_units:>5}/{m.facts.layers:<6}")  # fmt: skip
    lines.append(f"  start-up per stage item (papermill and kernel, nbconvert, dvc on a one-cell notebook): {costs.item_s:.1f} s; "
                 f"archive read + JPEG decode: {(costs.read_image_s + costs.decode_image_s) * 1e3:.2f} ms an image")  # fmt: skip
    return "\n".join(lines)


def format_table(plans: list[StagePlan], costs: Costs, measured: Mapping[str, float] | None = None) -> str:
    """One row per stage: items, predicted seconds by part and in all, the count; then the total."""
    head = f"{'stage':<13} {'items':>5} {'SGD':>7} {'forward':>7} {'other':>7} {'start-up':>8} {'predicted':>10}"
    if measured:
        head += f" {'measured':>9} {'ratio':>6}"
    lines = [head + "  count"]
    total = 0.0
    for stage in plans:
        parts = stage_seconds(stage, costs)
        total += parts["total"]
        row = (f"{stage.name:<13} {stage.items:>5} {parts['sgd']:>7.0f} {parts['forward']:>7.0f} {parts['other']:>7.0f}"
               f" {parts['start-up']:>8.0f} {_fmt_s(parts['total']):>10}")  # fmt: skip
        if measured:
            got = measured.get(stage.name)
            row += f" {_fmt_s(got) if got else '-':>9} {parts['total'] / got if got else float('nan'):>6.2f}"
        lines.append(f"{row}  {stage.count}")
    tail = f"{'total':<13} {sum(s.items for s in plans):>5} {'':>7} {'':>7} {'':>7} {'':>8} {_fmt_s(total):>10}"
    if measured:
        got = sum(measured.values())
        tail += f" {_fmt_s(got):>9} {total / got:>6.2f}"
    lines.append(f"{tail}  ({total / 60:.1f} min = {total / 3600:.2f} h)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params file to predict (default params.yaml)")
    parser.add_argument("--compare", action="store_true",
                        help="beside the prediction, the quick profile's measured stage times (docs/benchmarks.md, 2026-11-30)")
    args = parser.parse_args(argv)
    try:
        params = load_params(from_root(args.params))
    except ParamsError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    sizes = dataset_sizes(params)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if busy > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {busy:.1f} on {os.cpu_count()} cores before timing: other jobs are running, so every "
              "unit cost, and the prediction, comes out inflated; pause them for a usable figure", file=sys.stderr)  # fmt: skip
    costs, sizes = measure_costs(params, sizes)
    ctx = Context(params, sizes, costs.facts, host_has_meter())
    plans = plan_stages(ctx)
    gpu = f" (device: {params.device}; a GPU run would be far shorter: this predicts the CPU run)" if params.device != "cpu" else ""
    print(f"bench plan: {args.params} ({params.profile} profile): predicted `dvc repro` wall time, CPU prediction on "
          f"{cpu_model()}{gpu}")  # fmt: skip
    print(f"data: {sizes.train:,} train / {sizes.val:,} val / {sizes.test:,} test images {sizes.image_shape} ({sizes.source})")
    print(format_costs(costs))
    print()
    measured = QUICK_MEASURED if args.compare else None
    print(format_table(plans, costs, measured))
    if measured:
        ratio = sum(stage_seconds(s, costs)["total"] for s in plans) / sum(measured.values())
        verdict = "within" if abs(ratio - 1) <= 0.3 else "outside"
        print(f"predicted / measured total: {ratio:.2f}, {verdict} ±30 % of the quick `make repro` of 2026-11-30 (28 min 29 s,"
              " before issue 19's controls and stream seeds)"
              + ("" if params.profile == "quick" else f"; but these params are the {params.profile} profile, not quick"))  # fmt: skip
