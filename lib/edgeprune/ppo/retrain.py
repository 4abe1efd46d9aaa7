"""Retraining a chosen structure: the protocol every PPO-stage network goes through.

1. remove the plan's channels from a copy of the starting weights (the final dense
   weights for fine-tuning, the early ``rewind.pt`` weights for lottery-ticket rewinding);
2. recover it with the shared protocol (:class:`edgeprune.recover.protocol.Recovery`):
   BatchNorm statistics re-estimated if channels were removed (without it the short
   fine-tune starts from the dense statistics; on the quick model, 25% of every group's
   channels removed, 8-bit, the fine-tuned network scored 23.5% of the validation subset,
   with the re-estimation first 48.0%), then fine-tuned for the budget, quantization-aware
   when ``qat`` and a layer is below 8 bits (:func:`edgeprune.fakequant.quantization_aware`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import nn

from edgeprune.fakequant import QuantScheme
from edgeprune.measure import INPUT_SHAPE
from edgeprune.ppo.pruning import PrunePlan, apply_plan
from edgeprune.recover.protocol import Recovery


def retrain(
    start: nn.Module,
    plan: PrunePlan,
    bits: Mapping[str, int],
    recovery: Recovery,
    *,
    seed: int,
    budget: int = 0,
    teacher: nn.Module | None = None,
    lr: float | None = None,
    qat: bool = True,
    scheme: QuantScheme | None = None,
    input_shape: Sequence[int] = INPUT_SHAPE,
) -> nn.Module:
    """A copy of ``start`` pruned by ``plan`` and recovered at ``budget``; returned on the CPU in eval mode.

    ``bits`` maps layer names to bit-widths (in the loop with ``qat``, quantized as ``scheme`` says);
    ``lr`` overrides the
    budget's learning rate (rewound weights); ``teacher`` is the dense network distilled from.
    """
    model = apply_plan(start, plan, input_shape)
    return recovery.recover(
        model, seed=seed, budget=budget, pruned=plan.removes_channels, teacher=teacher, bits=bits if qat else None, lr=lr,
        scheme=scheme,
    )
