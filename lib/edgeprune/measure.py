"""Measurement harness: accuracy, parameters, MACs, stored bytes and latency of any model.

Every method in the project (dense, structurally pruned, masked, quantized) reports
through :func:`report`, which fills one row of :data:`edgeprune.results.COLUMNS`.

Conventions, used the same way everywhere:

- **MACs** are multiply-accumulates of convolutions and matrix products for one image,
  counted by :mod:`edgeprune.counting` (forward hooks; the project's one counter).
  Element-wise ops (BN, activations, pooling, adds) are not counted. A masked model
  is counted dense: its zeros are still multiplied by dense kernels.
- **Stored size** counts every tensor an inference copy needs at its real bit-width
  (fp32 = 4 B, int8 = 1 B, a k-bit tensor = k/8 B packed); see :func:`model_size`.
- **Latency** is wall-clock time of a forward pass on this machine's CPU, median and
  IQR over repeated runs after warm-up; see :func:`measure_latency`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from edgeprune import counting, timing

if TYPE_CHECKING:
    from edgeprune.prune import PruneReport

INPUT_SHAPE = (3, 32, 32)
LATENCY_BATCH_SIZES = (1, 64)
# Deployable formats (ONNX QLinear*, TFLite) store a quantization scale as fp32 and a
# zero point in the quantized type; torch keeps them as float64 / int64 in memory.
SCALE_BYTES = 4
ZERO_POINT_BYTES = 1

# --------------------------------------------------------------------------- counting


def _pruning_hooks(model: nn.Module) -> dict[str, torch_prune.BasePruningMethod]:
    """``torch.nn.utils.prune`` re-parametrisations, keyed by the effective tensor's name."""
    hooks = {}
    for prefix, module in model.named_modules():
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, torch_prune.BasePruningMethod):
                hooks[f"{prefix}.{hook._tensor_name}" if prefix else hook._tensor_name] = hook
    return hooks


def stored_tensors(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """The tensors an inference copy of ``model`` stores, by ``state_dict`` name.

    A pruning re-parametrisation (``weight_orig`` and ``weight_mask``) yields one
    effective ``weight`` (orig x mask); ``num_batches_tracked`` (training bookkeeping)
    is left out; quantized modules' packed ``(weight, bias)`` tuples are unpacked.
    """
    hooks = {f"{name}_orig": (name, hook) for name, hook in _pruning_hooks(model).items()}
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
    hooks = _pruning_hooks(model)
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


# --------------------------------------------------------------------------- latency


@torch.inference_mode()
def measure_latency(
    model: nn.Module,
    input_shape: Sequence[int] = INPUT_SHAPE,
    batch_size: int = 1,
    *,
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
    channels_last: bool = True,
) -> dict[str, Any]:
    """Wall-clock latency of one forward pass on the CPU, in milliseconds, by the project's one
    timer (:func:`edgeprune.timing.time_call`: warm-up, then single timed runs).

    The model (a copy) and a random input are put in channels-last memory format by default,
    the layout that oneDNN and the quantized x86 / qnnpack kernels run natively; the layout is
    recorded in the result. Pruning masks are baked into the copy, so a masked model runs as its
    deployed dense form.

    Returns ``median_ms``, ``iqr_ms``, ``q1_ms``, ``q3_ms``, ``mean_ms``, ``repeats``, ``warmup``,
    ``threads``, ``load_1min`` (the 1-minute load average before timing: on a shared machine a
    load above the core count means the figures are pessimistic), ``batch_size``, ``cpu`` and
    ``layout``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    from edgeprune.prune import bake_masks  # here: edgeprune.prune imports this module

    model = bake_masks(copy.deepcopy(model)).cpu().eval()
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    stats = timing.time_call(lambda: model(x), warmup=warmup, repeats=repeats, threads=threads).to_dict()
    layout = "channels_last" if channels_last else "contiguous"
    return stats | {"batch_size": batch_size, "cpu": timing.cpu_model(), "layout": layout}


# --------------------------------------------------------------------------- one row


def _add_latency(row: dict[str, Any], prefix: str, model: nn.Module, input_shape: Sequence[int], **kwargs: Any) -> None:
    """Fill ``row``'s latency columns for ``model`` (``prefix`` "" or "int8_")."""
    for batch_size in LATENCY_BATCH_SIZES:
        stats = measure_latency(model, input_shape, batch_size, **kwargs)
        row[f"{prefix}latency_b{batch_size}_ms"] = stats["median_ms"]
        row[f"{prefix}latency_b{batch_size}_iqr_ms"] = stats["iqr_ms"]
        row["latency_repeats"], row["layout"] = stats["repeats"], stats["layout"]
        row["cpu_load_1min"] = max(row.get("cpu_load_1min", 0.0), stats["load_1min"])


def report(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    model_name: str,
    method: str,
    setting: str,
    seed: int,
    split: str = "test",
    conditions: Sequence[str] | None = None,
    severity: int = 3,
    pruning: PruneReport | None = None,
    bits: int | Mapping[str, int] | None = None,
    int8: bool = True,
    calib_x: torch.Tensor | None = None,
    latency: bool = True,
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
    input_shape: Sequence[int] = INPUT_SHAPE,
    eval_batch_size: int = 1000,
    device: str | torch.device = "cpu",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure ``model`` and fill one row of :data:`edgeprune.results.COLUMNS`.

    Accuracy on uint8 images ``x`` / labels ``y`` (clean, and under each shift
    condition in ``conditions``; default all), parameters, MACs, stored size (weights
    at ``bits`` when fake-quantized), CPU latency at batch 1 and 64 and, with ``int8``,
    the same for a real int8 copy calibrated on ``calib_x`` (uint8 training images).
    ``pruning`` (from :mod:`edgeprune.prune`) fills the sparsity columns.
    """
    # Imported here: edgeprune.quant imports edgeprune.prune, which imports this module.
    from edgeprune.quant import quantize_int8
    from edgeprune.results import SHIFT_CONDITIONS
    from edgeprune.train import evaluate

    conditions = SHIFT_CONDITIONS if conditions is None else tuple(conditions)
    unknown = [c for c in conditions if c not in SHIFT_CONDITIONS]
    if unknown:
        raise KeyError(f"unknown shift condition(s) {unknown}; known: {', '.join(SHIFT_CONDITIONS)}")
    if int8 and calib_x is None:
        raise ValueError("int8=True needs calib_x (uint8 training images for calibration)")
    if pruning is not None and pruning.method != method:
        raise ValueError(f"method {method!r} does not match the pruning report's {pruning.method!r}")

    def top1(m: nn.Module, condition: str = "clean", on: str | torch.device = device) -> float:
        return evaluate(m, x, y, batch_size=eval_batch_size, device=on, condition=condition, severity=severity)

    params, nonzero = count_params(model)
    size = model_size(model, bits)
    weights = [t for t in size.tensors if len(t.shape) >= 2]
    row: dict[str, Any] = {
        "model": model_name,
        "method": method,
        "setting": setting,
        "seed": seed,
        "sparsity": 0.0,
        "sparsity_unit": "none",
        "sparsity_realised": 0.0,
        "param_reduction": 0.0,
        **(pruning.row() if pruning is not None else {}),
        "split": split,
        "n_eval": len(y),
        "severity": severity,
        "top1": top1(model),
        **{f"top1_{c}": top1(model, c) for c in conditions},
        "params": params,
        "params_nonzero": nonzero,
        "macs": count_macs(model, input_shape),
        "bits": round(sum(t.bits * t.numel for t in weights) / sum(t.numel for t in weights), 3),
        "size_bytes": size.total_bytes,
        "size_index_bytes": size.index_bytes,
        "size_encoding": size.encoding,
        "threads": threads or torch.get_num_threads(),
        "cpu": timing.cpu_model(),
        "torch_version": torch.__version__,
        "extra": dict(extra) if extra else None,
    }
    row["bits_simulated"] = row["bits"] < 32  # k-bit weights here are fake-quantized
    timer = {"warmup": warmup, "repeats": repeats, "threads": threads}
    if latency:
        _add_latency(row, "", model, input_shape, **timer)
    if int8:
        quantized = quantize_int8(model, calib_x)
        row |= {
            "int8_backend": timing.quantized_engine(),
            "int8_top1": top1(quantized, on="cpu"),
            "int8_size_bytes": model_size(quantized).total_bytes,
        }
        if latency:
            _add_latency(row, "int8_", quantized, input_shape, **timer)
            row["int8_latency_ratio_b64"] = row["int8_latency_b64_ms"] / row["latency_b64_ms"]
    return row
