"""The re-prune cycle: QSAs on recent activations -> masks -> pruned dense copy -> int8.

:class:`QSAPruner` keeps what does not change between cycles (the dense weights, the
layers and their activation sites, the chosen λ and channel fraction) and the QSAs of
the last cycle, which warm-start the next one. Every cycle prunes a fresh copy of the
*dense* weights, so masks can grow back as well as shrink.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edgeprune.data import Split
from edgeprune.measure import INPUT_SHAPE
from edgeprune.prune import PruneReport, prunable_layers
from edgeprune.qsa.activations import activation_samples, activation_sites
from edgeprune.qsa.autoencoder import LayerQSAs, fit_layer_qsas
from edgeprune.qsa.controller import Deployment
from edgeprune.qsa.masks import Compression, ignored_for, prune_by_importance
from edgeprune.quant import quantize_int8
from edgeprune.recover.params import Budget
from edgeprune.recover.protocol import Recovery


@dataclass(frozen=True)
class QSASettings:
    """How QSAs are trained and masks applied (see :class:`edgeprune.qsa.QSAParams`)."""

    hidden_fraction: float = 1.0
    max_hidden: int | None = 32
    positions: int = 2
    steps: int = 150
    lr: float = 1e-2
    round_to: int | None = None


class QSAPruner:
    """Builds QSA-pruned networks of one dense model."""

    def __init__(
        self,
        dense: nn.Module,
        layers: Sequence[str] | None,
        settings: QSASettings,
        *,
        input_shape: Sequence[int] = INPUT_SHAPE,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ) -> None:
        self.dense = dense.eval()
        self.layers = list(prunable_layers(dense, input_shape=input_shape)) if layers is None else list(layers)
        self.ignored = ignored_for(dense, self.layers, input_shape)
        self.sites = activation_sites(dense, self.layers, torch.randn(1, *input_shape))
        self.settings = settings
        self.input_shape = tuple(input_shape)
        self.seed = seed
        self.device = device
        self.qsas: LayerQSAs | None = None
        self.lam: float | None = None
        self.fraction: float | None = None

    def activations(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Activation samples of the dense network on uint8 images ``x``."""
        return activation_samples(self.dense, x, self.sites, positions=self.settings.positions, seed=self.seed)

    def fit(self, x: torch.Tensor, lam: float, *, steps: int | None = None, init: LayerQSAs | None = None) -> LayerQSAs:
        """QSAs of every layer trained on the dense network's activations on ``x``."""
        s = self.settings
        return fit_layer_qsas(
            self.activations(x),
            lam=lam,
            hidden_fraction=s.hidden_fraction,
            max_hidden=s.max_hidden,
            steps=steps or s.steps,
            lr=s.lr,
            seed=self.seed,
            init=init,
        )

    def lambda_path(self, x: torch.Tensor, lambdas: Sequence[float]) -> dict[float, LayerQSAs]:
        """QSAs for each λ in increasing order, each warm-started from the previous (as glmnet does)."""
        path, previous = {}, None
        for lam in sorted(lambdas):
            previous = path[lam] = self.fit(x, lam, init=previous)
        return path

    def prune(self, qsas: LayerQSAs, fraction: float) -> tuple[nn.Module, PruneReport]:
        """A pruned copy of the dense weights without ``fraction`` of the channels, by QSA importance."""
        return prune_by_importance(
            self.dense,
            qsas.importance(),
            fraction,
            ignored_layers=self.ignored,
            input_shape=self.input_shape,
            round_to=self.settings.round_to,
        )

    def deploy(self, qsas: LayerQSAs, lam: float, fraction: float) -> None:
        """Make (QSAs, λ, fraction) the state that later cycles start from."""
        self.qsas, self.lam, self.fraction = qsas, lam, fraction

    def cycle(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        steps: int,
        recovery: Recovery,
        compression: Compression | None = None,
        fine_tune_epochs: float = 0.0,
    ) -> Deployment:
        """One re-prune cycle on recent uint8 images ``x`` (the first ``len(y)`` labelled).

        QSAs retrained (warm start, ``steps`` steps), masks regenerated at the deployed
        channel fraction, the dense weights re-pruned, then recovered with the shared
        protocol on the recent images (BN re-estimated on ``x``; fine-tuned for
        ``fine_tune_epochs`` over the labelled images when there are any), converted to
        int8 calibrated on ``x``. The returned info holds each part's seconds.
        """
        if self.qsas is None or self.lam is None or self.fraction is None:
            raise RuntimeError("deploy() a first QSA network before running re-prune cycles")
        times = {}
        start = time.perf_counter()
        self.qsas = self.fit(x, self.lam, steps=steps, init=self.qsas)
        times["qsa_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        model, report = self.prune(self.qsas, self.fraction)
        model = recover_on_buffer(recovery, model, x, y, fine_tune_epochs, seed=self.seed, teacher=self.dense)
        times["recovery_seconds"] = time.perf_counter() - start
        start = time.perf_counter()
        int8 = quantize_int8(model, x)
        times["int8_seconds"] = time.perf_counter() - start
        info = {"fraction": self.fraction, "channels_removed": report.realised, **times}
        if compression is not None:
            info["compression_estimate"] = compression.estimate(model)
        return Deployment(int8, info)


def recover_on_buffer(
    recovery: Recovery,
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor | None,
    epochs: float,
    *,
    seed: int,
    teacher: nn.Module | None = None,
) -> nn.Module:
    """A controller's recovery on its recent buffer: BN re-estimated on every image ``x``, then,
    with ``epochs`` > 0 and at least two labels, fine-tuned over the labelled ones (the first ``len(y)``)."""
    labelled = y is not None and len(y) >= 2 and epochs > 0
    return recovery.recover(
        model, seed=seed, budget=Budget(epochs=epochs) if labelled else None, teacher=teacher,
        train=Split(x[: len(y)], y) if labelled else None, calib_x=x,
    )  # fmt: skip
