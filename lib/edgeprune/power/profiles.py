"""Device profiles (``edgeprune/devices/*.yaml``): the constants of the modelled boards, each with its source.

A schema and its loader only (pydantic and PyYAML, no torch), so the params schema can check
profile names without loading the cost model (:mod:`edgeprune.power.model`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

__all__ = [
    "BYTES_PER_ELEMENT", "CalibrationPoint", "Constant", "DeviceProfile", "PrecisionSpec", "ProcessorSpec",
    "available_profiles", "load_profile",
]  # fmt: skip

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constant(_Frozen):
    """A number and where it comes from."""

    value: float
    source: str = Field(min_length=1)


class ProcessorSpec(_Frozen):
    """What one execution unit (CPU, GPU) adds per layer, shared by the precisions it runs."""

    layer_overhead_us: Constant
    depthwise_efficiency_ratio: Constant


class PrecisionSpec(_Frozen):
    """Roofline and energy constants of one precision on its processor."""

    processor: str
    peak_gmac_s: Constant
    efficiency: Constant
    pj_per_mac: Constant


class CalibrationPoint(_Frozen):
    """A published latency (ms, batch 1) of a torchvision model at ``input_size``."""

    model: str
    precision: str
    published_ms: float = Field(gt=0)
    input_size: int = Field(224, ge=8)
    source: str = Field(min_length=1)


class DeviceProfile(_Frozen):
    """A device profile as stored in ``edgeprune/devices/<name>.yaml``."""

    name: str
    description: str
    idle_power_w: Constant
    active_power_w: Constant
    max_power_w: Constant
    memory_bandwidth_gb_s: Constant | None = None
    pj_per_byte: Constant | None = None
    energy_reference: str | None = None
    processors: dict[str, ProcessorSpec] = Field(default_factory=dict)
    precisions: dict[str, PrecisionSpec] = Field(default_factory=dict)
    calibration: list[CalibrationPoint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        idle, active, peak = self.idle_power_w.value, self.active_power_w.value, self.max_power_w.value
        if not 0 <= idle <= active <= peak:
            raise ValueError(f"need 0 <= idle_power_w <= active_power_w <= max_power_w, got {idle}, {active}, {peak}")
        if self.precisions:
            for key in ("memory_bandwidth_gb_s", "pj_per_byte", "energy_reference"):
                if getattr(self, key) is None:
                    raise PydanticCustomError("missing", f"{key} is required when precisions are given")
            if self.energy_reference not in self.precisions:
                raise ValueError(f"energy_reference {self.energy_reference!r} is not one of {sorted(self.precisions)}")
        for name, spec in self.precisions.items():
            if name not in BYTES_PER_ELEMENT:
                raise ValueError(f"unknown precision {name!r}; known: {sorted(BYTES_PER_ELEMENT)}")
            if spec.processor not in self.processors:
                raise PydanticCustomError("missing", f"processors.{spec.processor} (used by precision {name}) is required")
            for key in ("peak_gmac_s", "pj_per_mac"):
                if getattr(spec, key).value <= 0:
                    raise ValueError(f"precisions.{name}.{key} must be > 0")
            if not 0 < spec.efficiency.value <= 1:
                raise ValueError(f"precisions.{name}.efficiency must be in (0, 1], got {spec.efficiency.value}")
        for name, proc in self.processors.items():
            if not 0 < proc.depthwise_efficiency_ratio.value <= 1:
                raise ValueError(f"processors.{name}.depthwise_efficiency_ratio must be in (0, 1]")
            if proc.layer_overhead_us.value < 0:
                raise ValueError(f"processors.{name}.layer_overhead_us must be >= 0")
        for point in self.calibration:
            if point.precision not in self.precisions:
                raise ValueError(f"calibration point {point.model} uses precision {point.precision!r} not in precisions")
        return self


def available_profiles() -> list[str]:
    """Names of the profiles shipped in ``edgeprune/devices``."""
    return sorted(p.name[: -len(".yaml")] for p in resources.files("edgeprune").joinpath("devices").iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a shipped profile by name (``rpi4``) or any profile YAML by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"device profile {path} does not exist")
        text = path.read_text()
    elif str(name_or_path) in available_profiles():
        text = resources.files("edgeprune").joinpath("devices", f"{name_or_path}.yaml").read_text()
    else:
        raise KeyError(f"unknown device profile {str(name_or_path)!r}; shipped: {', '.join(available_profiles())}")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise ValueError(f"device profile {name_or_path} is not a YAML mapping")
    try:
        return DeviceProfile.model_validate(raw)
    except ValidationError as err:
        missing = [".".join(map(str, e["loc"])) if e["loc"] else e["msg"] for e in err.errors() if e["type"] == "missing"]
        if missing:
            raise KeyError(f"device profile {name_or_path} is missing constant(s): {'; '.join(missing)}") from None
        raise ValueError(f"device profile {name_or_path} is invalid: {err}") from None
