"""``torch.nn.utils.prune`` masks: finding them and making them permanent.

Unstructured pruning (:func:`edgeprune.prune.magnitude_unstructured`) leaves a mask on each
weight; counting (:mod:`edgeprune.measure`), timing and int8 conversion (:mod:`edgeprune.quant`)
all need the masked weights as the deployed network has them. A leaf module, below all three.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune as torch_prune

__all__ = ["bake_masks", "pruning_hooks"]


def pruning_hooks(model: nn.Module) -> dict[str, torch_prune.BasePruningMethod]:
    """``torch.nn.utils.prune`` re-parametrisations, keyed by the effective tensor's name."""
    hooks = {}
    for prefix, module in model.named_modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod):
                hooks[f"{prefix}.{hook._tensor_name}" if prefix else hook._tensor_name] = hook
    return hooks


def bake_masks(model: nn.Module) -> nn.Module:
    """Make ``torch.nn.utils.prune`` masks permanent (``prune.remove``), in place.

    Call after fine-tuning: the zeros become plain weights and the
    ``weight_orig`` / ``weight_mask`` pair disappears. Models without masks pass through.
    """
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, torch_prune.BasePruningMethod):
                torch_prune.remove(module, hook._tensor_name)
    return model
