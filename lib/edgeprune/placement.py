"""Where models and tensors live: one rule for every stage, on a CPU or a GPU.

- :func:`resolve_device` turns the params' ``device`` (``auto``, ``cpu``, ``cuda``) into a
  ``torch.device``; ``cuda`` on a machine without one is an error naming the key, raised
  at the stage's entry and, through :mod:`edgeprune.preflight`, before ``dvc repro`` starts.
- :func:`place` moves a model and checks that every parameter and buffer arrived: a tensor
  left behind fails on a GPU at the first forward pass, far from where it was created.
- :data:`INT8_DEVICE`: ``torch.ao``'s int8 kernels (x86 / qnnpack) exist on the CPU only,
  so every quantized network is built, evaluated and timed there, whatever ``device`` says;
  :func:`edgeprune.quant.quantize_int8` places its copy there. Fake-quantized (simulated
  k-bit) networks are ordinary float networks and run on ``device``.

Training layout (channels-last) and bf16 autocast are params (``train.channels_last``,
``train.bf16_models``) measured on this project's CPU; on a GPU they apply as written. What
has run on a GPU and what has not is listed in docs/methods.md ("Running on a GPU").
"""

from __future__ import annotations

import torch
from torch import nn

INT8_DEVICE = torch.device("cpu")


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; ``cuda`` without a GPU is a ``ValueError``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available (set device: auto or cpu)")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device(device)


def _same(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def check_placed(model: nn.Module, device: str | torch.device) -> None:
    """Raise ``RuntimeError`` naming the first parameter or buffer of ``model`` not on ``device``."""
    device = torch.device(device)
    for kind, tensors in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, tensor in tensors:
            if not _same(tensor.device, device):
                raise RuntimeError(f"{type(model).__name__} {kind} {name!r} is on {tensor.device}, expected {device}")


def place(
    model: nn.Module, device: str | torch.device, memory_format: torch.memory_format | None = None
) -> nn.Module:
    """``model`` moved in place to ``device`` (and ``memory_format``), every tensor checked there."""
    if memory_format is None:
        model.to(device=device)
    else:
        model.to(device=device, memory_format=memory_format)
    check_placed(model, device)
    return model
