"""Counting rules the stages share: one recovery, one measured row, an int8 copy, latency figures; the
subsets of images a stage reads; and the wording of a count."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from edgeprune.config import Params
from edgeprune.recover.params import Budget
from edgeprune.recover.protocol import schedule
from edgeprune.bench.plan.work import INT8_CALIB_BATCH, Work

__all__ = [
    "KL_BINS", "LATENCY_BATCH", "int8_copy", "latency_figures", "models_text", "recover", "report_row", "seeds_text",
    "shift_conditions", "steps_text", "subset",
]  # fmt: skip

LATENCY_BATCH = 64  # edgeprune.harness.LATENCY_BATCH_SIZES = (1, 64)
KL_BINS = 2048  # edgeprune.fakequant.KL_BINS: the histogram of a recovery's KL calibration


def recover(
    w: Work, params: Params, budget: int | Budget, train_images: int, kind: str = "pruned", layers: int = 0,
    batch_size: int | None = None,
) -> int:
    """One pass through :meth:`edgeprune.recover.protocol.Recovery.recover` at ``budget`` (an index into
    ``finetune.budgets``, or a :class:`~edgeprune.recover.params.Budget`) and ``batch_size`` (default
    ``finetune.batch_size``); returns its SGD steps.

    ``kind``: "pruned" (channels removed), "masked" (unstructured masks: the dense shape),
    "qat" (k-bit quantizers in the loop, KL-calibrated first over ``layers`` layers).
    """
    f = params.finetune
    plan = schedule(f.budgets[budget] if isinstance(budget, int) else budget, train_images, batch_size or f.batch_size)
    images = plan.steps * plan.batch_size
    calib = min(f.calib_images, train_images)
    w.eval_images += calib  # BatchNorm re-estimated on finetune.calib_images (every network here was pruned)
    if kind == "qat":
        w.histogram_images += calib  # fakequant.calibrate: a KL threshold per layer (KL_BINS bins, stride 1)
        w.kl_candidates += layers * KL_BINS
        w.weight_clips += 1  # fakequant.quantization_aware: each layer's clip ratios, once
        w.qat_images += images
    elif kind == "masked":
        w.masked_images += images
    else:
        w.recovery_images += images
    w.recoveries += 1
    w.recovery_steps += plan.steps
    return plan.steps


def report_row(w: Work, n_eval: int, *, conditions: int = 0, int8: bool = False, calib: int = 0,
            latency: tuple[int, int] | None = None) -> None:  # fmt: skip
    """One :func:`edgeprune.harness.report` row: top-1 clean and under ``conditions`` shift conditions,
    an int8 copy calibrated on ``calib`` images and its top-1, and latency (warm-up, repeats) if asked."""
    w.rows += 1
    w.eval_images += n_eval * (1 + conditions)
    if int8:
        int8_copy(w, calib)
        w.int8_images += n_eval
    if latency is not None:
        latency_figures(w, *latency, int8=int8)


def int8_copy(w: Work, calib: int) -> None:
    """One :func:`edgeprune.quant.quantize_int8` on ``calib`` images."""
    w.int8_conversions += 1
    w.int8_extra_batches += max(0, math.ceil(calib / INT8_CALIB_BATCH) - 1)
    w.int8_copies += 1


def latency_figures(w: Work, warmup: int, repeats: int, *, int8: bool = False) -> None:
    """Latency figures at batch 1 and 64 (fp32, and int8 if ``int8``) by edgeprune.timing.time_call:
    ``warmup`` calls, then ``repeats`` timed runs each after torch's two untimed ones."""
    calls = warmup + 3 * repeats
    w.b1_calls += calls
    w.eval_images += calls * LATENCY_BATCH
    if int8:
        w.int8_b1_calls += calls
        w.int8_images += calls * LATENCY_BATCH


def subset(limit: int | None, available: int) -> int:
    """A subset of ``limit`` images of ``available`` (None = all)."""
    return available if limit is None else min(limit, available)


def shift_conditions(params: Params) -> int:
    """Shift conditions other than clean (measured beside clean top-1 in the rows that ask for them)."""
    return sum(c != "clean" for c in params.shift.conditions)


def seeds_text(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def models_text(n: int) -> str:
    return f"{n} model{'s' if n != 1 else ''}"


def steps_text(steps: Iterable[int]) -> str:
    """Recovery steps grouped: "18 x 8 + 3 x 64"."""
    counts = Counter(steps)
    return " + ".join(f"{n} x {s}" for s, n in sorted(counts.items()))
