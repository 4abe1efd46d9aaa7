"""Training, fine-tuning and evaluation on uint8 image tensors held in memory.

One loop serves dense training (one-cycle schedule) and the recovery of pruned or
quantized networks (cosine schedule, optionally distilled from a teacher; the protocol
around it is :mod:`edgeprune.recover`). Every epoch draws its permutation, augmentation
and dropout from ``seed`` and the epoch index alone, so a run resumed from a checkpoint
takes exactly the steps an uninterrupted run would have taken.
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
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from edgeprune.data import Split, apply_condition, normalize, random_crop_flip
from edgeprune.io import save_torch_atomic
from edgeprune.placement import place

EpochCallback = Callable[[int, dict[str, float]], None]


WORKERS_ENV = "EDGEPRUNE_WORKERS"
"""Environment variable: how many pipelines share this machine (``make queue WORKERS=N`` sets it for
``dvc queue start -j N``); ``num_threads: 0`` then gives each one cores / N threads."""


def default_threads() -> int:
    """``num_threads: 0``: every core, or cores / ``$EDGEPRUNE_WORKERS`` (at least 1) when set.

    Two processes of all-core OpenMP threads on one CPU oversubscribe it: two 2-thread jobs on
    a 2-core host made batch-64 inference swing from 15 ms to 1.5 s a batch.
    """
    cores = os.cpu_count() or 1
    raw = os.environ.get(WORKERS_ENV, "").strip()
    if not raw:
        return cores
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{WORKERS_ENV} must be a whole number >= 1 (the parallel pipelines), got {raw!r}")
    return max(1, cores // int(raw))


def set_threads(num_threads: int) -> int:
    """Set torch's intra-op thread count (0 = :func:`default_threads`) and return the count in force."""
    if num_threads < 0:
        raise ValueError(f"num_threads must be >= 0, got {num_threads}")
    torch.set_num_threads(num_threads or default_threads())
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
    distill_weight: float = 0.0  # with a teacher: weight of the distillation term (0 = plain cross-entropy)
    distill_temperature: float = 4.0

    def __post_init__(self) -> None:
        if self.epochs <= 0:
            raise ValueError(f"epochs must be > 0, got {self.epochs}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.schedule not in ("onecycle", "cosine"):
            raise ValueError(f"schedule must be 'onecycle' or 'cosine', got {self.schedule!r}")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise ValueError(f"distill_weight must lie in [0, 1], got {self.distill_weight}")
        if not self.distill_temperature > 0:
            raise ValueError(f"distill_temperature must be > 0, got {self.distill_temperature}")

    def fingerprint(self, extra: dict | None = None) -> str:
        """A hash identifying the run, so a checkpoint of another configuration is never resumed.

        The distillation fields enter only when distillation is on, so the runs (and resumable
        checkpoints) of plain training keep the fingerprints they had before those fields existed.
        """
        fields = asdict(self)
        if self.distill_weight == 0.0:
            del fields["distill_weight"], fields["distill_temperature"]
        blob = json.dumps({**fields, **(extra or {})}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass
class FitResult:
    """What a run produced: per-epoch history, the rewind weights if asked for, timing."""

    history: list[dict[str, float]] = field(default_factory=list)
    rewind_state: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    resumed_from_epoch: int = 0


def distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    temperature: float,
    weight: float,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015): ``(1 - w) CE(student, labels) + w T² KL(p_T ‖ q_T)``.

    ``p_T`` and ``q_T`` are the teacher's and the student's softmax at temperature ``T``; the
    ``T²`` factor keeps the soft term's gradients on the scale of the hard term's. The KL is
    averaged over the batch.
    """
    hard = F.cross_entropy(student, labels, label_smoothing=label_smoothing)
    if weight == 0.0:
        return hard
    soft = F.kl_div(
        F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
        reduction="batchmean", log_target=True,
    )  # fmt: skip
    return (1.0 - weight) * hard + weight * temperature**2 * soft


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
    """Logits for uint8 images ``x``, in eval mode, batched; ``model`` is first placed on ``device`` (in place)."""
    device = torch.device(device)
    place(model, device).eval()
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
    teacher: nn.Module | None = None,
    regularize: Callable[[nn.Module], None] | None = None,
) -> FitResult:
    """Train ``model`` in place with SGD (Nesterov) and label smoothing.

    With a ``teacher`` and ``config.distill_weight`` > 0 the loss is
    :func:`distillation_loss` against the teacher's logits on the same augmented batch
    (the teacher stays in eval mode and is not trained). With ``checkpoint`` set, the state
    is saved after every epoch and a matching checkpoint (same config fingerprint and data
    size) is resumed from; ``on_epoch`` is then first called for every restored epoch, so a
    log it writes covers the whole run. ``regularize(model)`` runs after each backward pass,
    before the step: it adds a penalty's (sub)gradient to the parameters' gradients.
    """
    device = torch.device(device)
    steps_per_epoch = len(train) // config.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {config.batch_size} exceeds the {len(train)} training images")
    total_steps = max(1, round(config.epochs * steps_per_epoch))
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    place(model, device, memory_format)
    optimizer = torch.optim.SGD(
        _param_groups(model, config.weight_decay), lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0
    )
    if config.schedule == "onecycle" and total_steps >= 8:  # shorter runs cannot hold a warm-up phase
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=0.25, div_factor=10, final_div_factor=100
        )
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    distill = teacher is not None and config.distill_weight > 0
    if distill:
        teacher = place(teacher, device, memory_format).eval()
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
                with torch.no_grad():
                    soft_targets = teacher(xb).float() if distill else None
            loss = distillation_loss(
                logits.float(), soft_targets, yb, temperature=config.distill_temperature,
                weight=config.distill_weight if distill else 0.0, label_smoothing=config.label_smoothing,
            )  # fmt: skip
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if regularize is not None:
                regularize(model)
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
