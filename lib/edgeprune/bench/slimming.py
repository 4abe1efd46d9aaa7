"""Benchmark: network slimming's L1-regularised training at a given budget, on the pipeline's dense model.

``python -m edgeprune.bench slimming`` trains the quick profile's dense model (``results/dense/<model>-s0``)
with an L1 penalty on its BatchNorm scales for ``--steps`` at each ``--penalties`` value
(:meth:`edgeprune.recover.protocol.Recovery.sparsity_train`, ``params.yaml``'s ``finetune`` settings),
then prunes ``--sparsity`` of the channels by scale (``l1_regularised``) and recovers at each
``finetune`` budget; Li et al.'s ``l1_filter`` on the untouched dense model is the row to beat. It
prints the regularised network's top-1, the share of scales below 0.01, and top-1 after each recovery
budget, on ``--test-images`` test images. What chose the profiles' ``baselines.slimming`` settings.
"""

from __future__ import annotations

import argparse
import copy

import torch

from edgeprune import prune
from edgeprune.bench._pipeline import load_pipeline_model
from edgeprune.recover.params import Budget
from edgeprune.train import evaluate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench slimming", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--results", default="results")
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--penalties", nargs="+", type=float, default=[1e-4, 1e-3, 1e-2, 3e-2, 1e-1])
    parser.add_argument("--steps", type=int, default=64, help="SGD steps of L1-regularised training")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--test-images", type=int, default=1000)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    run = load_pipeline_model(args.params, args.results, args.model, args.test_images)
    params, test, dense, recovery = run.params, run.test, run.dense, run.recovery
    budgets = range(len(params.finetune.budgets))
    steps = [recovery.schedule(b).steps for b in budgets]
    top1 = lambda net: evaluate(net, test.x, test.y)  # noqa: E731
    recovered = lambda net: " ".join(f"{top1(recovery.recover(copy.deepcopy(net), seed=0, budget=b, teacher=dense)):5.1f}" for b in budgets)  # noqa: E731
    print(f"{args.model} dense top-1 {top1(dense):.1f} on {len(test)} test images; sparsity {args.sparsity:.0%}, "
          f"recovery steps {steps}")  # fmt: skip
    pruned, report = prune.apply(dense, "l1_filter", args.sparsity, round_to=8)
    print(f"l1_filter (Li et al., no training)            realised {report.realised:.2f}  recovered {recovered(pruned)}")
    for penalty in args.penalties:
        net = recovery.sparsity_train(copy.deepcopy(dense), seed=0, budget=Budget(steps=args.steps), penalty=penalty)
        scales = torch.cat([m.weight.detach().abs() for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)])
        pruned, report = prune.apply(net, "l1_regularised", args.sparsity, round_to=8)
        print(f"l1_regularised λ {penalty:<7g} trained {top1(net):5.1f}  |γ|<0.01 {float((scales < 0.01).float().mean()):4.0%}"
              f"  realised {report.realised:.2f}  recovered {recovered(pruned)}")  # fmt: skip
