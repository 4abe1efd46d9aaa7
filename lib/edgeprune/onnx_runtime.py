"""An ONNX Runtime CPU session as a callable from a float tensor to a float tensor.

One place builds the session, for the runtime benchmark on the host (:mod:`edgeprune.runtimes`)
and for the device runner on a board (:mod:`edgeprune.device`). A leaf: it needs torch and, when a
session is made, ``onnxruntime``, so a board with just those can run ONNX exports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch


class OnnxSession:
    """``onnxruntime.InferenceSession`` on the CPU, every graph optimisation on, one inter-op thread and
    ``threads`` intra-op threads (None: ONNX Runtime's default); called like a torch module."""

    def __init__(self, path: str | Path, threads: Optional[int] = None) -> None:
        import onnxruntime as ort

        ort.set_default_logger_severity(3)  # errors only: the optimiser's notes on unused initialisers are not ours
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.version = ort.__version__

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.input: x.detach().cpu().numpy()})[0])
