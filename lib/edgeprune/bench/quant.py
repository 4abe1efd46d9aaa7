"""Benchmark: measured speedup of real int8 (torch.ao FX) over fp32 eager on the CPU.

``python -m edgeprune.bench quant`` converts mobilenet_v2 (random weights, calibrated
on random images: speed does not depend on the values) to int8 with the platform's
backend and prints the batch-64 latency of both, the speedup and PASS / FAIL against
the target (3x). The two models are timed in alternating rounds; each figure is the
median of the rounds' medians.
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch

from edgeprune.harness import measure_latency
from edgeprune.models import create_model
from edgeprune.quant import quantize_int8
from edgeprune.timing import cpu_model, quantized_engine

TARGET = 3.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench quant", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v2"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--calib-images", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3, help="alternating fp32 / int8 timing rounds")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    calib = torch.randint(0, 256, (args.calib_images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    timing = {"warmup": args.warmup, "repeats": args.repeats, "threads": args.threads}
    backend = quantized_engine()
    threads = args.threads or torch.get_num_threads()
    print(f"cpu: {cpu_model()}, load {os.getloadavg()[0]:.1f}, threads: {threads}, batch {args.batch_size}, backend {backend}")
    print(f"{'model':14s} {'fp32 ms':>9s} {'int8 ms':>9s} {'speedup':>8s}  target >= {TARGET}x")
    for name in args.models:
        fp32 = create_model(name).eval()
        int8 = quantize_int8(fp32, calib, backend=backend)
        fp32_ms, int8_ms = [], []
        for _ in range(args.rounds):
            fp32_ms.append(measure_latency(fp32, batch_size=args.batch_size, **timing)["median_ms"])
            int8_ms.append(measure_latency(int8, batch_size=args.batch_size, **timing)["median_ms"])
        f, q = statistics.median(fp32_ms), statistics.median(int8_ms)
        verdict = "PASS" if f / q >= TARGET else "FAIL"
        print(f"{name:14s} {f:9.1f} {q:9.1f} {f / q:7.2f}x  {verdict}")

