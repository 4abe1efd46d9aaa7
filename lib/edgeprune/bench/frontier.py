"""Benchmark: the size / accuracy frontier of mixed pruning + bit-widths, each point recovered in full.

``python -m edgeprune.bench frontier --params FILE --results DIR`` answers issue 20's question
"how small can this dense model get at <= 1 point of top-1?" without the PPO stage's agent:

1. the PPO stage's sensitivity table of the run's dense model (``ppo.prune_rates`` x ``ppo.bits``,
   every single change recovered for ``ppo.sensitivity.steps`` steps; read from the stage's cache
   when its weights and settings match, else measured and cached there, where the stage finds it);
2. for each ``--reductions`` r, the greedy allocation of the PPO greedy control
   (:func:`edgeprune.allocation.allocate`, least added loss per stored byte saved, the table's loss
   increases summed) run until the stored size is at most dense fp32 / r, the size counted on the
   pruned network at its bit-widths (scales included), so each point is the cheapest configuration the
   table knows at that size;
3. each configuration recovered through the one protocol at ``finetune`` budget 0 (the profile's
   recovery budget, QAT below 8 bits), quantized as ``ppo.quantize`` / ``ppo.weight_clip`` say, and
   scored on ``--test-images`` test images (default: all), beside the dense fp32 model on the same images;
   once per ``--seeds`` recovery seed (the training images drawn and their order).

Printed per point and seed: stored size, reduction, mean bits, share of parameters pruned, the
table's additive loss, test top-1 and its drop from dense, and the seconds the recovery took;
with several seeds, the drop's mean and sample standard deviation.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from edgeprune.allocation import allocate
from edgeprune.checkpoints import load_dense
from edgeprune.config import load_params
from edgeprune.data import load_prepared
from edgeprune.paths import ResultPaths
from edgeprune.placement import resolve_device
from edgeprune.ppo.context import dense_search, sensitivity_table
from edgeprune.ppo.search import CompressionSearch
from edgeprune.ppo.sensitivity import Config, Predictor, RecoveredScorer, SensitivityTable
from edgeprune.recover.protocol import Recovery
from edgeprune.train import evaluate, set_threads


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench frontier", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--results", default="results")
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--dense-seed", type=int, default=0)
    parser.add_argument("--reductions", nargs="+", type=float, default=[6.0, 8.0, 10.0, 12.0],
                        help="stored-size reductions over dense fp32 to allocate for")  # fmt: skip
    parser.add_argument("--min-bits", type=int, default=0,
                        help="no layer below this bit-width (the table's single changes cannot see low-bit inputs compound)")  # fmt: skip
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="recovery seeds per point (mean and sd printed)")
    parser.add_argument("--test-images", type=int, default=None, help="test images scored (default: all)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the params' num_threads rule)")
    return parser.parse_args(argv)


def allocate_size(search: CompressionSearch, table: SensitivityTable, reduction: float, *, min_bits: int = 0) -> Config:
    """The greedy allocation over ``table`` whose stored size is at most dense fp32 / ``reduction``,
    no layer below ``min_bits``.

    Savings are summed per move as if independent (pruning a group also shrinks the next layer),
    so the byte target is raised in 1 % steps until the counted size meets it.
    """
    if min_bits > max(table.bits):
        raise ValueError(f"min_bits {min_bits} is above every bit-width of the sensitivity table {table.bits}")
    mild_rates, mild_bits = table.mildest()  # sizes from the search (its top-1 is not used here)
    base = search.evaluate(mild_rates, mild_bits)
    bits_inc, rates_inc = table.loss_increase()
    effects = {}
    for t in range(len(table.layers)):
        for j, b in enumerate(table.bits[1:], start=1):
            if b < min_bits:
                continue
            bits = list(mild_bits)
            bits[t] = b
            effects[("bits", t), j] = (float(bits_inc[t, j]), base.size_bytes - search.evaluate(mild_rates, bits).size_bytes)
    for g in range(len(table.groups)):
        for i, rate in enumerate(table.rates[1:], start=1):
            rates = list(mild_rates)
            rates[g] = rate
            effects[("rate", g), i] = (float(rates_inc[g, i]), base.size_bytes - search.evaluate(rates, mild_bits).size_bytes)
    goal = search.reference.size_bytes / reduction
    target = base.size_bytes - goal
    while True:
        chosen = allocate(effects, target_gain=target)  # ValueError when the table's moves cannot save that much
        rates, bits = list(mild_rates), list(mild_bits)
        for (kind, index), option in chosen.items():
            if kind == "rate":
                rates[index] = table.rates[option]
            else:
                bits[index] = table.bits[option]
        if search.evaluate(rates, bits).size_bytes <= goal:
            return tuple(rates), tuple(bits)
        target *= 1.01


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params, paths = load_params(args.params), ResultPaths.at(args.results)
    threads = set_threads(args.threads or params.num_threads)
    device = resolve_device(params.device)
    data = load_prepared(paths.prepared)
    final = load_dense(paths, args.model, args.dense_seed, "model")
    recovery = Recovery(params.finetune, data.train, device=device)
    search, _, _ = dense_search(params, data, final, device)
    tic = time.perf_counter()
    table = sensitivity_table(params, paths, args.model, args.dense_seed, search, recovery)
    print(f"sensitivity table: {len(table.layers)} layers x {len(table.bits)} bit-widths, {len(table.groups)} groups x "
          f"{len(table.rates)} rates ({time.perf_counter() - tic:.0f} s here; {table.seconds:.0f} s when measured)")  # fmt: skip
    predictor = Predictor.fit(table, [])  # sizes only: the allocation ranks moves by the table's loss increases
    search.use_predictor(predictor.top1)
    test = data.test.subset(args.test_images, seed=params.data.split_seed)
    dense_top1 = evaluate(final, test.x, test.y, batch_size=params.ppo.batch_size, device=device)
    dense_mb, budget = search.reference.size_bytes / 1e6, params.finetune.budgets[0]
    print(f"{params.profile} profile, {args.model} dense seed {args.dense_seed}: fp32 {dense_mb:.3f} MB, top-1 "
          f"{dense_top1:.2f} % on {len(test)} test images; recovery budget {budget.model_dump(exclude_none=True)}, "
          f"{params.ppo.quantize}, weight clip {params.ppo.weight_clip}, {threads} thread(s)")  # fmt: skip
    header = (f"{'target':>7} {'MB':>7} {'reduction':>9} {'mean bits':>9} {'params cut':>10} {'add. loss':>9} {'seed':>4} "
              f"{'top-1':>7} {'drop':>6} {'s':>6}")  # fmt: skip
    print(header)
    for reduction in args.reductions:
        try:
            rates, bits = allocate_size(search, table, reduction, min_bits=args.min_bits)
        except ValueError as err:
            print(f"{reduction:>6.1f}x  not reachable with the table's options: {err}")
            continue
        outcome = search.evaluate(rates, bits)
        pruned = 1 - outcome.params / search.reference.params
        point = (f"{reduction:>6.1f}x {outcome.size_bytes / 1e6:>7.3f} {search.reference.size_bytes / outcome.size_bytes:>8.2f}x "
                 f"{np.mean(bits):>9.2f} {100 * pruned:>9.1f}% {predictor.loss(rates, bits) - table.base.loss:>9.3f}")  # fmt: skip
        drops = []
        for seed in args.seeds:
            tic = time.perf_counter()
            top1 = RecoveredScorer(search, recovery, seed=seed)(rates, bits, 0, test.x, test.y).top1
            drops.append(dense_top1 - top1)
            print(f"{point} {seed:>4} {top1:>6.2f}% {drops[-1]:>6.2f} {time.perf_counter() - tic:>6.0f}", flush=True)
        if len(drops) > 1:
            print(f"{reduction:>6.1f}x drop over {len(drops)} seeds: {np.mean(drops):.2f} +- {np.std(drops, ddof=1):.2f} pt",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
