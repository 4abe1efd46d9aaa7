"""Run-time side of AKPERL: a controller switching among physically pruned sub-networks, and a
non-stationary stream of input conditions to evaluate it on.

The policy's choice depends on the input statistics, so it is read off once per input
condition, at the condition's reference statistics, and each distinct configuration
is pruned (and briefly fine-tuned) once. At run time :class:`SwitchingNetwork` computes
each incoming batch's statistics (:func:`edgeprune.akperl.task.batch_stats`), takes the
reference condition nearest to them (Euclidean distance: a nearest-centroid
classifier, the "performance monitor"), and runs that condition's sub-network. No labels
are needed, nothing is masked: every sub-network is a smaller dense network, so the
work saved is real. The price is storage: every sub-network is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from edgeprune.akperl.task import batch_stats, check_conditions
from edgeprune.data import apply_condition, normalize


class SwitchingNetwork(nn.Module):
    """Runs, for each batch, the sub-network assigned to the reference condition nearest to its statistics.

    ``subnets`` maps a network name to a module, ``assignment`` each condition to a
    network name, ``reference_stats`` each condition to its statistics vector. Inputs
    are normalised float images (what :func:`edgeprune.train.predict` feeds a model).
    """

    def __init__(
        self,
        subnets: Mapping[str, nn.Module],
        assignment: Mapping[str, str],
        reference_stats: Mapping[str, np.ndarray],
    ) -> None:
        super().__init__()
        if not subnets:
            raise ValueError("SwitchingNetwork needs at least one sub-network")
        conditions = check_conditions(list(assignment))
        unknown = sorted({n for n in assignment.values() if n not in subnets})
        if unknown:
            raise KeyError(f"assignment names sub-network(s) {unknown} not in {sorted(subnets)}")
        missing = [c for c in conditions if c not in reference_stats]
        if missing:
            raise KeyError(f"no reference statistics for condition(s) {missing}")
        self.subnets = nn.ModuleDict(dict(subnets))
        self.conditions = list(conditions)
        self.assignment = dict(assignment)
        self.register_buffer("centroids", torch.as_tensor(np.stack([reference_stats[c] for c in conditions])))
        self.history: list[tuple[str, str]] = []  # (identified condition, network) per batch

    @property
    def switches(self) -> int:
        """How many times the running network changed between consecutive batches."""
        return sum(a[1] != b[1] for a, b in zip(self.history, self.history[1:]))

    def identify(self, x: torch.Tensor) -> str:
        """The reference condition nearest to the batch's statistics (uint8 or normalised float images)."""
        stats = torch.as_tensor(batch_stats(x), device=self.centroids.device)
        return self.conditions[int(torch.cdist(stats[None], self.centroids[None])[0, 0].argmin())]

    def select(self, x: torch.Tensor) -> tuple[str, str]:
        """(identified condition, network name) for a batch, recorded in :attr:`history`."""
        condition = self.identify(x)
        choice = (condition, self.assignment[condition])
        self.history.append(choice)
        return choice

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.subnets[self.select(x)[1]](x)


@dataclass(frozen=True)
class IndexBatch:
    """One batch of AKPERL's stream: its position, its segment's condition and indices into the test split.

    Each arm applies the condition itself; QSA's stream carries the shifted images instead
    (:class:`edgeprune.qsa.controller.ImageBatch`)."""

    index: int
    segment: int
    condition: str
    idx: torch.Tensor


def make_index_stream(
    conditions: Sequence[str],
    n_images: int,
    *,
    segments: int,
    batches_per_segment: int,
    batch_size: int,
    seed: int = 0,
) -> list[IndexBatch]:
    """A non-stationary stream: ``segments`` runs of ``batches_per_segment`` batches, one condition per run.

    Conditions follow seeded permutations of ``conditions`` (no condition twice in a
    row when there are several); images are drawn without replacement from
    ``range(n_images)`` in a seeded order, starting over when exhausted.
    """
    conditions = check_conditions(conditions)
    if min(segments, batches_per_segment, batch_size) < 1 or batch_size > n_images:
        raise ValueError(
            f"need segments, batches_per_segment >= 1 and 1 <= batch_size <= n_images; got {segments}, "
            f"{batches_per_segment}, {batch_size}, {n_images}"
        )
    rng = np.random.default_rng(seed)
    order: list[str] = []
    while len(order) < segments:
        perm = [conditions[i] for i in rng.permutation(len(conditions))]
        if order and len(perm) > 1 and perm[0] == order[-1]:
            perm = perm[1:] + perm[:1]
        order += perm
    images = torch.as_tensor(rng.permutation(n_images))
    stream, cursor = [], 0
    for segment, condition in enumerate(order[:segments]):
        for _ in range(batches_per_segment):
            if cursor + batch_size > n_images:
                images, cursor = torch.as_tensor(rng.permutation(n_images)), 0
            stream.append(IndexBatch(len(stream), segment, condition, images[cursor : cursor + batch_size]))
            cursor += batch_size
    return stream


@torch.inference_mode()
def run_stream(
    methods: Mapping[str, nn.Module],
    stream: Sequence[IndexBatch],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    describe: Callable[[nn.Module], Mapping[str, float]],
    severity: int = 3,
) -> pd.DataFrame:
    """Feed the stream to every method; one row per (method, batch).

    Columns: method, batch, segment, condition, identified (the controller's guess, for
    a :class:`SwitchingNetwork`), network, top1 (%), latency_ms (measured wall-clock of
    the batch's forward pass on this CPU after one warm-up batch) and whatever
    ``describe(network)`` returns for the network that ran (sparsity, modelled power ...),
    cached per network.
    """
    if not stream:
        raise ValueError("the stream is empty")
    inputs = [
        normalize(apply_condition(x[b.idx], b.condition, severity, seed=b.index)).contiguous(memory_format=torch.channels_last)
        for b in stream
    ]
    described: dict[int, Mapping[str, float]] = {}
    rows = []
    for method, model in methods.items():
        model.eval()
        model(inputs[0])  # warm-up, untimed
        if isinstance(model, SwitchingNetwork):
            model.history.clear()
        for batch, xb in zip(stream, inputs):
            tic = time.perf_counter()
            logits = model(xb)
            latency = (time.perf_counter() - tic) * 1e3
            if isinstance(model, SwitchingNetwork):
                identified, name = model.history[-1]
                network = model.subnets[name]
            else:
                identified, name, network = "", method, model
            if id(network) not in described:
                described[id(network)] = dict(describe(network))
            rows.append(
                {
                    "method": method,
                    "batch": batch.index,
                    "segment": batch.segment,
                    "condition": batch.condition,
                    "identified": identified,
                    "network": name,
                    "top1": 100.0 * float((logits.argmax(1) == y[batch.idx]).float().mean()),
                    "latency_ms": latency,
                    **described[id(network)],
                }
            )
    return pd.DataFrame(rows)
