"""CPU inference runtimes for one float network, so their speed can be measured side by side.

At 32x32 the project's networks are small enough that per-operator overhead, not arithmetic,
sets their latency on a CPU (pruning half the channels of mobilenet_v3_small saves 3.6x the MACs
and 1.36x the time). Which runtime removes that overhead is a question for measurement
(``python -m edgeprune.bench runtime``); each runtime here turns a float model into a callable
that maps a normalised float batch to logits:

- ``eager``: the model as it is, channels-last (the harness's layout).
- ``fused_bn``: BatchNorm folded into the preceding convolution
  (``torch.fx.experimental.optimization.fuse``), then eager.
- ``compile``: ``torch.compile`` with the inductor backend (C++ kernels; needs a C++ compiler).
- ``torch_int8``: the project's int8 path, ``torch.ao`` FX static quantization
  (:func:`edgeprune.quant.quantize_int8`).
- ``ort``: ONNX Runtime's CPU session on the fp32 ONNX export, every graph optimisation on.
- ``ort_int8``: ONNX Runtime on the QDQ int8 model from ``onnxruntime.quantization.quantize_static``
  (per-channel int8 weights, uint8 activations calibrated on the images given).

ONNX Runtime is the runtime made for this (it installs on the Pi 4's aarch64); nothing here
re-implements it. A runtime whose package is missing is a clear error naming it.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgeprune.data import normalize
from edgeprune.onnx_runtime import OnnxSession
from edgeprune.quant import quantize_int8

__all__ = ["RUNTIMES", "Runtime", "check_runtime", "export_onnx", "prepare", "quantize_onnx"]

Predict = Callable[[torch.Tensor], torch.Tensor]
OPSET = 17


@dataclass(frozen=True)
class Runtime:
    """One way of running a float model: a name, the package it needs, what it does."""

    name: str
    package: str | None
    description: str


RUNTIMES = {
    r.name: r
    for r in (
        Runtime("eager", None, "torch eager, channels-last"),
        Runtime("fused_bn", None, "BatchNorm folded into convolutions (torch.fx), eager"),
        Runtime("compile", None, "torch.compile, inductor (C++ kernels)"),
        Runtime("torch_int8", None, "torch.ao FX static int8 (the project's int8 path)"),
        Runtime("ort", "onnxruntime", "ONNX Runtime CPU, fp32 export"),
        Runtime("ort_int8", "onnxruntime", "ONNX Runtime CPU, QDQ static int8"),
    )
}


def check_runtime(name: str) -> Runtime:
    """The runtime called ``name``, or an error naming it: unknown names list the known ones,
    a runtime whose package is not installed says which package to install."""
    if name not in RUNTIMES:
        raise ValueError(f"unknown runtime {name!r}; runtimes are {', '.join(RUNTIMES)}")
    runtime = RUNTIMES[name]
    if runtime.package and importlib.util.find_spec(runtime.package) is None:
        raise ImportError(f"runtime {name!r} needs the package {runtime.package!r}: pip install {runtime.package}")
    return runtime


def export_onnx(model: nn.Module, path: str | Path, input_shape: tuple[int, ...] = (3, 32, 32)) -> Path:
    """Export a float model to ONNX (opset 17, dynamic batch; TorchScript-based exporter, which
    needs no extra package), input ``input``, output ``logits``."""
    import warnings

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(1, *input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation notice: the dynamo exporter needs onnxscript
        torch.onnx.export(
            model.cpu().eval(), (example,), str(path), dynamo=False, opset_version=OPSET,
            input_names=["input"], output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )  # fmt: skip
    return path


def quantize_onnx(fp32: str | Path, int8: str | Path, calib_x: torch.Tensor) -> Path:
    """The fp32 ONNX file ``fp32`` quantized to QDQ int8 at ``int8`` by ONNX Runtime's static quantizer:
    per-channel int8 weights, uint8 activations calibrated on ``calib_x`` (uint8 images)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Images(CalibrationDataReader):
        def __init__(self) -> None:
            batches = normalize(calib_x).split(32)
            self._batches = iter([{"input": b.numpy().astype(np.float32)} for b in batches])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))  # its advice is logged on root
    quantize_static(
        str(fp32), str(int8), Images(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return Path(int8)


def _ort_int8(model: nn.Module, calib_x: torch.Tensor, workdir: Path, threads: int) -> Predict:
    fp32 = export_onnx(model, workdir / "fp32.onnx", tuple(calib_x.shape[1:]))
    return OnnxSession(quantize_onnx(fp32, workdir / "int8-qdq.onnx", calib_x), threads)


def prepare(name: str, model: nn.Module, calib_x: torch.Tensor, *, threads: int, workdir: str | Path) -> Predict:
    """``model`` (float, eval) ready to run under runtime ``name``: a callable from a normalised float
    batch to logits. ``threads`` sets ONNX Runtime's intra-op threads (torch's are the caller's:
    :func:`edgeprune.timing.time_call` sets them); ``calib_x`` (uint8 images) calibrates the int8
    runtimes; ``workdir`` holds the ONNX files."""
    check_runtime(name)
    model = model.cpu().eval()
    workdir = Path(workdir)
    if name == "ort":
        return OnnxSession(export_onnx(model, workdir / "fp32.onnx", tuple(calib_x.shape[1:])), threads)
    if name == "ort_int8":
        return _ort_int8(model, calib_x, workdir, threads)
    if name == "torch_int8":
        model = quantize_int8(model, calib_x)
    if name == "fused_bn":
        from torch.fx.experimental.optimization import fuse

        model = fuse(model)
    if name == "compile":
        model = torch.compile(model, backend="inductor")
    model = model.to(memory_format=torch.channels_last)

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x.contiguous(memory_format=torch.channels_last))

    return predict
