"""The pruning controller: watch a stream, re-prune when it degrades or a timer fires.

Per batch the controller runs the deployed network and records top-1 (for the plots),
mean prediction entropy and latency. Its trigger reads only what a deployed system
would have:

- ``labels`` monitor: top-1 of the batches whose labels have arrived (``label_delay``
  batches late), averaged over the last ``window`` of them;
- ``entropy`` monitor: mean prediction entropy over the last ``window`` batches, no
  labels at all;
- latency: the window's median batch latency against ``latency_budget_ms``, if set;
- timer: every ``timer`` batches since the last deployment, if set.

The reference a monitor compares with is the first full window after each re-prune:
after one the network defines "normal" again, so a persistent shift does not trigger
over and over. A drift back to an easier condition does not degrade the monitors; the
timer is what catches it. Every trigger is logged.

With ``accept="better"`` a re-pruned network is a candidate, deployed only if it scores
at least as well as the deployed one on recent data it was not fine-tuned on: the
newest labelled batch of the buffer, held out of fine-tuning (top-1), or, with no
labels, the whole buffer (lower mean prediction entropy wins). A re-prune from the
dense weights on a few hundred images can be far worse than a network fine-tuned
offline; the gate keeps such a cycle from replacing it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from edgeprune.data import apply_condition, normalize
from edgeprune.qsa.params import ControllerParams


@dataclass(frozen=True)
class ImageBatch:
    """One batch of QSA's stream: its position, condition and the shifted uint8 images with labels.

    The controller sees the images as they arrive; AKPERL's stream carries test-split indices
    instead (:class:`edgeprune.akperl.dynamic.IndexBatch`)."""

    index: int
    condition: str
    x: torch.Tensor
    y: torch.Tensor


def make_image_stream(
    x: torch.Tensor,
    y: torch.Tensor,
    conditions: Sequence[str],
    *,
    batches_per_condition: int,
    batch_size: int,
    severity: int = 3,
    seed: int = 0,
) -> list[ImageBatch]:
    """A non-stationary stream: one segment of ``batches_per_condition`` batches per condition.

    Images are drawn without replacement from ``x`` in a seeded order; each segment's
    images get its condition (:func:`edgeprune.data.apply_condition`).
    """
    if len(conditions) == 0:
        raise ValueError("a stream needs at least one condition, got none")
    if batches_per_condition < 1 or batch_size < 1:
        raise ValueError(f"need batches_per_condition >= 1 and batch_size >= 1, got {batches_per_condition}, {batch_size}")
    per_segment = batches_per_condition * batch_size
    needed = len(conditions) * per_segment
    if needed > len(x):
        raise ValueError(f"the stream needs {needed} images ({len(conditions)} conditions x {per_segment}), only {len(x)} given")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    stream = []
    for s, condition in enumerate(conditions):
        idx = order[s * per_segment : (s + 1) * per_segment]
        images = apply_condition(x[idx], condition, severity, seed=seed * 1000 + s)
        for b in range(batches_per_condition):
            part = slice(b * batch_size, (b + 1) * batch_size)
            stream.append(ImageBatch(len(stream), condition, images[part], y[idx][part]))
    return stream


@dataclass
class Deployment:
    """A deployed network and what describes it (compression, channel fraction ...)."""

    model: nn.Module
    info: dict[str, Any] = field(default_factory=dict)


# reprune(recent_x, recent_y): recent uint8 images, and the labels of the first
# len(recent_y) of them when labels have arrived (None otherwise) -> the new deployment.
Reprune = Callable[[torch.Tensor, torch.Tensor | None], Deployment]


@torch.no_grad()
def run_batch(model: nn.Module, batch: ImageBatch) -> dict[str, float]:
    """Top-1 (%), mean prediction entropy (nats) and wall-clock latency (ms) on one batch."""
    model.eval()
    start = time.perf_counter()
    logits = model(normalize(batch.x))
    latency = (time.perf_counter() - start) * 1e3
    logp = torch.log_softmax(logits.float(), 1)
    return {
        "top1": 100.0 * float((logits.argmax(1) == batch.y).float().mean()),
        "entropy": float(-(logp.exp() * logp).sum(1).mean()),
        "latency_ms": latency,
    }


class DriftController:
    """Monitors a deployed network on a stream and re-prunes through ``reprune``.

    ``reprune(recent_x, recent_y)`` gets the images of the last ``buffer_batches``
    batches and, with the labels monitor, the labels that have arrived among them
    (for the first ``len(recent_y)`` images; None otherwise), and returns the
    candidate :class:`Deployment` (deployed as configured by ``accept``). With
    ``reprune=None`` the network stays fixed (the no-controller arms) while the
    signals are still logged.
    """

    def __init__(self, deployment: Deployment, reprune: Reprune | None, config: ControllerParams) -> None:
        self.deployment = deployment
        self.reprune = reprune
        self.config = config
        self.reference: dict[str, float] | None = None
        self.records: list[dict[str, Any]] = []
        self.triggers: list[dict[str, Any]] = []
        self._batches: list[ImageBatch] = []
        self.deployments = 0  # re-pruned networks deployed so far
        self._deployed_at = 0  # index of the first batch since the last re-prune

    def _labelled(self, now: int) -> list[dict[str, Any]]:
        """Records of the current network whose labels have arrived by batch ``now``."""
        return [r for r in self.records if self._deployed_at <= r["batch"] <= now - self.config.label_delay]

    def _signal(self, now: int) -> tuple[str, float] | None:
        """(name, value) of the monitored quantity over the last full window, None until full."""
        w = self.config.window
        if self.config.monitor == "labels":
            seen = self._labelled(now)
            return ("top1", statistics.fmean(r["top1"] for r in seen[-w:])) if len(seen) >= w else None
        seen = [r for r in self.records if r["batch"] >= self._deployed_at]
        return ("entropy", statistics.fmean(r["entropy"] for r in seen[-w:])) if len(seen) >= w else None

    def _reason(self, now: int) -> tuple[str, float, float] | None:
        """Why to re-prune after batch ``now`` (reason, signal, reference), or None."""
        c = self.config
        since = now - self._deployed_at + 1
        if since <= c.cooldown:
            return None
        if c.timer is not None and since >= c.timer:
            return ("timer", float(since), float(c.timer))
        current = [r for r in self.records if r["batch"] >= self._deployed_at][-c.window :]
        if c.latency_budget_ms is not None and len(current) >= c.window:
            latency = statistics.median(r["latency_ms"] for r in current)
            if latency > c.latency_budget_ms:
                return ("latency", latency, c.latency_budget_ms)
        signal = self._signal(now)
        if signal is None:
            return None
        name, value = signal
        if self.reference is None or name not in self.reference:
            self.reference = {**(self.reference or {}), name: value}  # the first full window defines normal
            return None
        ref = self.reference[name]
        if name == "top1" and value < ref - c.accuracy_drop:
            return ("accuracy", value, ref)
        if name == "entropy" and value > ref + c.entropy_rise:
            return ("entropy", value, ref)
        return None

    def observe(self, batch: ImageBatch) -> dict[str, Any]:
        """Run the deployed network on ``batch``, log it, re-prune if a trigger fires."""
        record = {"batch": batch.index, "condition": batch.condition, **run_batch(self.deployment.model, batch)}
        record["deployment"] = self.deployments
        self.records.append(record)
        self._batches = (self._batches + [batch])[-self.config.buffer_batches :]
        reason = self._reason(batch.index) if self.reprune is not None else None
        if reason is not None:
            self._redeploy(batch, *reason)
        return record

    def _split_buffer(self, now: int) -> tuple[list[ImageBatch], list[ImageBatch], list[ImageBatch]]:
        """The buffer as (labelled for fine-tuning, held out to judge, the rest) at batch ``now``."""
        c = self.config
        ready = now - c.label_delay
        labelled = [b for b in self._batches if b.index <= ready] if c.monitor == "labels" else []
        held = labelled[-1:] if c.accept == "better" else []
        train = labelled[: len(labelled) - len(held)]
        return train, held, self._batches[len(train) :]  # the buffer is in stream order: labelled batches first

    def _judge(self, candidate: nn.Module, held: list[ImageBatch]) -> dict[str, Any]:
        """Compare ``candidate`` with the deployed network: top-1 on ``held``, else entropy on the buffer."""
        name, batches = ("top1", held) if held else ("entropy", self._batches)

        def score(model: nn.Module) -> float:
            return statistics.fmean(run_batch(model, b)[name] for b in batches)

        deployed, new = score(self.deployment.model), score(candidate)
        accepted = new >= deployed if name == "top1" else new <= deployed
        return {"judge": name, "score_deployed": deployed, "score_candidate": new, "accepted": accepted}

    def _redeploy(self, batch: ImageBatch, reason: str, signal: float, reference: float) -> None:
        train, held, rest = self._split_buffer(batch.index)
        recent_x = torch.cat([b.x for b in train + rest])
        recent_y = torch.cat([b.y for b in train]) if train else None
        start = time.perf_counter()
        candidate = self.reprune(recent_x, recent_y)
        seconds = time.perf_counter() - start
        verdict = self._judge(candidate.model, held) if self.config.accept == "better" else {"accepted": True}
        if verdict["accepted"]:
            self.deployment = candidate
            self.deployments += 1
        self.triggers.append(
            {
                "batch": batch.index,
                "condition": batch.condition,
                "reason": reason,
                "signal": signal,
                "reference": reference,
                "seconds": seconds,
                "buffer_images": len(recent_x),
                "labelled_images": 0 if recent_y is None else len(recent_y),
                **verdict,
                **candidate.info,
            }
        )
        self._deployed_at = batch.index + 1  # a rejected cycle also restarts cooldown and reference
        self.reference = None  # the next full window defines normal again

    def run(self, stream: Sequence[ImageBatch]) -> list[dict[str, Any]]:
        """Observe every batch of ``stream`` in order; returns the per-batch records."""
        for batch in stream:
            self.observe(batch)
        return self.records
