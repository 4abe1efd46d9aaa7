"""The tidy results table: one row per (model, method, setting, seed), the same columns everywhere.

Every stage writes its rows with :func:`append_rows` (usually rows made by
:func:`edgeprune.harness.report`), and the table stages read them back with
:func:`read_table`. Units are in the column names; an empty cell means "not measured".
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from edgeprune.conditions import CONDITIONS
from edgeprune.io import atomic_write

INT8_SLOW = 1.2
"""An int8 copy whose batch-64 latency exceeds its fp32 parent's by more than this factor is flagged in
the report: beyond timing noise, its kernels fell to a slow path (channel counts off the x86 kernels'
multiple of 8 measured 7-9x slower)."""

KEY = ("model", "method", "setting", "seed")
IDENTITY = (*KEY, "budget")  # a row's identity: the key, and the recovery budget for recovered networks
SHIFT_CONDITIONS = tuple(c for c in CONDITIONS if c != "clean")

COLUMN_DOCS: dict[str, str] = {
    # identity
    "model": "registry name of the architecture (edgeprune.models)",
    "method": "method name: none, l1_filter, magnitude_structured, magnitude_unstructured, akperl, qsa, ppo ...",
    "setting": "the method's setting as a short string, e.g. 's0.50' for 50% sparsity",
    "seed": "seed of the dense model and of the method (int)",
    # recovery (edgeprune.recover)
    "budget": "index of the recovery budget in finetune.budgets (0 = the primary budget); empty: not recovered",
    "recovery_steps": "SGD steps of that recovery (its size on the budget axis); empty: not recovered",
    # what the method asked for and got
    "sparsity": "requested sparsity, a fraction in [0, 1)",
    "sparsity_unit": "'channels' (prunable conv / linear output channels removed), "
    "'weights' (prunable weights zeroed) or 'none'",
    "sparsity_realised": "measured fraction in sparsity_unit",
    "param_reduction": "fraction of (non-zero) parameters removed relative to the dense model",
    # accuracy
    "split": "evaluation split (test / val)",
    "n_eval": "number of evaluation images",
    "severity": "severity (1..5) of the shift conditions",
    "top1": "top-1 accuracy (%) on the clean split",
    **{f"top1_{c}": f"top-1 accuracy (%) under the '{c}' shift condition" for c in SHIFT_CONDITIONS},
    # complexity
    "params": "parameters (all, zeros included)",
    "params_nonzero": "non-zero parameters",
    "macs": "multiply-accumulates per image (conv + matmul; masked zeros still counted)",
    # storage
    "bits": "weight bit-width of the model measured in this row (32 = fp32)",
    "bits_simulated": "True when bits < 32 are fake-quantized (simulated), not run on int kernels",
    "size_bytes": "stored bytes at the real bit-width of every tensor, sparse index included",
    "size_index_bytes": "bytes of that spent on sparse indices (bitmask / CSR)",
    "size_encoding": "sparse encodings used: dense, bitmask, csr or bitmask+csr",
    # latency of the row's model
    "latency_b1_ms": "median latency (ms), batch 1",
    "latency_b1_iqr_ms": "interquartile range (ms), batch 1",
    "latency_b64_ms": "median latency (ms), batch 64",
    "latency_b64_iqr_ms": "interquartile range (ms), batch 64",
    "latency_repeats": "timed runs per latency figure (after warm-up)",
    # the same model converted to real int8
    "int8_backend": "torch.ao quantized engine (x86 / qnnpack)",
    "int8_top1": "top-1 accuracy (%) of the int8 model on the clean split",
    "int8_size_bytes": "stored bytes of the int8 model (1 B weights + scales / zero points)",
    "int8_latency_b1_ms": "median latency (ms) of the int8 model, batch 1",
    "int8_latency_b1_iqr_ms": "interquartile range (ms), int8, batch 1",
    "int8_latency_b64_ms": "median latency (ms) of the int8 model, batch 64",
    "int8_latency_b64_iqr_ms": "interquartile range (ms), int8, batch 64",
    "int8_latency_ratio_b64": "int8 / fp32 median latency at batch 64, same row; above 1 the int8 copy is slower "
    "than its fp32 parent (above INT8_SLOW it is flagged in the report)",
    # machine
    "threads": "torch intra-op threads during latency runs",
    "cpu": "CPU model and architecture",
    "cpu_load_1min": "highest 1-minute load average before the latency runs (above the core count: pessimistic figures)",
    "layout": "memory format of latency runs (channels_last / contiguous)",
    "torch_version": "torch.__version__",
    # anything else
    "extra": "JSON object with stage-specific fields",
}
COLUMNS: tuple[str, ...] = tuple(COLUMN_DOCS)


def _check_row(row: Mapping[str, Any], where: str) -> dict[str, str]:
    unknown = [k for k in row if k not in COLUMN_DOCS]
    if unknown:
        raise KeyError(f"{where}: unknown column(s) {unknown}; put stage-specific fields in 'extra'")
    missing = [k for k in KEY if row.get(k) in (None, "")]
    if missing:
        raise ValueError(f"{where}: key column(s) {missing} missing; every row needs {list(KEY)}")
    out = {}
    for column in COLUMNS:
        value = row.get(column)
        if column == "extra" and isinstance(value, Mapping):
            value = json.dumps(value, sort_keys=True)
        out[column] = "" if value is None else str(value)
    return out


def _read_raw(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{path} was written with other columns than edgeprune.results.COLUMNS; move it aside")
        return list(reader)


def append_rows(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]]) -> Path:
    """Add ``rows`` to the CSV table at ``path`` (created if absent), atomically.

    A row whose identity (model, method, setting, seed, budget) is already in the table replaces it,
    so a re-run or resumed stage never duplicates results. Columns not in a row are
    left empty; a column not in :data:`COLUMNS` is a ``KeyError``.
    """
    path = Path(path)
    new = [_check_row(row, f"row {i} for {path}") for i, row in enumerate(rows)]
    old = _read_raw(path) if path.is_file() else []
    keys = {tuple(row[k] for k in IDENTITY) for row in new}
    kept = [row for row in old if tuple(row[k] for k in IDENTITY) not in keys]
    with atomic_write(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(kept + new)
    return path


def read_table(*paths: str | os.PathLike[str]) -> pd.DataFrame:
    """One DataFrame of the rows of every table in ``paths``, with :data:`COLUMNS` in order."""
    frames = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (has the stage that writes it run?)")
        _read_raw(path)  # schema check
        frames.append(pd.read_csv(path, keep_default_na=True))
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def at_budget(rows: pd.DataFrame, budget: int = 0) -> pd.DataFrame:
    """The rows of networks recovered at ``budget`` (an index into ``finetune.budgets``) and the
    rows of networks that were not recovered (dense, quantized only), which serve every budget."""
    return rows[rows["budget"].isna() | (rows["budget"] == budget)]


def budgets(rows: pd.DataFrame) -> pd.DataFrame:
    """The budgets present in ``rows``: index, SGD steps and a label, smallest first."""
    present = rows.dropna(subset=["budget"]).groupby("budget", as_index=False)["recovery_steps"].max()
    present = present.astype({"budget": int, "recovery_steps": int}).sort_values("recovery_steps", ignore_index=True)
    return present.assign(label=present["recovery_steps"].map(lambda s: f"{s} steps"))
