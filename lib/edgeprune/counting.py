"""What a network computes, counted once: per-layer MACs and element traffic, and their totals.

One counter for the whole project: forward hooks on every Conv2d / Linear (float or
``torch.ao`` quantized) record each call's multiply-accumulates and the elements it moves
(weights, input, output). The harness (:func:`edgeprune.harness.report`), the device-power
model, AKPERL's units, the PPO search's layer features and the device runner all count
with it, so a MACs figure means the same thing in every table. Element-wise work (BN,
activations, pooling, adds) is not counted; a masked (unstructured) weight is counted dense,
since dense kernels still multiply its zeros. On the project's networks it equals
``torch.utils.flop_counter.FlopCounterMode``'s conv + matmul count / 2 (a test checks both
against hand counts); hooks are used because they also see each layer's traffic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.ao.nn import quantized as nnq
from torch.ao.nn.quantized import dynamic as nnqd

__all__ = ["LayerCost", "count_macs", "layer_costs"]

_CONV = (nn.Conv2d, nnq.Conv2d)
_LINEAR = (nn.Linear, nnq.Linear, nnqd.Linear)


@dataclass(frozen=True)
class LayerCost:
    """Work and traffic of one Conv2d / Linear call, in elements (precision-free)."""

    name: str
    kind: Literal["conv", "depthwise", "linear"]
    macs: int
    weights: int
    inputs: int
    outputs: int

    def bytes_moved(self, bytes_per_element: float) -> float:
        """Weights read plus activations read and written, every one once (no cache reuse)."""
        return (self.weights + self.inputs + self.outputs) * bytes_per_element


def _weight_elements(module: nn.Module) -> int:
    weight, bias = module.weight, getattr(module, "bias", None)
    if callable(weight):  # torch.ao quantized modules expose weight() / bias() methods
        weight, bias = weight(), bias() if callable(bias) else bias
    return weight.numel() + (bias.numel() if isinstance(bias, torch.Tensor) else 0)


def layer_costs(model: nn.Module, input_shape: Sequence[int]) -> list[LayerCost]:
    """Per-layer MACs and element traffic of one forward pass of ``model`` at ``input_shape``.

    The forward runs in eval mode without gradients on the model's device (a ``meta`` model
    costs no arithmetic); the model's train/eval state is restored afterwards.
    """
    if len(input_shape) < 2 or any(int(s) < 1 for s in input_shape):
        raise ValueError(f"input_shape must be positive (N, C, ...), got {tuple(input_shape)}")
    names = {module: name for name, module in model.named_modules()}
    costs: list[LayerCost] = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        x = args[0]
        if isinstance(module, _CONV):
            kh, kw = module.kernel_size
            macs = output.numel() * (module.in_channels // module.groups) * kh * kw
            kind = "depthwise" if module.groups > 1 and module.groups == module.in_channels else "conv"
        else:
            macs, kind = output.numel() * module.in_features, "linear"
        costs.append(LayerCost(names[module], kind, macs, _weight_elements(module), x.numel(), output.numel()))

    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _CONV + _LINEAR)]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(int(s) for s in input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    if not costs:
        raise ValueError(f"{type(model).__name__} has no Conv2d / Linear layer to cost")
    return costs


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one image of shape ``input_shape`` (C, H, W)."""
    return sum(c.macs for c in layer_costs(model, (1, *input_shape)))
