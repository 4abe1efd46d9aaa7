"""Benchmark: how much a pruned network recovers per budget, learning rate and batch size.

``python -m edgeprune.bench recovery`` prunes a trained dense model (``--results``, default
``results``: run the dense stage first) with ``--method`` at ``--sparsity``, recovers a copy
through the project's one protocol (:class:`edgeprune.recover.protocol.Recovery`) for every
configuration of ``--configs`` (``STEPSxBATCH@LR``, ``@LR+kd`` adds distillation from the dense
teacher at T = 4, weight 0.9), and prints top-1 on ``--test-images`` test images with the seconds
each recovery took. This is how the profiles' ``finetune`` budgets were chosen
(docs/methods.md), and the way to choose them for another model or machine.
"""

from __future__ import annotations

import argparse
import copy
import re
import time

import torch

from edgeprune import prune
from edgeprune.checkpoints import load_dense
from edgeprune.data import load_prepared
from edgeprune.paths import ResultPaths
from edgeprune.recover.params import Budget, FinetuneParams
from edgeprune.recover.protocol import Recovery
from edgeprune.train import evaluate

DEFAULT_CONFIGS = ["8x256@0.01", "8x256@0.05", "8x256@0.1", "64x256@0.01", "64x256@0.05", "64x256@0.1", "64x256@0.2",
                   "64x128@0.05", "64x64@0.05", "128x128@0.05", "96x256@0.1", "64x256@0.05+kd"]  # fmt: skip
_CONFIG = re.compile(r"^(\d+)x(\d+)@([0-9.]+)(\+kd)?$")


def parse_config(text: str) -> tuple[int, int, float, float]:
    """``"64x256@0.1"`` -> (steps, batch, lr, distillation weight); a clear error otherwise."""
    match = _CONFIG.match(text)
    if match is None:
        raise ValueError(f"recovery config {text!r} is not STEPSxBATCH@LR or STEPSxBATCH@LR+kd (e.g. 64x256@0.1)")
    return int(match[1]), int(match[2]), float(match[3]), 0.9 if match[4] else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench recovery", description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results", help="results folder holding data/ and dense/")
    parser.add_argument("--model", default="mobilenet_v3_small")
    parser.add_argument("--seed", type=int, default=0, help="dense seed, and the recovery's seed")
    parser.add_argument("--method", default="l1_filter", choices=["l1_filter", "magnitude_structured"])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--round-to", type=int, default=8)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="STEPSxBATCH@LR[+kd] ...")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    configs = [parse_config(c) for c in args.configs]
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = ResultPaths.at(args.results)
    data = load_prepared(paths.prepared)
    dense = load_dense(paths, args.model, args.seed)
    test = data.test.subset(args.test_images, seed=0)
    pruned, report = prune.apply(dense, args.method, args.sparsity, round_to=args.round_to)
    print(f"{args.model}: dense {evaluate(dense, test.x, test.y):.2f}% on {len(test)} test images; "
          f"{args.method} removes {report.realised:.1%} of the channels ({torch.get_num_threads()} threads)")  # fmt: skip
    for text, (steps, batch, lr, distill) in zip(args.configs, configs):
        params = FinetuneParams(budgets=[Budget(steps=steps)], lr=lr, batch_size=batch, calib_images=args.calib_images,
                                distill_weight=distill)  # fmt: skip
        tic = time.perf_counter()
        model = Recovery(params, data.train).recover(copy.deepcopy(pruned), seed=args.seed, teacher=dense)
        seconds = time.perf_counter() - tic
        print(f"{text:>16}: {evaluate(model, test.x, test.y):6.2f}%  {seconds:6.1f} s", flush=True)
