"""The ``device_power`` section of params.yaml (stage 60_device_power), validated at load time.

Torch-free: profile names are checked against :mod:`edgeprune.power.profiles` alone.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgeprune.power.profiles import DeviceProfile, available_profiles, load_profile
from edgeprune.fields import repeats_field
from edgeprune.schema import Section

STAGE = "device"
"""The results folder of the device-power stage (``results/device``); no method stage may take its name."""


def _profile(name: str) -> DeviceProfile:
    try:
        return load_profile(name)
    except KeyError as err:
        raise ValueError(err.args[0]) from None


class DevicePowerParams(Section):
    """Device latency and power (stage 60_device_power). Defaults are the TINY values."""


    stages: list[str] = Field(
        default_factory=lambda: ["baselines"], min_length=1,
        description="method stages whose kept models (results/<stage>/<model>/models/*.pt) are costed",
    )  # fmt: skip
    profiles: list[str] = Field(
        default_factory=lambda: ["rpi4", "jetson-nano-10w", "jetson-nano-5w"], min_length=1,
        description="modelled devices: shipped profiles (edgeprune/devices/*.yaml)",
    )  # fmt: skip
    precisions: list[Literal["fp32", "fp16", "int8"]] = Field(
        default_factory=lambda: ["fp32", "fp16", "int8"], min_length=1,
        description="precisions costed on each profile that defines them (fp16: Jetson GPU only)",
    )  # fmt: skip
    host_profile: str | None = Field(
        "host-x86", description="profile converting the host's measured latency to power where RAPL is absent; "
        "null drops the host rows",
    )  # fmt: skip
    export: bool = Field(True, description="write TorchScript exports for `python -m edgeprune.device run`")
    calib_images: int = Field(32, ge=1, description="train images calibrating the int8 exports")
    host_warmup: int = Field(2, ge=0, description="untimed batch-1 runs before each timed round of a kept model on the host")
    host_repeats: int = repeats_field(10, "timed batch-1 runs per round")
    host_rounds: int = Field(3, ge=1, description="interleaved rounds over every kept model; latency = median of round medians")
    host_energy_seconds: float = Field(1.0, gt=0, description="metered inference per model and precision (RAPL only)")

    @field_validator("stages")
    @classmethod
    def _stage_names(cls, value: list[str]) -> list[str]:
        bad = [s for s in value if not re.fullmatch(r"[a-z0-9_]+", s) or s == STAGE]
        if bad or len(set(value)) != len(value):
            raise ValueError(f"stages must be distinct method-stage folder names (not {STAGE!r}), got {value}")
        return value

    @field_validator("profiles")
    @classmethod
    def _known_profiles(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate profiles in {value}")
        unknown = [p for p in value if p not in available_profiles()]
        if unknown:
            raise ValueError(f"unknown device profile(s) {unknown}; shipped: {available_profiles()}")
        return value

    @field_validator("host_profile")
    @classmethod
    def _known_host_profile(cls, value: str | None) -> str | None:
        if value is not None and value not in available_profiles():
            raise ValueError(f"unknown host_profile {value!r}; shipped: {available_profiles()}")
        return value

    @model_validator(mode="after")
    def _precisions_used(self) -> DevicePowerParams:
        offered = {p for name in self.profiles for p in _profile(name).precisions} | {"fp32", "int8"}
        unused = [p for p in self.precisions if p not in offered]
        if unused or len(set(self.precisions)) != len(self.precisions):
            raise ValueError(f"precisions {self.precisions}: {unused or 'duplicates'} not defined by any of {self.profiles}")
        return self
