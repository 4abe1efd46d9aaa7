"""Read back what the method stages wrote, for the tables and statistics stages.

Every method stage writes its tidy rows to ``results/<stage>/<model>/rows.csv``
(:mod:`edgeprune.results`); a few tables also need a stage's own files (AKPERL's ablations
and streams, QSA's stream, PPO's per-seed comparison, the device-power table), read through
each stage's own reader (``edgeprune.<method>.outputs.load``). A stage or model that has
not run is recorded in :attr:`Results.missing` rather than failing, so the tables show what
exists and say what does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from edgeprune import results
from edgeprune.akperl import outputs as akperl_outputs
from edgeprune.paths import ResultPaths
from edgeprune.power import outputs as power_outputs
from edgeprune.ppo import outputs as ppo_outputs
from edgeprune.qsa import outputs as qsa_outputs

__all__ = ["METHOD_STAGES", "Results", "dense_reference", "extra", "load_results"]

METHOD_STAGES = ("baselines", "akperl", "qsa", "ppo")
"""Stages that write tidy rows, in pipeline order."""


def _parse_extra(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        return json.loads(value)
    return {}


def extra(rows: pd.DataFrame, key: str, default: Any = np.nan) -> pd.Series:
    """The ``extra`` field ``key`` of every row (``default`` where a row lacks it)."""
    return rows["extra"].map(lambda e: _parse_extra(e).get(key, default)).rename(key)


def dense_reference(rows: pd.DataFrame, column: str) -> pd.Series:
    """For every row, ``column`` of the dense model it started from (NaN where that model has no row).

    Dense rows (method ``none``) and method rows both name their dense model in
    ``extra.dense_seed`` (their own seed when absent); several dense rows of one dense
    model (one per method seed) are averaged.
    """
    dense_seed = extra(rows, "dense_seed").fillna(rows["seed"]).astype(int)
    is_dense = rows["method"] == "none"
    return dense_seed.map(rows[is_dense].groupby(dense_seed[is_dense])[column].mean())


@dataclass
class Results:
    """The method stages' outputs for some models.

    ``rows``: every tidy row, with a ``stage`` column; ``akperl`` / ``qsa`` / ``ppo``: per model,
    the stage files the papers' tables need beyond the rows; ``power``: the device-power table
    (``None`` if that stage has not run) and ``host_check``, its check of the energy model's time
    on the host (:mod:`edgeprune.power.validation`; ``None`` likewise); ``missing``: "<stage>/<model>" pairs with no rows.
    """

    rows: pd.DataFrame
    akperl: dict[str, dict[str, Any]] = field(default_factory=dict)
    qsa: dict[str, dict[str, Any]] = field(default_factory=dict)
    ppo: dict[str, pd.DataFrame] = field(default_factory=dict)
    power: pd.DataFrame | None = None
    host_check: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)

    def stage(self, stage: str, model: str | None = None, budget: int | None = 0) -> pd.DataFrame:
        """Rows of one stage (and model) at one recovery budget (default the primary; None: all), index reset."""
        mask = self.rows["stage"] == stage
        if model is not None:
            mask &= self.rows["model"] == model
        rows = self.rows[mask]
        return (rows if budget is None else results.at_budget(rows, budget)).reset_index(drop=True)

    def ppo_comparison(self, model: str, budget: int | None = 0) -> pd.DataFrame:
        """PPO's per-seed comparison with the static baseline at one recovery budget (None: all)."""
        comparison = self.ppo[model]
        return comparison if budget is None else comparison[comparison["budget"] == budget].reset_index(drop=True)

    def models(self, stage: str) -> list[str]:
        """Models with rows from ``stage``, in first-seen order."""
        return list(dict.fromkeys(self.stage(stage)["model"]))


def _rows(paths: ResultPaths, stage: str, model: str) -> pd.DataFrame | None:
    path = paths.method_rows(stage, model)
    if not path.is_file():
        return None
    return results.read_table(path).assign(stage=stage)


def load_results(paths: ResultPaths, models: Iterable[str], stages: Sequence[str] = METHOD_STAGES) -> Results:
    """Collect the rows of ``stages`` x ``models`` and the extra files the tables use."""
    unknown = [s for s in stages if s not in METHOD_STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; method stages are {list(METHOD_STAGES)}")
    frames, missing = [], []
    res = Results(rows=pd.DataFrame(columns=[*results.COLUMNS, "stage"]))
    for stage in stages:
        for model in models:
            rows = _rows(paths, stage, model)
            if rows is None:
                missing.append(f"{stage}/{model}")
                continue
            frames.append(rows)
            if stage == "akperl":
                res.akperl[model] = akperl_outputs.load(paths, model)
            elif stage == "qsa":
                res.qsa[model] = qsa_outputs.load(paths, model)
            elif stage == "ppo" and "comparison" in (ppo := ppo_outputs.load(paths, model)):
                res.ppo[model] = ppo["comparison"]
    if frames:
        res.rows = pd.concat(frames, ignore_index=True)
    res.missing = missing
    res.power = power_outputs.read_power(paths) if (power_outputs.out_dir(paths) / "power.csv").is_file() else None
    res.host_check = power_outputs.load(paths).get("summary", {}).get("host_check") if res.power is not None else None
    return res
