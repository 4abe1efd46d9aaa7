"""The energy model's time checked against the host: predicted vs measured batch-1 latency of every kept network.

The board energy model (:mod:`edgeprune.power.model`) charges power over time, so what it says
about a compressed network rests on *ratios* of modelled time, compressed / dense. The host is
the one device on which every kept network's latency is measured, so the same model, on the
``host-x86`` profile, predicts each one and :func:`check` compares:

- ``ratio``: predicted / measured latency of each network (the absolute miss);
- ``ratio_error``: (predicted compressed / predicted dense) / (measured compressed / measured
  dense), against the dense network of the same model and precision, folded to ``max(r, 1/r)``
  (a 1.5x miss either way reads 1.5). This is the figure the claims rest on.

The profile's constants are a priori. Where its worst ratio error exceeds ``tolerance``, the
overhead and efficiencies (:func:`~edgeprune.power.calibration.free_parameters`) are refitted to
the measured networks, and each network's ratio error is then the **leave-one-out** one: the fit
that predicts it never saw it (the dense network of its model is always in). The model that
judges a claim is the recalibrated one; if even that misses by more than ``tolerance``, power
claims resting on modelled time are not judged (:mod:`edgeprune.report.evidence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from edgeprune.power.calibration import Case, case_ms, constant, fit_profile, free_parameters
from edgeprune.power.profiles import DeviceProfile

__all__ = ["HostCase", "TOLERANCE", "check", "fold"]

TOLERANCE = 1.5
"""The largest ratio error (either way) at which the model may judge a claim (issue 17)."""

HOST_FIT_SOURCE = "fitted by the device stage to the host's measured kept networks (edgeprune.power.validation)"


@dataclass(frozen=True)
class HostCase:
    """One kept network's measured host latency: its key, whether it is its model's dense network, its case."""

    key: dict[str, str]
    dense: bool
    case: Case


def fold(ratio: float | np.ndarray | pd.Series) -> Any:
    """``max(r, 1/r)``: a miss by a factor, whichever way."""
    return np.maximum(ratio, 1 / ratio)


def _group(item: HostCase) -> tuple[str, str]:
    return item.key["model"], item.case.precision


def _predictions(profile: DeviceProfile, items: Sequence[HostCase]) -> list[float]:
    return [case_ms(profile, i.case) for i in items]


def _table(items: Sequence[HostCase], predicted: Sequence[float], column: str) -> pd.DataFrame:
    """Per network: measured, predicted, their ratio and the ratio error of compressed / dense."""
    frame = pd.DataFrame([{**i.key, "precision": i.case.precision, "dense": i.dense, "measured_ms": i.case.measured_ms}
                          for i in items])  # fmt: skip
    frame[f"{column}_ms"] = predicted
    frame[f"{column}_ratio"] = frame[f"{column}_ms"] / frame["measured_ms"]
    dense = frame[frame["dense"]].groupby(["model", "precision"])[["measured_ms", f"{column}_ms"]].first()
    base = dense.reindex(pd.MultiIndex.from_frame(frame[["model", "precision"]]))
    measured_speed = frame["measured_ms"].to_numpy() / base["measured_ms"].to_numpy()
    predicted_speed = frame[f"{column}_ms"].to_numpy() / base[f"{column}_ms"].to_numpy()
    frame["measured_vs_dense"] = measured_speed
    frame[f"{column}_vs_dense"] = predicted_speed
    frame[f"{column}_ratio_error"] = fold(predicted_speed / measured_speed)
    return frame


def _summary(table: pd.DataFrame, column: str) -> dict[str, dict[str, float | int]]:
    """Median and worst ratio error of the compressed networks, over all and per precision."""
    compressed = table[~table["dense"]]
    groups = {"all": compressed, **dict(iter(compressed.groupby("precision")))}
    out = {}
    for name, group in groups.items():
        errors = group[f"{column}_ratio_error"].dropna()
        out[str(name)] = {"networks": int(len(errors)), "median": round(float(errors.median()), 4),
                          "worst": round(float(errors.max()), 4)} if len(errors) else {"networks": 0}  # fmt: skip
    return out


def check(
    profile: DeviceProfile, items: Sequence[HostCase], *, tolerance: float = TOLERANCE
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The host check: a per-network table and a summary (the a-priori and, where refitted, the
    leave-one-out errors, the refitted constants, and whether the judging model passes).

    Ratio errors cover the compressed networks (not the dense ones, whose ratio is 1 by definition).
    Needs each (model, precision) to have its dense network among ``items``.
    """
    if tolerance < 1:
        raise ValueError(f"tolerance is a factor >= 1, got {tolerance}")
    have_dense = {_group(i) for i in items if i.dense}
    missing = sorted({_group(i) for i in items} - have_dense)
    if missing:
        raise ValueError(f"no dense network measured for (model, precision) {missing}: the ratio error needs one")
    table = _table(items, _predictions(profile, items), "apriori")
    errors = {"apriori": _summary(table, "apriori")}
    recalibrate = errors["apriori"]["all"].get("worst", 0.0) > tolerance
    summary: dict[str, Any] = {"profile": profile.name, "tolerance": tolerance, "recalibrated": bool(recalibrate)}
    judge = "apriori"
    if recalibrate:
        cases = [i.case for i in items]
        params = free_parameters(profile, cases)
        fitted = fit_profile(profile, cases, params=params, source=HOST_FIT_SOURCE)
        table = pd.concat([table, _table(items, _predictions(fitted, items), "fitted").filter(like="fitted_")], axis=1)
        dense_case = {_group(i): i.case for i in items if i.dense}
        loo_ms, loo_speed = [], []
        for n, item in enumerate(items):
            if item.dense:  # the dense networks anchor every fit
                loo_ms.append(table.loc[n, "fitted_ms"])
                loo_speed.append(1.0)
                continue
            without = fit_profile(profile, cases[:n] + cases[n + 1 :], params=params, source=HOST_FIT_SOURCE)
            loo_ms.append(case_ms(without, item.case))
            loo_speed.append(loo_ms[-1] / case_ms(without, dense_case[_group(item)]))
        table["loo_ms"] = loo_ms
        table["loo_vs_dense"] = loo_speed
        table["loo_ratio_error"] = fold(table["loo_vs_dense"] / table["measured_vs_dense"])
        errors |= {"fitted": _summary(table, "fitted"), "loo": _summary(table, "loo")}
        summary["constants"] = {".".join(p): constant(fitted, p) for p in params}
        judge = "loo"
    summary["errors"] = errors
    summary["judged_by"] = {"apriori": "a-priori constants", "loo": "refitted, leave-one-out"}[judge]
    summary["judge"] = judge
    summary["passes"] = {name: bool(e["worst"] <= tolerance) for name, e in errors[judge].items() if e["networks"]}
    return table, summary
