"""Training, fine-tuning and evaluation on uint8 image tensors held in memory.

One loop serves dense training (one-cycle schedule) and the fine-tuning after pruning
(cosine schedule). Every epoch draws its permutation, augmentation and dropout from
``seed`` and the epoch index alone, so a run resumed from a checkpoint takes exactly the
steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from edgeprune.data import Split, apply_condition, normalize, random_crop_flip
from edgeprune.io import save_torch_atomic

EpochCallback = Callable[[int, dict[str, float]], None]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available (use 'auto' or 'cpu')")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device(device)


def set_threads(num_threads: int) -> int:
    """Set torch's intra-op thread count (0 = all cores) and return the count in force."""
    if num_threads < 0:
        raise ValueError(f"num_threads must be >= 0, got {num_threads}")
    torch.set_num_threads(num_threads or os.cpu_count() or 1)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of one training or fine-tuning run."""

    epochs: float
    lr: float
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    schedule: str = "onecycle"  # "onecycle" (dense training; cosine below 8 steps) or "cosine" (fine-tuning)
    channels_last: bool = True
    bf16: bool = False
    seed: int = 0
    rewind_epoch: int | None = None  # keep the weights after this epoch (0 = initial weights)
    eval_batch_size: int = 1000

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in ("onecycle", "cosine"):
            raise ValueError(f"schedule must be 'onecycle' or 'cosine', got {self.schedule!r}")

    def fingerprint(self, extra: dict | None = None) -> str:
        """A hash identifying the run, so a checkpoint of another configuration is never resumed."""
        blob = json.dumps({**asdict(self), **(extra or {})}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass
class FitResult:
    """What a run produced: per-epoch history, the rewind weights if asked for, timing."""

    history: list[dict[str, float]] = field(default_factory=list)
    rewind_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    resumed_from_epoch: int = 0


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BatchNorm parameters and biases (1-d tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _to_input(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = normalize(x.to(device, non_blocking=True))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.no_grad()
def predict(
    model: nn.Module, x: torch.Tensor, *, batch_size: int = 1000, device: str | torch.device = "cpu"
) -> torch.Tensor:
    """Logits for uint8 images ``x``, in eval mode, batched."""
    device = torch.device(device)
    model.eval()
    channels_last = _is_channels_last(model)
    outs = [model(_to_input(x[i : i + batch_size], device, channels_last)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int = 1000,
    device: str | torch.device = "cpu",
    condition: str = "clean",
    severity: int = 3,
) -> float:
    """Top-1 accuracy (%) on uint8 images under a shift condition (deterministic)."""
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"evaluate needs as many labels as images (> 0), got {len(x)} images, {len(y)} labels")
    x = apply_condition(x, condition, severity, seed=0)
    logits = predict(model, x, batch_size=batch_size, device=device)
    return 100.0 * (logits.argmax(1) == y).float().mean().item()


def _is_channels_last(model: nn.Module) -> bool:
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv is not None and conv.weight.is_contiguous(memory_format=torch.channels_last) and conv.weight.shape[-1] > 1


def fit(
    model: nn.Module,
    train: Split,
    config: FitConfig,
    *,
    device: str | torch.device = "cpu",
    val: Split | None = None,
    checkpoint: str | Path | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
) -> FitResult:
    """Train ``model`` in place with SGD (Nesterov) and label smoothing.

    With ``checkpoint`` set, the state is saved after every epoch and a matching
    checkpoint (same config fingerprint and data size) is resumed from; ``on_epoch`` is
    then first called for every restored epoch, so a log it writes covers the whole run.
    """
    device = torch.device(device)
    steps_per_epoch = len(train) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(train)} training images")
    total_steps = max(1, round(config.epochs * steps_per_epoch))
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(device=device, memory_format=memory_format)
    optimizer = torch.optim.SGD(
        _param_groups(model, config.weight_decay), lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0
    )
    if config.schedule == "onecycle" and total_steps >= 8:  # shorter runs cannot hold a warm-up phase
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.25, div_factor=10, final_div_factor=100
        )
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    fingerprint = config.fingerprint({"n_train": len(train)})
    result = FitResult()
    if config.rewind_epoch == 0:
        result.rewind_state = _cpu_state(model)

    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        if state.get("fingerprint") == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch = result.resumed_from_epoch = int(state["epoch"])
            result.history = json.loads(state["history"])
            result.rewind_state = state.get("rewind")
            result.seconds = float(state["seconds"])
            if on_epoch is not None:  # the restored epochs too: the callback sees the whole run, in order
                for record in result.history:
                    on_epoch(int(record["epoch"]), record)

    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, n_epochs):
        tic = time.perf_counter()
        seed_everything(config.seed * 100_003 + epoch)  # dropout etc. depend on (seed, epoch) only
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(len(train), generator=generator)
        model.train()
        running_loss = running_correct = seen = 0.0
        steps = min(steps_per_epoch, total_steps - step)
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{n_epochs}", disable=not progress, mininterval=5, leave=False)
        for i in bar:
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            xb = _to_input(random_crop_flip(train.x[idx], generator), device, config.channels_last)
            yb = train.y[idx].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16):
                logits = model(xb)
                loss = loss_fn(logits.float(), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            running_loss += loss.item() * len(yb)
            running_correct += (logits.argmax(1) == yb).sum().item()
            seen += len(yb)
            bar.set_postfix(loss=f"{running_loss / seen:.3f}", refresh=False)
        result.seconds += time.perf_counter() - tic
        record = {
            "epoch": epoch + 1,
            "train_loss": running_loss / seen,
            "train_top1": 100.0 * running_correct / seen,
            "lr": scheduler.get_last_lr()[0],
        }
        if val is not None:
            record["val_top1"] = evaluate(model, val.x, val.y, batch_size=config.eval_batch_size, device=device)
        result.history.append(record)
        if config.rewind_epoch == epoch + 1:
            result.rewind_state = _cpu_state(model)
        if checkpoint is not None:
            save_torch_atomic(
                {
                    "fingerprint": fingerprint,
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "history": json.dumps(result.history),
                    "rewind": result.rewind_state,
                    "seconds": result.seconds,
                },
                checkpoint,
            )
        if on_epoch is not None:
            on_epoch(epoch + 1, record)
    model.eval()
    return result


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def fine_tune(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: float,
    lr: float,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
    weight_decay: float = 5e-4,
    bf16: bool = False,
    progress: bool = False,
) -> nn.Module:
    """Briefly retrain a (pruned) model with a cosine schedule; returns it in eval mode."""
    config = FitConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, schedule="cosine", seed=seed, weight_decay=weight_decay, bf16=bf16
    )
    fit(model, Split(x, y), config, device=device, progress=progress)
    return model
