"""Leaf measurements of any model: parameters, MACs and stored bytes.

The harness that turns them into one tidy row per network (with accuracy and latency) is
:func:`edgeprune.harness.report`. Conventions, used the same way everywhere:

- **MACs** are multiply-accumulates of convolutions and matrix products for one image,
  counted by :mod:`edgeprune.counting` (forward hooks; the project's one counter).
  Element-wise ops (BN, activations, pooling, adds) are not counted. A masked model
  is counted dense: its zeros are still multiplied by dense kernels.
- **Stored size** counts every tensor an inference copy needs at its real bit-width
  (fp32 = 4 B, int8 = 1 B, a k-bit tensor = k/8 B packed); see :func:`model_size`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from edgeprune import counting
from edgeprune.masks import pruning_hooks

INPUT_SHAPE = (3, 32, 32)
# Deployable formats (ONNX QLinear*, TFLite) store a quantization scale as fp32 and a
# zero point in the quantized type; torch keeps them as float64 / int64 in memory.
SCALE_BYTES = 4
ZERO_POINT_BYTES = 1

# --------------------------------------------------------------------------- counting


def stored_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors an inference copy of ``model`` stores, by ``state_dict`` name.

    A pruning re-parametrisation (``weight_orig`` and ``weight_mask``) yields one
    effective ``weight`` (orig x mask); ``num_batches_tracked`` (training bookkeeping)
    is left out; quantized modules' packed ``(weight, bias)`` tuples are unpacked.
    """
    hooks = {f"{name}_orig": (name, hook) for name, hook in pruning_hooks(model).items()}
    masks = {f"{name}_mask" for name, _ in hooks.values()}
    for name, value in model.state_dict().items():
        if name in masks or name.endswith("num_batches_tracked"):
            continue
        if name in hooks:
            effective, hook = hooks[name]
            yield effective, hook.apply_mask(model.get_submodule(effective.rpartition(".")[0])).detach()
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if isinstance(item, torch.Tensor):
                    yield f"{name}.{i}", item
        elif isinstance(value, torch.Tensor):
            yield name, value


def is_quantized(model: nn.Module) -> bool:
    """True when any stored tensor of ``model`` is a quantized (int) tensor."""
    return any(t.is_quantized for _, t in stored_tensors(model))


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, non-zero) parameters of a float model, pruning masks applied.

    A quantized model keeps its weights in packed buffers rather than parameters:
    count the float model it was converted from.
    """
    if is_quantized(model):
        raise ValueError("count_params needs the float model; int8 conversion does not change parameters")
    hooks = pruning_hooks(model)
    masked = {f"{name}_orig" for name in hooks}
    effective = dict(stored_tensors(model))
    total = nonzero = 0
    for name, param in model.named_parameters():
        tensor = effective[name.removesuffix("_orig")] if name in masked else param
        total += tensor.numel()
        nonzero += int(torch.count_nonzero(tensor))
    return total, nonzero


def count_macs(model: nn.Module, input_shape: Sequence[int] = INPUT_SHAPE) -> int:
    """Multiply-accumulates of one forward pass on one image (conv and matmul only;
    :mod:`edgeprune.counting`, the project's one counter)."""
    if is_quantized(model):
        raise ValueError("count_macs needs the float model; int8 conversion does not change MACs")
    return counting.count_macs(model, input_shape)


def architecture_key(model: nn.Module) -> tuple:
    """Names and shapes of every tensor, sorted: equal keys mean equal compute (and latency).

    Sorted because ``torch.nn.utils.prune.remove`` re-registers a weight after its bias, which
    changes the state-dict order but not the network.
    """
    return tuple(sorted((name, tuple(t.shape)) for name, t in model.state_dict().items()))


# --------------------------------------------------------------------------- bytes


@dataclass(frozen=True)
class TensorSize:
    """Storage of one tensor. ``encoding`` is "dense", "bitmask" or "csr"."""

    name: str
    shape: tuple[int, ...]
    bits: int
    numel: int
    nnz: int
    encoding: str
    value_bytes: int
    index_bytes: int
    qparam_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.value_bytes + self.index_bytes + self.qparam_bytes


@dataclass(frozen=True)
class SizeReport:
    """Per-tensor storage of a model; ``pandas.DataFrame(report.tensors)`` tabulates it."""

    tensors: list[TensorSize] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(t.total_bytes for t in self.tensors)

    @property
    def index_bytes(self) -> int:
        """Bytes spent on sparse indices (bitmasks, CSR column indices and row pointers)."""
        return sum(t.index_bytes for t in self.tensors)

    @property
    def encoding(self) -> str:
        """Sparse encodings used ("bitmask", "csr", "bitmask+csr"), or "dense"."""
        used = sorted({t.encoding for t in self.tensors} - {"dense"})
        return "+".join(used) or "dense"


def _index_width_bytes(max_value: int) -> int:
    """Smallest of 1, 2, 4 bytes holding ``max_value`` (byte-aligned, as real formats are)."""
    for width in (1, 2, 4):
        if max_value < 256**width:
            return width
    return 8


def sparse_storage(shape: Sequence[int], nnz: int, bits: int) -> tuple[str, int, int]:
    """Cheapest of dense, bitmask and CSR storage for a tensor: (encoding, value B, index B).

    - dense: every element at ``bits``;
    - bitmask: the ``nnz`` values plus one bit per element;
    - CSR over (shape[0], rest) rows: the values, one column index per value and
      shape[0] + 1 row pointers, indices at the smallest byte width that holds them.
    Ties go to dense.
    """
    numel = math.prod(shape)
    dense = math.ceil(numel * bits / 8)
    values = math.ceil(nnz * bits / 8)
    bitmask = math.ceil(numel / 8)
    rows = shape[0] if len(shape) else 1
    cols = numel // max(rows, 1)
    csr = nnz * _index_width_bytes(max(cols - 1, 0)) + (rows + 1) * _index_width_bytes(nnz)
    best = min(("dense", dense, 0), ("bitmask", values, bitmask), ("csr", values, csr), key=lambda e: e[1] + e[2])
    return best


def _weight_bits(model: nn.Module, bits: int | Mapping[str, int] | None) -> dict[str, int]:
    """Expand ``bits`` into {tensor name: bits}; an int covers every conv / linear weight."""
    if bits is None:
        return {}
    names = dict(stored_tensors(model))
    if isinstance(bits, int):
        bits = {
            f"{prefix}.weight": bits
            for prefix, module in model.named_modules()
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and f"{prefix}.weight" in names
        }
    for name, b in bits.items():
        if name not in names:
            raise KeyError(f"bits given for {name!r}, which is not a tensor of the model")
        if not 1 <= b <= 32:
            raise ValueError(f"bits for {name!r} must be in 1..32, got {b}")
    return dict(bits)


def model_size(model: nn.Module, bits: int | Mapping[str, int] | None = None) -> SizeReport:
    """Stored size of ``model`` with every tensor at its real bit-width.

    - float tensors at their dtype width (fp32 = 4 B), unless ``bits`` sets a weight to
      k bits (fake-quantized, k-bit packed): k/8 B per element plus one fp32 scale per
      output channel (symmetric per-channel quantization);
    - quantized tensors (``torch.ao`` int8) at 1 B per element plus a scale (4 B) and a
      zero point (1 B) per channel, or one pair per tensor;
    - activation zero points at 1 B, activation scales at 4 B;
    - weights (tensors of 2+ dims) with zeros are stored as the cheapest of dense,
      bitmask and CSR (:func:`sparse_storage`), so a masked model pays its index cost.
    """
    overrides = _weight_bits(model, bits)
    tensors = []
    for name, tensor in stored_tensors(model):
        shape = tuple(tensor.shape)
        qparams = 0
        if tensor.is_quantized:
            b = tensor.element_size() * 8
            dense_values = tensor.dequantize()
            if tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                qparams = tensor.q_per_channel_scales().numel() * (SCALE_BYTES + ZERO_POINT_BYTES)
            else:
                qparams = SCALE_BYTES + ZERO_POINT_BYTES
        elif "zero_point" in name.rpartition(".")[2] and not tensor.is_floating_point():
            b, dense_values = 8 * ZERO_POINT_BYTES, tensor
        elif name in overrides:
            b, dense_values = overrides[name], tensor
            if b < tensor.element_size() * 8:
                qparams = (shape[0] if shape else 1) * SCALE_BYTES
        else:
            b, dense_values = tensor.element_size() * 8, tensor
        numel = tensor.numel()
        nnz = int(torch.count_nonzero(dense_values))
        if tensor.dim() >= 2:
            encoding, value_bytes, index_bytes = sparse_storage(shape, nnz, b)
        else:
            encoding, value_bytes, index_bytes = "dense", math.ceil(numel * b / 8), 0
        tensors.append(TensorSize(name, shape, b, numel, nnz, encoding, value_bytes, index_bytes, qparams))
    return SizeReport(tensors)
