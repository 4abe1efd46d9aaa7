"""Benchmark: where real CPU speed can come from at 32x32, runtime by runtime (issue 17, item 4).

``python -m edgeprune.bench runtime`` loads each model's trained dense weights from ``--results``
when the pipeline has made them (``dense/<model>-s0/model.pt``), else builds it with random weights
(speed does not depend on the values; BatchNorm statistics are then re-estimated on the
calibration images so activations have a trained network's scale, but a random network's logits
are close together, so its int8 top-1 agreement understates a trained one's), prepares it under every runtime of :mod:`edgeprune.runtimes` (eager, fused BN,
torch.compile, torch.ao int8, ONNX Runtime fp32 and QDQ int8) and times batch-1 (and
``--batch-sizes``) inference at each thread count with the project's one timer. Runtimes are
timed in alternating rounds; each figure is the median of the rounds' medians, and every speedup
is against eager *in the same run, model and thread count*, so host drift cancels. Correctness
beside speed: the largest logit difference from eager (fp32 runtimes) and the top-1 agreement
with eager on the calibration images (int8 runtimes). A runtime that cannot be prepared here
(no compiler, package missing) is reported with its error, not skipped silently.

The last lines name the runtime the device runner should default to: the one with the best
geometric-mean batch-1 speedup over the models at the lowest thread count whose outputs agree
with eager (fp32: max |Δlogit| ≤ 1e-4 of the largest logit; int8: ≥ 90 % top-1 agreement).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from pathlib import Path

import torch

from edgeprune.data import load_prepared, normalize
from edgeprune.checkpoints import load_dense
from edgeprune.models import create_model
from edgeprune.paths import ResultPaths
from edgeprune.prune import recalibrate_bn
from edgeprune.runtimes import RUNTIMES, check_runtime, prepare
from edgeprune.timing import cpu_model, time_call

FP32_TOLERANCE = 1e-4  # of the largest |logit|
INT8_AGREEMENT = 0.9


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench runtime", description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mobilenet_v3_small", "mobilenet_v2"])
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=list(RUNTIMES))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1])
    parser.add_argument("--results", default="results", help="where trained dense models are looked for")
    parser.add_argument("--calib-images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds over the runtimes")
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per round")
    parser.add_argument("--warmup", type=int, default=5)
    return parser.parse_args(argv)


def _model(name: str, paths: ResultPaths, calib: torch.Tensor) -> tuple[torch.nn.Module, str]:
    """The trained dense model of the pipeline's first seed if there is one, else random weights."""
    trained = paths.dense(name, 0) / "model.pt"
    if trained.is_file():
        return load_dense(paths, name, 0).eval(), f"trained: {trained}"
    torch.manual_seed(0)
    return recalibrate_bn(create_model(name), calib), "random weights"


def _agreement(name: str, predict, reference: torch.Tensor, x: torch.Tensor) -> tuple[str, bool]:
    """How far ``predict``'s logits on ``x`` are from eager's (``reference``), and whether that is close enough."""
    logits = predict(x).float()
    if name.endswith("int8"):
        share = float((logits.argmax(1) == reference.argmax(1)).float().mean())
        return f"top-1 agree {share:.0%}", share >= INT8_AGREEMENT
    diff = float((logits - reference).abs().max() / reference.abs().max())
    return f"max |Δ| {diff:.1e} of max |logit|", diff <= FP32_TOLERANCE


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    gen = torch.Generator().manual_seed(0)
    paths = ResultPaths.at(args.results)
    if paths.prepared.is_file():  # real images: int8 calibrated on training images, checked on test images
        data = load_prepared(paths.prepared)
        calib, probe = data.train.subset(args.calib_images, seed=0).x, normalize(data.test.subset(1000, seed=0).x)
    else:
        calib = torch.randint(0, 256, (args.calib_images, 3, 32, 32), dtype=torch.uint8, generator=gen)
        probe = normalize(calib)
    print(f"cpu: {cpu_model()}, cores {os.cpu_count()}, load {os.getloadavg()[0]:.1f}, torch {torch.__version__}")
    speedups: dict[tuple[str, int], list[float]] = {}
    usable: dict[tuple[str, int], bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model_name in args.models:
            model, weights = _model(model_name, paths, calib)
            with torch.inference_mode():
                reference = model(probe)
            for threads in args.threads:
                ready, notes = {}, {}
                for name in args.runtimes:
                    try:
                        check_runtime(name)
                        ready[name] = prepare(name, model, calib, threads=threads, workdir=Path(tmp) / model_name / name)
                        notes[name], ok = _agreement(name, ready[name], reference, probe)
                        usable[name, threads] = usable.get((name, threads), True) and ok
                    except Exception as err:  # reported, not hidden: no compiler, missing package, export failure
                        notes[name] = f"unavailable: {type(err).__name__}: {str(err).splitlines()[0][:90]}"
                        usable[name, threads] = False
                for batch in args.batch_sizes:
                    x = torch.randn(batch, 3, 32, 32, generator=gen)
                    medians: dict[str, list[float]] = {name: [] for name in ready}
                    for _ in range(args.rounds):
                        for name, predict in ready.items():
                            timed = time_call(lambda: predict(x), warmup=args.warmup, repeats=args.repeats, threads=threads)
                            medians[name].append(timed.median_ms)
                    eager = statistics.median(medians["eager"]) if "eager" in medians else math.nan
                    print(f"\n{model_name} ({weights}), {threads} thread(s), batch {batch}: load {os.getloadavg()[0]:.1f}")
                    print(f"  {'runtime':11s} {'median ms':>10s} {'vs eager':>9s}  check")
                    for name in args.runtimes:
                        if name not in medians:
                            print(f"  {name:11s} {'—':>10s} {'—':>9s}  {notes[name]}")
                            continue
                        ms = statistics.median(medians[name])
                        print(f"  {name:11s} {ms:10.2f} {eager / ms:8.2f}x  {notes[name]}")
                        if batch == 1:
                            speedups.setdefault((name, threads), []).append(eager / ms)
    threads = min(args.threads)
    ranked = sorted(
        ((math.exp(statistics.fmean(map(math.log, s))), name) for (name, t), s in speedups.items()
         if t == threads and usable.get((name, t)) and len(s) == len(args.models)),
        reverse=True,
    )  # fmt: skip
    print(f"\nbatch-1 geometric-mean speedup over eager, {threads} thread(s), outputs checked:")
    for gain, name in ranked:
        print(f"  {name:11s} {gain:5.2f}x  ({RUNTIMES[name].description})")
    if ranked:
        print(f"device runner default (fastest that agrees with eager): {ranked[0][1]}")
