"""Retraining a chosen structure: the protocol every PPO-stage network goes through.

1. remove the plan's channels from a copy of the starting weights (the final dense
   weights for fine-tuning, the early ``rewind.pt`` weights for lottery-ticket rewinding);
2. if channels were removed, re-estimate the BatchNorm statistics on the calibration
   images, as the static baselines do before their fine-tune. Without it the short
   fine-tune starts from the dense network's statistics, which no longer describe the
   pruned activations, and with BN momentum 0.1 its few steps (8 in the quick profile)
   only partly replace them: on the quick model, 25% of every group's channels removed,
   8-bit, the fine-tuned network scored 23.5% of the validation subset, with the
   re-estimation first 48.0%;
3. fine-tune with the shared ``finetune`` budget; quantization-aware when ``qat``: the
   layers' bit-widths in the loop, input thresholds KL-calibrated on the network about to
   be retrained (:func:`edgeprune.fakequant.quantization_aware`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from edgeprune import fakequant
from edgeprune.data import Split, normalize
from edgeprune.measure import INPUT_SHAPE
from edgeprune.ppo.pruning import PrunePlan, apply_plan
from edgeprune.prune import recalibrate_bn
from edgeprune.train import fine_tune


def retrain(
    start: nn.Module,
    plan: PrunePlan,
    bits: Mapping[str, int],
    train: Split,
    calib_x: torch.Tensor,
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    seed: int,
    qat: bool = True,
    kl_bins: int = fakequant.KL_BINS,
    calib_batch_size: int = 256,
    device: str | torch.device = "cpu",
    input_shape: Sequence[int] = INPUT_SHAPE,
) -> nn.Module:
    """A copy of ``start`` pruned by ``plan`` and retrained; returned in eval mode.

    ``train`` holds the fine-tuning images, ``calib_x`` (uint8) the BN and activation
    calibration images; ``bits`` maps layer names to bit-widths (used with ``qat``).
    """
    device = torch.device(device)
    model = apply_plan(start, plan, input_shape).to(device)
    if plan.removes_channels:
        recalibrate_bn(model, calib_x, batch_size=calib_batch_size)
    budget = dict(epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, device=device)
    if not qat:
        return fine_tune(model, train.x, train.y, **budget)
    calib = normalize(calib_x).to(device)
    acts = fakequant.calibrate(model.eval(), calib, bits, bins=kl_bins, batch_size=calib_batch_size)
    with fakequant.quantization_aware(model, bits, acts):
        fine_tune(model, train.x, train.y, **budget)
    return model.eval()
