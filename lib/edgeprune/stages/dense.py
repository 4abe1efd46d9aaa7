"""Stage 10_train_dense: train one model with one seed; keep final and rewind weights."""

from __future__ import annotations

import platform

import pandas as pd
import torch
from dvclive import Live

from edgeprune.config import Params
from edgeprune.data import load_prepared
from edgeprune.io import read_json, save_torch_atomic, write_json_atomic
from edgeprune.models import create_model
from edgeprune.paths import ResultPaths
from edgeprune.placement import resolve_device
from edgeprune.train import FitConfig, evaluate, fit, set_threads


def fit_config(params: Params, model_name: str, seed: int) -> FitConfig:
    t = params.train
    return FitConfig(
        epochs=t.epochs,
        lr=t.lr,
        batch_size=t.batch_size,
        momentum=t.momentum,
        weight_decay=t.weight_decay,
        label_smoothing=t.label_smoothing,
        schedule="onecycle",
        channels_last=t.channels_last,
        bf16=model_name in t.bf16_models,
        seed=seed,
        rewind_epoch=t.rewind_epoch,
        eval_batch_size=t.eval_batch_size,
    )


def run(params: Params, paths: ResultPaths, model_name: str, seed: int) -> dict:
    """Train, evaluate top-1 on the clean test split, write the run's files."""
    threads = set_threads(params.num_threads)
    device = resolve_device(params.device)
    data = load_prepared(paths.prepared)
    train = data.train.subset(params.train.train_subset, seed=params.data.split_seed)
    torch.manual_seed(seed)
    model = create_model(model_name, num_classes=data.num_classes)
    config = fit_config(params, model_name, seed)
    out = paths.dense(model_name, seed)
    checkpoint = paths.checkpoint(model_name, seed)
    # a fresh log every run: fit replays the epochs it restores from the checkpoint into it
    with Live(dir=str(paths.dvclive("dense", out.name)), save_dvc_exp=False, dvcyaml=None, report=None) as live:

        def log(epoch: int, record: dict[str, float]) -> None:
            live.step = epoch
            for key, value in record.items():
                if key != "epoch":
                    live.log_metric(key.replace("_", "/", 1), value)

        result = fit(model, train, config, device=device, val=data.val, checkpoint=checkpoint, on_epoch=log)
    metrics = {
        "model": model_name,
        "seed": seed,
        "epochs": config.epochs,
        "train_images": len(train),
        "val_top1": round(result.history[-1]["val_top1"], 4),
        "test_top1": round(evaluate(model, data.test.x, data.test.y, batch_size=config.eval_batch_size, device=device), 4),
        "params": sum(p.numel() for p in model.parameters()),
    }
    save_torch_atomic({"model": model_name, "num_classes": data.num_classes, "state_dict": model.state_dict()}, out / "model.pt")
    save_torch_atomic(
        {"model": model_name, "num_classes": data.num_classes, "epoch": config.rewind_epoch, "state_dict": result.rewind_state},
        out / "rewind.pt",
    )
    write_json_atomic(out / "metrics.json", metrics)
    write_json_atomic(
        out / "timing.json",
        {
            "train_seconds": round(result.seconds, 1),
            "resumed_from_epoch": result.resumed_from_epoch,
            "threads": threads,
            "device": str(device),
            "cpu": platform.processor() or platform.machine(),
        },
    )
    pd.DataFrame(result.history).to_csv(out / "history.csv", index=False)
    return metrics


def history(paths: ResultPaths, model_name: str, seed: int) -> pd.DataFrame:
    return pd.read_csv(paths.dense(model_name, seed) / "history.csv")


def timing(paths: ResultPaths, model_name: str, seed: int) -> dict:
    return read_json(paths.dense(model_name, seed) / "timing.json")
