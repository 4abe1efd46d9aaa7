"""Power and energy: real meters (Jetson INA3221, INA219/INA260 on I2C, Intel RAPL) and a modelled
backend over device profiles (``edgeprune/devices/*.yaml``).

The meters import eagerly and need only the standard library, so the device runner works on a
board with torch alone. The modelled backend (torch, torchvision, pydantic, PyYAML, SciPy) loads
on first use of one of its names (PEP 562 module ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import Any

from edgeprune.power.meters import (
    I2CMeter,
    INA260,
    JetsonINA3221Meter,
    Meter,
    MeterReading,
    PowerMode,
    RaplMeter,
    SampledMeter,
    best_meter,
    read_nvpmodel,
    reading_from_trace,
)

_LAZY = {
    "DeviceProfile": "profiles",
    "Estimate": "model",
    "LayerCost": "model",  # defined in edgeprune.counting, used by the model
    "available_profiles": "profiles",
    "default_precision": "model",
    "estimate": "model",
    "layer_costs": "model",
    "load_profile": "profiles",
    "calibration_table": "calibration",
    "fit_profile": "calibration",
}

__all__ = [
    "I2CMeter",
    "INA260",
    "JetsonINA3221Meter",
    "Meter",
    "MeterReading",
    "PowerMode",
    "RaplMeter",
    "SampledMeter",
    "best_meter",
    "read_nvpmodel",
    "reading_from_trace",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"edgeprune.power.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'edgeprune.power' has no attribute {name!r}")
