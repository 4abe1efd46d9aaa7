"""The measurement harness: one tidy row per measured network (accuracy, size, MACs, latency, int8).

Every method in the project (dense, structurally pruned, masked, quantized) reports through
:func:`report`, which fills one row of :data:`edgeprune.results.COLUMNS` from the leaf
measurements of :mod:`edgeprune.measure` (counting, stored bytes), the project's one timer
(:mod:`edgeprune.timing`), :func:`edgeprune.train.evaluate` and :func:`edgeprune.quant.quantize_int8`.
It sits above prune, quant and train; nothing below it imports it.

**Latency** is wall-clock time of a forward pass on this machine's CPU, median and IQR over
repeated runs after warm-up; see :func:`measure_latency`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from edgeprune import timing
from edgeprune.masks import bake_masks
from edgeprune.measure import INPUT_SHAPE, count_macs, count_params, model_size
from edgeprune.quant import quantize_int8
from edgeprune.results import SHIFT_CONDITIONS
from edgeprune.train import evaluate

if TYPE_CHECKING:
    from edgeprune.prune import PruneReport

__all__ = ["LATENCY_BATCH_SIZES", "measure_latency", "report"]

LATENCY_BATCH_SIZES = (1, 64)


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
