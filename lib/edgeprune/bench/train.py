"""Quick-profile dense training: wall time and test top-1 against the foundation targets.

Targets (issue 2): mobilenet_v3_small >= 75% top-1 on the CIFAR-10 (JPEG) test split within
6 minutes of training on a 2-core CPU (quick profile); >= 85% in the paper profile.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from edgeprune.config import load_params
from edgeprune.paths import ResultPaths, from_root
from edgeprune.stages import data as data_stage
from edgeprune.stages import dense


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.bench train", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", help="default: the first of train.models")
    parser.add_argument("--seed", type=int, help="default: the first of train.seeds")
    parser.add_argument("--min-top1", type=float, help="target top-1 (default 75 quick / 85 paper)")
    parser.add_argument("--max-minutes", type=float, default=6.0)
    args = parser.parse_args(argv)
    params = load_params(from_root(args.params))
    model = args.model or params.train.models[0]
    seed = params.train.seeds[0] if args.seed is None else args.seed
    target = args.min_top1 or (85.0 if params.profile == "paper" else 75.0)
    with tempfile.TemporaryDirectory(prefix="edgeprune-bench-") as tmp:
        paths = ResultPaths(Path(tmp))
        tic = time.perf_counter()
        data_stage.run(params, paths)
        prep_s = time.perf_counter() - tic
        tic = time.perf_counter()
        metrics = dense.run(params, paths, model, seed)
        stage_s = time.perf_counter() - tic
        timing = dense.timing(paths, model, seed)
    minutes = timing["train_seconds"] / 60
    ok = metrics["test_top1"] >= target and minutes <= args.max_minutes
    print(f"model {model} seed {seed} ({params.profile} profile, {params.train.epochs} epochs, {timing['threads']} threads, {timing['cpu']})")
    print(f"data preparation        {prep_s:7.1f} s")
    print(f"training (epoch loops)  {timing['train_seconds']:7.1f} s  = {minutes:.2f} min (target <= {args.max_minutes} min)")
    print(f"whole stage             {stage_s:7.1f} s  (incl. per-epoch validation and test evaluation)")
    print(f"test top-1              {metrics['test_top1']:7.2f} %  (target >= {target}%; val {metrics['val_top1']:.2f}%)")
    print("PASS" if ok else "MISS")
