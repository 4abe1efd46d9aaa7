"""The one recovery protocol: what every pruned or quantized network goes through before it is measured.

Static baselines, AKPERL, QSA (and its drift controller), and PPO's fine-tune, rewind and
static retraining all recover through :meth:`Recovery.recover`, with the budgets of the
``finetune`` params section, so that no method wins by recovering differently:

1. **BatchNorm re-estimated** on ``finetune.calib_images`` training images when the
   network was pruned (channels removed or weights masked): its activations no longer
   match the dense statistics, and with BN momentum 0.1 a short fine-tune only partly
   replaces them (PPO's uniform 25 % cut recovered to 23.5 % without, 48.0 % with).
   A network that was only quantized keeps the dense statistics (re-estimating them on a
   few hundred images cost 1.4 points on the quick model).
2. **Fine-tuned** for the budget: SGD with Nesterov momentum and a cosine schedule from
   the learning rate, cross-entropy with label smoothing 0.1, on a seed-dependent
   stratified draw of training images with crop + flip, as the dense model was trained.
   Optionally **distilled** from the network's own dense teacher
   (:func:`edgeprune.train.distillation_loss`, ``finetune.distill_weight`` / ``_temperature``).
3. **Quantization-aware** when any layer is below 8 bits: the k-bit weight and input
   quantizers sit in the loop with straight-through gradients
   (:func:`edgeprune.fakequant.quantization_aware`), input thresholds KL-calibrated first
   on the calibration images. At 8 bits and above the float network is fine-tuned and
   quantized afterwards (post-training), which loses little at 8 bits.

A network that was neither pruned nor quantized below 8 bits has lost nothing and is
returned untouched: a dense network fine-tuned again from a fresh learning rate on a few
thousand images would only drift from its converged weights (PPO's static choice is often
"no pruning, 8 bits"). The batch is clamped to the images available (a controller's small
buffer); a params file cannot ask for more (:class:`~edgeprune.recover.params.FinetuneParams`
checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from edgeprune import fakequant
from edgeprune.data import Split, normalize
from edgeprune.groups import bn_scales
from edgeprune.placement import place
from edgeprune.prune import recalibrate_bn
from edgeprune.recover.params import Budget, FinetuneParams
from edgeprune.train import FitConfig, fit

__all__ = ["Recovery", "Schedule", "schedule"]


@dataclass(frozen=True)
class Schedule:
    """A budget made concrete for one training split: images drawn, passes over them, SGD steps."""

    images: int
    epochs: float
    steps: int
    batch_size: int

    @property
    def label(self) -> str:
        return f"{self.steps} steps"


def schedule(budget: Budget, available: int, batch_size: int) -> Schedule:
    """What ``budget`` means on a split of ``available`` images at ``batch_size`` (clamped to the images)."""
    if available < 1:
        raise ValueError("no training images to recover on")
    if budget.steps is not None:
        images = min(available, budget.steps * batch_size)
        batch = min(batch_size, images)
        epochs = budget.steps * batch / images
    else:
        images = available if budget.images is None else min(budget.images, available)
        batch = min(batch_size, images)
        epochs = float(budget.epochs)
    steps = max(1, round(epochs * (images // batch)))
    return Schedule(images, epochs, steps, batch)


class Recovery:
    """The protocol bound to one training split and one ``finetune`` section.

    Cheap to build (it draws the calibration images); :meth:`recover` does the work.
    """

    def __init__(self, params: FinetuneParams, train: Split, *, device: str | torch.device = "cpu", calib_seed: int = 0):
        self.params = params
        self.train = train
        self.device = torch.device(device)
        self.calib_x = train.subset(params.calib_images, seed=calib_seed).x

    @property
    def budgets(self) -> list[Budget]:
        return list(self.params.budgets)

    def schedule(self, budget: int | Budget = 0, train: Split | None = None) -> Schedule:
        """The :class:`Schedule` of a budget (an index into ``finetune.budgets`` or a :class:`Budget`)."""
        budget = self.params.budgets[budget] if isinstance(budget, int) else budget
        return schedule(budget, len(self.train if train is None else train), self.params.batch_size)

    def recover(
        self,
        model: nn.Module,
        *,
        seed: int,
        budget: int | Budget | None = 0,
        pruned: bool = True,
        teacher: nn.Module | None = None,
        bits: Mapping[str, int] | None = None,
        lr: float | None = None,
        train: Split | None = None,
        calib_x: torch.Tensor | None = None,
        scheme: fakequant.QuantScheme | None = None,
        activations: Mapping[str, fakequant.ActivationQuant] | None = None,
        memo: fakequant.RatioMemo | None = None,
        force: bool = False,
    ) -> nn.Module:
        """Recover ``model`` in place (steps 1-3 of the module docstring); returned on the CPU in eval mode.

        ``budget``: an index into ``finetune.budgets``, a :class:`Budget`, or None for no
        training at all (BatchNorm re-estimation only: a controller without labels); ``pruned``:
        re-estimate BatchNorm first; ``teacher``: the dense network distilled from (used when
        ``finetune.distill_weight`` > 0); ``bits``: {layer: bit-width} of a quantized
        network (QAT when any is below 8) quantized as ``scheme`` says (default: max-abs
        weights, KL-calibrated inputs); ``lr`` overrides the budget's learning rate
        (PPO's rewound weights); ``train`` / ``calib_x`` replace the bound split and
        calibration images (a controller's recent buffer); ``activations`` are input quantizers
        calibrated already on this network (else KL-calibrated here) and ``memo`` caches weight clip
        ratios between recoveries from the same weights (:func:`edgeprune.fakequant.quantization_aware`):
        the per-layer sensitivity table runs hundreds of recoveries from the dense weights. ``force``
        recovers a network that lost nothing as if it had: fine-tuned, under QAT when ``bits`` are given,
        8 bits included (the table's base, recovered like the changes it is compared with: on the reference
        model 8 QAT steps at 8 bits raise the validation loss by 0.037 over 8 steps in float, as much as a
        6-bit layer costs, so a float-recovered base made every change look 0.03 worse than it is).
        """
        p = self.params
        budget = p.budgets[budget] if isinstance(budget, int) else budget
        split = self.train if train is None else train
        calib = self.calib_x if calib_x is None else calib_x
        quantized = bool(bits) and (min(bits.values()) < 8 or force)
        if not pruned and not quantized and not force:  # nothing was lost: nothing to recover
            return model.cpu().eval()
        model = place(model, self.device)
        if pruned:
            recalibrate_bn(model, calib)
        if budget is None:
            return model.cpu().eval()
        config, drawn = self._training(budget, split, seed, lr=lr, distill=teacher is not None)
        qat = dict(bits) if quantized else None
        if qat is None:
            fit(model, drawn, config, device=self.device, progress=False, teacher=teacher)
        else:
            scheme = scheme or fakequant.QuantScheme()
            acts = {}
            if scheme.activations:
                acts = dict(activations) if activations is not None else fakequant.calibrate(
                    model.eval(), normalize(calib).to(self.device), qat
                )
            with fakequant.quantization_aware(model, qat, acts, weight_clip=scheme.weight_clip, memo=memo):
                fit(model, drawn, config, device=self.device, progress=False, teacher=teacher)
        return model.cpu().eval()

    def _training(
        self, budget: Budget, split: Split, seed: int, *, lr: float | None = None, distill: bool = False
    ) -> tuple[FitConfig, Split]:
        """The fine-tuning run of ``budget`` on ``split``: its config (cosine from ``lr``, the budget's or
        ``finetune.lr``) and the seed's draw of training images."""
        p = self.params
        plan = schedule(budget, len(split), p.batch_size)
        config = FitConfig(
            epochs=plan.epochs, lr=lr or budget.lr or p.lr, batch_size=plan.batch_size, schedule="cosine", seed=seed,
            weight_decay=p.weight_decay, distill_weight=p.distill_weight if distill else 0.0,
            distill_temperature=p.distill_temperature,
        )  # fmt: skip
        return config, split.subset(plan.images, seed=seed)

    def sparsity_train(self, model: nn.Module, *, seed: int, budget: Budget, penalty: float) -> nn.Module:
        """Train ``model`` in place with an L1 penalty on its BatchNorm scales: the L1-regularised
        training of network slimming (Liu et al., ICCV 2017), which drives the scales of unneeded
        channels toward zero so that ranking channels by scale can prune them. Same loop, schedule,
        augmentation and learning rate as :meth:`recover`, from the trained dense weights, for
        ``budget``; each step adds ``penalty * sign(gamma)`` to every BN scale's gradient (the
        update of Torch-Pruning's ``BNScalePruner.regularize``, without building a pruner for it).
        Returned on the CPU in eval mode."""
        if penalty < 0:
            raise ValueError(f"the L1 penalty must be >= 0, got {penalty}")
        config, drawn = self._training(budget, self.train, seed)
        norms = bn_scales(model)

        def l1_on_scales(_: nn.Module) -> None:
            for bn in norms:
                if bn.weight.grad is not None:
                    bn.weight.grad.add_(penalty * torch.sign(bn.weight.detach()))

        model = place(model, self.device)
        fit(model, drawn, config, device=self.device, progress=False, regularize=l1_on_scales)
        return model.cpu().eval()

    def columns(self, budget: int, train: Split | None = None) -> dict[str, int]:
        """The tidy-row columns (:data:`edgeprune.results.COLUMNS`) naming a recovery at ``budget``."""
        return {"budget": budget, "recovery_steps": self.schedule(budget, train).steps}
