"""Input checks shared by the statistics: finite values, a valid confidence, the columns a function uses."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

__all__ = ["check_confidence", "complete_rows", "finite_array", "require_columns"]


def finite_array(values: Iterable[float], name: str) -> np.ndarray:
    """1-D float array of ``values``; a non-finite entry is a ValueError naming ``name``."""
    arr = np.asarray(list(values), dtype=float).ravel()
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values: {arr.tolist()}")
    return arr


def check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def require_columns(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise KeyError(f"column(s) {missing} not in the DataFrame; columns are {list(df.columns)}")


def complete_rows(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows of ``df`` with a value in every one of ``columns`` (KeyError if a column is missing)."""
    require_columns(df, columns)
    return df.dropna(subset=list(columns))
