"""Real int8 inference: post-training static quantization with ``torch.ao`` FX.

The converted model runs on int8 kernels (``x86`` = oneDNN / FBGEMM on Intel and AMD,
``qnnpack`` on ARM, e.g. a Raspberry Pi 4 or Jetson Nano CPU), so its measured latency
and stored size are real. ``torch.ao.quantization`` is deprecated in favour of torchao's
PT2E flow but still ships and is what runs on the edge boards' PyTorch builds.
Bit-widths below 8 are simulated with fake quantization elsewhere, and labelled so.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.ao.quantization import get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from edgeprune.data import normalize
from edgeprune.placement import INT8_DEVICE, place
from edgeprune.masks import bake_masks
from edgeprune.timing import quantized_engine


def _check_backend(backend: str) -> None:
    supported = torch.backends.quantized.supported_engines
    if backend not in supported:
        raise ValueError(f"quantization backend {backend!r} is not available here; supported: {', '.join(supported)}")


@torch.no_grad()
def quantize_int8(
    model: nn.Module,
    calib_x: torch.Tensor,
    *,
    backend: str | None = None,
    batch_size: int = 64,
) -> nn.Module:
    """An int8 copy of ``model``: FX-traced, calibrated, converted (``model`` is untouched).

    ``calib_x`` are uint8 training images (N, C, H, W), normalized as in training; their
    activation ranges set the static activation scales. Observers are those of
    :func:`torch.ao.quantization.get_default_qconfig_mapping`: for ``x86`` per-channel
    symmetric int8 weights and histogram-calibrated uint8 activations with
    ``reduce_range`` (7-bit, to stay clear of overflow in the non-VNNI kernels); for
    ``qnnpack`` per-tensor weights and full 8-bit activations. Conv + BN (+ ReLU) are
    fused. Pruning masks are baked into the copy first.

    Raises ``ValueError`` naming the model when FX cannot trace or convert it.
    """
    backend = backend or quantized_engine()
    _check_backend(backend)
    if calib_x.dtype != torch.uint8 or calib_x.dim() != 4 or len(calib_x) == 0:
        raise ValueError(
            f"calib_x must be a non-empty uint8 (N, C, H, W) tensor, got {calib_x.dtype} {tuple(calib_x.shape)}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    float_model = place(bake_masks(copy.deepcopy(model)), INT8_DEVICE).eval()  # int8 kernels are CPU-only
    example = normalize(calib_x[:1])
    expected_shape = float_model(example).shape
    torch.backends.quantized.engine = backend
    name = type(model).__name__
    with warnings.catch_warnings():
        # torch.ao's deprecation notice and observer chatter are not the user's concern here.
        warnings.simplefilter("ignore")
        try:
            prepared = prepare_fx(float_model, get_default_qconfig_mapping(backend), (example,))
        except Exception as e:  # tracing errors come as TraceError, TypeError, NotImplementedError...
            raise ValueError(f"{name} cannot be traced by torch.fx for int8 quantization: {e}") from e
        for i in range(0, len(calib_x), batch_size):
            prepared(normalize(calib_x[i : i + batch_size]))
        try:
            quantized = convert_fx(prepared)
            out = quantized(example)
        except Exception as e:
            raise ValueError(f"{name} cannot be converted to int8 with the {backend!r} backend: {e}") from e
    if out.shape != expected_shape:
        raise RuntimeError(f"int8 {name} returns shape {tuple(out.shape)}, the float model {tuple(expected_shape)}")
    return quantized
