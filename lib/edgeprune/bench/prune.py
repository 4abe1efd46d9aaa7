"""Benchmark: does structured pruning realise its MACs reduction as measured speed?

``python -m edgeprune.bench prune`` prunes 50% of the channels of mobilenet_v2 and
vgg19_bn (random weights: speed does not depend on their values) with L1 filter
pruning (kept channels rounded to multiples of ``--round-to``, 8 as in ``baselines.round_to``)
and prints, per model and runtime (``--runtimes``, :mod:`edgeprune.runtimes`: torch eager by
default, ONNX Runtime, fused BN, ...), the measured batch-64 CPU speedup of the pruned network
over the dense one in the same runtime, the MACs reduction, their ratio and PASS / FAIL against
the target ratio (0.75). Dense and pruned networks are timed in alternating rounds so that load
from other processes hits both alike; each figure is the median of the rounds' medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

import torch

from edgeprune.models import create_model
from edgeprune.prune import apply
from edgeprune.runtimes import RUNTIMES, check_runtime, prepare
from edgeprune.timing import cpu_model, time_call

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
    parser.add_argument("--runtimes", nargs="+", default=["eager"], choices=list(RUNTIMES),
                        help="runtimes both networks run in (edgeprune.runtimes)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for name in args.runtimes:
        check_runtime(name)
    torch.manual_seed(0)
    threads = args.threads or torch.get_num_threads()
    calib = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = torch.randn(args.batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    print(f"cpu: {cpu_model()}, load {os.getloadavg()[0]:.1f}, threads: {threads}, batch {args.batch_size}")
    header = ("model", "runtime", "dense ms", "pruned ms", "speedup", "MACs red.", "ratio")
    print(f"{header[0]:14s} {header[1]:10s} {header[2]:>9s} {header[3]:>9s} {header[4]:>8s} {header[5]:>9s} {header[6]:>6s}"
          f"  target >= {TARGET}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            dense = create_model(name).eval()
            pruned, report = apply(dense, args.method, args.sparsity, round_to=args.round_to)
            for runtime in args.runtimes:
                ready = [prepare(runtime, m, calib, threads=threads, workdir=Path(tmp) / name / runtime / tag)
                         for m, tag in ((dense, "dense"), (pruned, "pruned"))]  # fmt: skip
                times: list[list[float]] = [[], []]
                for _ in range(args.rounds):
                    for predict, out in zip(ready, times):
                        out.append(time_call(lambda: predict(x), warmup=args.warmup, repeats=args.repeats,
                                             threads=threads).median_ms)  # fmt: skip
                d, p = (statistics.median(t) for t in times)
                speedup = d / p
                ratio = speedup / report.macs_reduction
                verdict = "PASS" if ratio >= TARGET else "FAIL"
                print(
                    f"{name:14s} {runtime:10s} {d:9.1f} {p:9.1f} {speedup:7.2f}x {report.macs_reduction:8.2f}x {ratio:6.2f}"
                    f"  {verdict}  ({args.method}, {report.realised:.1%} channels removed, round_to {args.round_to})"
                )
