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


def modelled_ms(profile: DeviceProfile, point: CalibrationPoint) -> float:
    """The profile's roofline latency for one calibration point, in ms."""
    return sum(layer_latencies(calibration_costs(point.model, point.input_size), profile, point.precision)) * 1e3


def free_parameters(profile: DeviceProfile, points: Sequence[CalibrationPoint] | None = None) -> list[Path_]:
    """The constants :func:`fit_profile` fits from ``points`` (default: the profile's own)."""
    points = profile.calibration if points is None else points
    params: list[Path_] = []
    for precision in dict.fromkeys(p.precision for p in points):
        params.append(("precisions", precision, "efficiency"))
    for processor in dict.fromkeys(profile.precisions[p.precision].processor for p in points):
        params.append(("processors", processor, "layer_overhead_us"))
        on_processor = [p for p in points if profile.precisions[p.precision].processor == processor]
        if any(c.kind == "depthwise" for p in on_processor for c in calibration_costs(p.model, p.input_size)):
            params.append(("processors", processor, "depthwise_efficiency_ratio"))
    return params


def with_constants(profile: DeviceProfile, values: dict[Path_, float], source: str = FIT_SOURCE) -> DeviceProfile:
    """A copy of ``profile`` with the constants at ``values``' paths replaced (and re-validated)."""
    raw = profile.model_dump()
    for (section, key, field), value in values.items():
        raw[section][key][field] = {"value": float(value), "source": source}
    return DeviceProfile.model_validate(raw)


def fit_profile(profile: str | DeviceProfile, points: Sequence[CalibrationPoint] | None = None) -> DeviceProfile:
    """``profile`` with its free constants fitted to ``points`` (default: its calibration points)."""
    profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    points = list(profile.calibration if points is None else points)
    if not points:
        raise ValueError(f"device profile {profile.name} has no calibration points to fit")
    params = free_parameters(profile, points)
    lower = np.log([_BOUNDS[p[2]][0] for p in params])
    upper = np.log([_BOUNDS[p[2]][1] for p in params])
    start = np.clip(np.log([getattr(getattr(profile, p[0])[p[1]], p[2]).value for p in params]), lower, upper)

    def residuals(x: np.ndarray) -> list[float]:
        trial = with_constants(profile, dict(zip(params, np.exp(x))))
        return [math.log(modelled_ms(trial, p) / p.published_ms) for p in points]

    result = least_squares(residuals, start, bounds=(lower, upper))
    return with_constants(profile, {p: float(f"{v:.4g}") for p, v in zip(params, np.exp(result.x))})


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
