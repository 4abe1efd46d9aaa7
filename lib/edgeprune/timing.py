"""The project's one latency timer and its description of the host.

Every latency figure (the measurement harness, the stages, the device runner on a board) comes
from :func:`time_call`, built on :class:`torch.utils.benchmark.Timer`: explicit warm-up runs
(oneDNN and the int8 kernels build their primitives on the first calls), then single timed runs
(``Timer.timeit(1)``) under the thread count asked for, set for the measurement only. Median and
IQR are torch's ``Measurement`` statistics over those single runs.

This module needs torch alone, so it ships to the boards with :mod:`edgeprune.device`; torch is
imported on first use, so the params schema reads :data:`MIN_REPEATS` without it.
"""

from __future__ import annotations

import logging
import os
import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MIN_REPEATS = 4  # quartiles need four values; every params section's latency repeats honours this bound


@dataclass(frozen=True)
class Latency:
    """One timed call: milliseconds per run, with the conditions the figure was taken under."""

    median_ms: float
    iqr_ms: float
    q1_ms: float
    q3_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    repeats: int  # timed runs
    warmup: int
    threads: int
    load_1min: float  # 1-minute load average before timing; above the core count the figure is pessimistic

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_call(
    fn: Callable[[], Any], *, warmup: int, repeats: int, threads: int | None = None, sync: bool = False
) -> Latency:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` timed runs, each one a
    ``Timer.timeit(1)`` (torch runs two untimed calls before each, so a figure costs about
    ``warmup + 3 * repeats`` calls; single runs keep the IQR a spread of runs, not of block means).
    ``threads`` sets torch's intra-op threads for the measurement only (None: as they are);
    ``sync`` waits for CUDA kernels after each call."""
    if warmup < 0 or repeats < MIN_REPEATS:
        raise ValueError(f"latency needs warmup >= 0 and repeats >= {MIN_REPEATS} (quartiles); got {warmup}, {repeats}")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    import torch

    benchmark = _benchmark()
    n_threads = threads or torch.get_num_threads()
    stmt = "fn(); torch.cuda.synchronize()" if sync else "fn()"
    timer = benchmark.Timer(stmt=stmt, globals={"fn": fn, "torch": torch}, num_threads=n_threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        for _ in range(warmup):
            fn()
    finally:
        torch.set_num_threads(previous)
    runs = benchmark.Measurement.merge([timer.timeit(number=1) for _ in range(repeats)])[0]
    times_ms = torch.tensor(runs.times, dtype=torch.float64) * 1e3
    q1, q3 = (float(times_ms.quantile(q)) for q in (0.25, 0.75))
    return Latency(
        median_ms=runs.median * 1e3, iqr_ms=runs.iqr * 1e3, q1_ms=q1, q3_ms=q3, mean_ms=float(times_ms.mean()),
        min_ms=float(times_ms.min()), max_ms=float(times_ms.max()),
        repeats=len(runs.times), warmup=warmup, threads=n_threads, load_1min=load,
    )  # fmt: skip


def _benchmark():
    """``torch.utils.benchmark``, imported quietly: it imports ``torch.utils.cpp_extension``, which
    warns on a CUDA build of torch without a CUDA runtime (every CPU host here)."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        logger.setLevel(level)
    return benchmark


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one) and architecture."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                name = value.strip()
                if key.strip() == "model name":
                    break
    except OSError:
        pass
    return f"{name or platform.processor() or 'unknown CPU'} ({platform.machine()})"


def quantized_engine(machine: str | None = None) -> str:
    """The int8 kernels this CPU has in this torch build: ``qnnpack`` on ARM, ``x86`` (else
    ``fbgemm``) elsewhere."""
    machine = (machine or platform.machine()).lower()
    wanted = ["qnnpack"] if machine.startswith(("arm", "aarch64")) else ["x86", "fbgemm"]
    import torch

    supported = torch.backends.quantized.supported_engines
    for engine in wanted:
        if engine in supported:
            return engine
    raise RuntimeError(f"none of the int8 engines {wanted} is in this torch build ({supported})")
