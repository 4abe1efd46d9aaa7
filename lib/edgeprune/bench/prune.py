"""Benchmark: does structured pruning realise its MACs reduction as measured speed?

``python -m edgeprune.bench prune`` prunes 50% of the channels of mobilenet_v2 and
vgg19_bn (random weights: speed does not depend on their values) with L1 filter
pruning (kept channels rounded to multiples of ``--round-to``, 8 as in ``baselines.round_to``) and prints, per model, the measured batch-64 CPU speedup over the dense model,
the MACs reduction, their ratio and PASS / FAIL against the target ratio (0.75).
Dense and pruned models are timed in alternating rounds so that load from other
processes hits both alike; each figure is the median of the rounds' medians.
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from edgeprune.harness import measure_latency
from edgeprune.timing import cpu_model
from edgeprune.models import create_model
from edgeprune.prune import apply

TARGET = 0.75


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench prune", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2", "vgg19_bn"])
    parser.add_argument("--method", default="l1_filter", choices=["l1_filter", "magnitude_structured"])
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of prunable channels removed")
    parser.add_argument("--round-to", type=int, default=8, help="channels kept per layer rounded to a multiple of this")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="alternating dense / pruned timing rounds")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    timing = {"warmup": args.warmup, "repeats": args.repeats, "threads": args.threads}
    threads = args.threads or torch.get_num_threads()
    print(f"cpu: {cpu_model()}, load {os.getloadavg()[0]:.1f}, threads: {threads}, batch {args.batch_size}")
    header = ("model", "dense ms", "pruned ms", "speedup", "MACs red.", "ratio")
    print(f"{header[0]:14s} {header[1]:>9s} {header[2]:>9s} {header[3]:>8s} {header[4]:>9s} {header[5]:>6s}  target >= {TARGET}")
    for name in args.models:
        dense = create_model(name).eval()
        pruned, report = apply(dense, args.method, args.sparsity, round_to=args.round_to)
        dense_ms, pruned_ms = [], []
        for _ in range(args.rounds):
            dense_ms.append(measure_latency(dense, batch_size=args.batch_size, **timing)["median_ms"])
            pruned_ms.append(measure_latency(pruned, batch_size=args.batch_size, **timing)["median_ms"])
        d, p = statistics.median(dense_ms), statistics.median(pruned_ms)
        speedup = d / p
        ratio = speedup / report.macs_reduction
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        print(
            f"{name:14s} {d:9.1f} {p:9.1f} {speedup:7.2f}x {report.macs_reduction:8.2f}x {ratio:6.2f}  {verdict}"
            f"  ({args.method}, {report.realised:.1%} channels removed, round_to {args.round_to})"
        )

