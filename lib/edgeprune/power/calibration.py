"""Calibrating a device profile's roofline against the published latencies it lists.

The free constants are, for each calibrated precision, its dense ``efficiency`` and, for each
processor those precisions run on, ``layer_overhead_us`` and (when a calibration model has
depthwise layers on it) ``depthwise_efficiency_ratio``. They are fitted by least squares on
log(modelled / published), so a 2x miss weighs the same in either direction. Leave-one-out
predictions show how well the fit carries to a network it has not seen.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torchvision
from scipy.optimize import least_squares

from edgeprune.counting import LayerCost, layer_costs
from edgeprune.power.model import layer_latencies
from edgeprune.power.profiles import CalibrationPoint, DeviceProfile, available_profiles, load_profile

FIT_SOURCE = "fitted by `python -m edgeprune.power calibrate --fit` to this profile's calibration points"
_BOUNDS = {"efficiency": (1e-3, 1.0), "depthwise_efficiency_ratio": (1e-3, 1.0), "layer_overhead_us": (1e-2, 1e4)}

Path_ = tuple[str, str, str]  # ("precisions", "fp32", "efficiency") / ("processors", "cpu", "layer_overhead_us")


@functools.lru_cache(maxsize=None)
def calibration_costs(model_name: str, input_size: int = 224) -> tuple[LayerCost, ...]:
    """Layer costs of an untrained torchvision model, built on the meta device (no weights, no arithmetic)."""
    builder = getattr(torchvision.models, model_name, None)
    if not callable(builder):
        raise KeyError(f"calibration model {model_name!r} is not a torchvision.models builder")
    with torch.device("meta"):
        model = builder()
    return tuple(layer_costs(model, (1, 3, input_size, input_size)))


@dataclass(frozen=True)
class Case:
    """A batch-1 latency the roofline should reproduce: a network's layer costs at one precision."""

    name: str
    costs: tuple[LayerCost, ...]
    precision: str
    measured_ms: float

    @classmethod
    def from_point(cls, point: CalibrationPoint) -> Case:
        return cls(point.model, calibration_costs(point.model, point.input_size), point.precision, point.published_ms)


def case_ms(profile: DeviceProfile, case: Case) -> float:
    """The profile's roofline latency of one case, in ms."""
    return sum(layer_latencies(case.costs, profile, case.precision)) * 1e3


def modelled_ms(profile: DeviceProfile, point: CalibrationPoint) -> float:
    """The profile's roofline latency for one calibration point, in ms."""
    return case_ms(profile, Case.from_point(point))


def free_parameters(profile: DeviceProfile, points: Sequence[CalibrationPoint | Case] | None = None) -> list[Path_]:
    """The constants :func:`fit_profile` fits from ``points`` (default: the profile's own)."""
    cases = _cases(profile, points)
    params: list[Path_] = []
    for precision in dict.fromkeys(c.precision for c in cases):
        params.append(("precisions", precision, "efficiency"))
    for processor in dict.fromkeys(profile.precisions[c.precision].processor for c in cases):
        params.append(("processors", processor, "layer_overhead_us"))
        on_processor = [c for c in cases if profile.precisions[c.precision].processor == processor]
        if any(cost.kind == "depthwise" for c in on_processor for cost in c.costs):
            params.append(("processors", processor, "depthwise_efficiency_ratio"))
    return params


def constant(profile: DeviceProfile, path: Path_) -> float:
    """The value of the constant at ``path`` (the inverse of :func:`with_constants`)."""
    section, key, field = path
    return getattr(getattr(profile, section)[key], field).value


def with_constants(profile: DeviceProfile, values: dict[Path_, float], source: str = FIT_SOURCE) -> DeviceProfile:
    """A copy of ``profile`` with the constants at ``values``' paths replaced (and re-validated)."""
    raw = profile.model_dump()
    for (section, key, field), value in values.items():
        raw[section][key][field] = {"value": float(value), "source": source}
    return DeviceProfile.model_validate(raw)


def _cases(profile: DeviceProfile, points: Sequence[CalibrationPoint | Case] | None) -> list[Case]:
    points = profile.calibration if points is None else points
    return [p if isinstance(p, Case) else Case.from_point(p) for p in points]


def fit_profile(
    profile: str | DeviceProfile,
    points: Sequence[CalibrationPoint | Case] | None = None,
    *,
    params: Sequence[Path_] | None = None,
    source: str = FIT_SOURCE,
) -> DeviceProfile:
    """``profile`` with its free constants (or ``params``) fitted to ``points`` (default: its calibration points).

    Least squares on log(modelled / measured), so a 2x miss weighs the same in either direction.
    """
    profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    cases = _cases(profile, points)
    if not cases:
        raise ValueError(f"device profile {profile.name} has no calibration points to fit")
    params = list(free_parameters(profile, cases) if params is None else params)
    lower = np.log([_BOUNDS[p[2]][0] for p in params])
    upper = np.log([_BOUNDS[p[2]][1] for p in params])
    start = np.clip(np.log([constant(profile, p) for p in params]), lower, upper)

    def residuals(x: np.ndarray) -> list[float]:
        trial = with_constants(profile, dict(zip(params, np.exp(x))))
        return [math.log(case_ms(trial, c) / c.measured_ms) for c in cases]

    result = least_squares(residuals, start, bounds=(lower, upper))
    return with_constants(profile, {p: float(f"{v:.4g}") for p, v in zip(params, np.exp(result.x))}, source)


def calibration_table(
    profiles: Sequence[str | DeviceProfile] | None = None, *, leave_one_out: bool = True
) -> pd.DataFrame:
    """Published vs modelled latency of every calibration point of ``profiles`` (default: every
    shipped profile that has calibration points).

    Columns: profile, model, precision, published_ms, modelled_ms, ratio (modelled / published)
    and, with ``leave_one_out``, loo_ms / loo_ratio: the point predicted by a fit without it.
    """
    if profiles is None:
        profiles = [p for p in map(load_profile, available_profiles()) if p.calibration]
    rows = []
    for profile in profiles:
        profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
        if not profile.calibration:
            raise ValueError(f"device profile {profile.name} has no calibration points")
        for i, point in enumerate(profile.calibration):
            ms = modelled_ms(profile, point)
            row = {"profile": profile.name, "model": point.model, "precision": point.precision,
                   "published_ms": point.published_ms, "modelled_ms": ms, "ratio": ms / point.published_ms}
            if leave_one_out:
                others = profile.calibration[:i] + profile.calibration[i + 1 :]
                loo = modelled_ms(fit_profile(profile, others), point)
                row.update(loo_ms=loo, loo_ratio=loo / point.published_ms)
            rows.append(row)
    return pd.DataFrame(rows)
