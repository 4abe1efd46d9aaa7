"""Modelled latency and energy of a network on a device profile (``edgeprune/devices/*.yaml``).

Per layer (every Conv2d / Linear, float or ``torch.ao`` quantized), forward hooks record MACs and
the elements it moves (weights, input and output activations). On a profile:

* **latency** = sum over layers of ``max(MACs / (peak x efficiency), bytes / bandwidth) + overhead``:
  a roofline per layer plus the framework's per-layer dispatch cost. Depthwise convolutions run
  at ``depthwise_efficiency_ratio`` of the dense efficiency: they have too little reuse per byte
  for the SIMD / CUDA kernels that reach peak on dense convolutions.
* **energy** = ``idle W x latency + k x sum(MACs x pJ/MAC) + sum(bytes x pJ/byte)`` with the
  Horowitz (ISSCC 2014, 45 nm) arithmetic and DRAM energies. The arithmetic is a small part of
  what a programmable core spends per operation (instruction fetch, register files, caches,
  clocks), so MAC energy is multiplied by one device factor ``k`` chosen so that dense layers at
  the profile's reference precision and calibrated efficiency draw the board's measured active
  power: ``k = (active W - idle W) / (pJ/MAC x peak x efficiency)``. Other precisions keep
  Horowitz's ratios to it (int8 multiply-add 0.3 pJ vs fp32 4.6 pJ), which is the optimistic end
  of their saving on a CPU. Mean power is clamped to the board's maximum.

A profile without ``precisions`` (the host) has no roofline: it takes a measured latency and
charges the active power for all of it, CodeCarbon-style.

Every number this module returns is modelled and says so in its ``source``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from torch import nn
from torch.ao.nn import quantized as nnq
from torch.ao.nn.quantized import dynamic as nnqd

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}
_CONV = (nn.Conv2d, nnq.Conv2d)
_LINEAR = (nn.Linear, nnq.Linear, nnqd.Linear)


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


@dataclass(frozen=True)
class LayerCost:
    """Work and traffic of one Conv2d / Linear call, in elements (precision-free)."""

    name: str
    kind: Literal["conv", "depthwise", "linear"]
    macs: int
    weights: int
    inputs: int
    outputs: int

    def bytes_moved(self, bytes_per_element: float) -> float:
        """Weights read plus activations read and written, every one once (no cache reuse)."""
        return (self.weights + self.inputs + self.outputs) * bytes_per_element


def _weight_elements(module: nn.Module) -> int:
    weight, bias = module.weight, getattr(module, "bias", None)
    if callable(weight):  # torch.ao quantized modules expose weight() / bias() methods
        weight, bias = weight(), bias() if callable(bias) else bias
    return weight.numel() + (bias.numel() if isinstance(bias, torch.Tensor) else 0)


def layer_costs(model: nn.Module, input_shape: Sequence[int]) -> list[LayerCost]:
    """Per-layer MACs and element traffic of one forward pass of ``model`` at ``input_shape``.

    The forward runs in eval mode without gradients on the model's device (a ``meta`` model
    costs no arithmetic); the model's train/eval state is restored afterwards.
    """
    if len(input_shape) < 2 or any(int(s) < 1 for s in input_shape):
        raise ValueError(f"input_shape must be positive (N, C, ...), got {tuple(input_shape)}")
    names = {module: name for name, module in model.named_modules()}
    costs: list[LayerCost] = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        x = args[0]
        if isinstance(module, _CONV):
            kh, kw = module.kernel_size
            macs = output.numel() * (module.in_channels // module.groups) * kh * kw
            kind = "depthwise" if module.groups > 1 and module.groups == module.in_channels else "conv"
        else:
            macs, kind = output.numel() * module.in_features, "linear"
        costs.append(LayerCost(names[module], kind, macs, _weight_elements(module), x.numel(), output.numel()))

    tensors = [*model.parameters(), *model.buffers()]
    device = tensors[0].device if tensors else torch.device("cpu")
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _CONV + _LINEAR)]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(int(s) for s in input_shape), device=device))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training
    if not costs:
        raise ValueError(f"{type(model).__name__} has no Conv2d / Linear layer to cost")
    return costs


def default_precision(model: nn.Module) -> str:
    """``int8`` for a model holding ``torch.ao`` quantized layers, else ``fp32``."""
    quantized = any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
    return "int8" if quantized else "fp32"


def _precision(profile: DeviceProfile, precision: str) -> PrecisionSpec:
    if precision not in profile.precisions:
        known = ", ".join(sorted(profile.precisions)) or "none: it only converts a measured latency"
        raise KeyError(f"device profile {profile.name} has no precision {precision!r} (it has {known})")
    return profile.precisions[precision]


def layer_latencies(costs: Sequence[LayerCost], profile: DeviceProfile, precision: str) -> list[float]:
    """Roofline time plus dispatch overhead of each layer, in seconds."""
    spec = _precision(profile, precision)
    proc = profile.processors[spec.processor]
    bandwidth = profile.memory_bandwidth_gb_s.value * 1e9
    overhead = proc.layer_overhead_us.value * 1e-6
    times = []
    for cost in costs:
        efficiency = spec.efficiency.value * (proc.depthwise_efficiency_ratio.value if cost.kind == "depthwise" else 1.0)
        compute = cost.macs / (spec.peak_gmac_s.value * 1e9 * efficiency)
        memory = cost.bytes_moved(BYTES_PER_ELEMENT[precision]) / bandwidth
        times.append(max(compute, memory) + overhead)
    return times


def dynamic_scale(profile: DeviceProfile) -> float:
    """``k``: busy dense layers at the reference precision draw (active - idle) W."""
    ref = _precision(profile, profile.energy_reference)
    mac_rate = ref.peak_gmac_s.value * 1e9 * ref.efficiency.value
    return (profile.active_power_w.value - profile.idle_power_w.value) / (ref.pj_per_mac.value * 1e-12 * mac_rate)


def dynamic_energy(costs: Sequence[LayerCost], profile: DeviceProfile, precision: str) -> float:
    """Energy above idle, J: k x MACs x pJ/MAC + bytes x pJ/byte."""
    spec = _precision(profile, precision)
    macs = sum(c.macs for c in costs)
    moved = sum(c.bytes_moved(BYTES_PER_ELEMENT[precision]) for c in costs)
    return (dynamic_scale(profile) * macs * spec.pj_per_mac.value + moved * profile.pj_per_byte.value) * 1e-12


@dataclass(frozen=True)
class Estimate:
    """Modelled latency and energy of one image (batch 1) on a profile."""

    latency_s: float
    energy_j: float
    mean_power_w: float
    dynamic_energy_j: float
    clamped: bool
    source: str

    def to_dict(self) -> dict[str, float | bool | str]:
        return {
            "latency_ms": self.latency_s * 1e3,
            "energy_mj": self.energy_j * 1e3,
            "mean_power_mw": self.mean_power_w * 1e3,
            "dynamic_energy_mj": self.dynamic_energy_j * 1e3,
            "clamped": self.clamped,
            "source": self.source,
        }


def estimate(
    model: nn.Module | Sequence[LayerCost],
    profile: str | Path | DeviceProfile,
    *,
    precision: str | None = None,
    input_shape: Sequence[int] | None = None,
    latency_s: float | None = None,
) -> Estimate:
    """Latency, energy and mean power of one image on ``profile``.

    ``model`` is a module (costed at ``input_shape``) or its :func:`layer_costs`. With
    ``latency_s`` (a measured latency) only the power is modelled; a profile without a roofline
    (the host) requires it.
    """
    if not isinstance(profile, DeviceProfile):
        profile = load_profile(profile)
    if latency_s is not None and not latency_s > 0:
        raise ValueError(f"latency_s must be > 0, got {latency_s}")
    idle, active, peak = profile.idle_power_w.value, profile.active_power_w.value, profile.max_power_w.value
    source = f"modelled: {profile.name}" if latency_s is None else f"latency measured, power modelled: {profile.name}"
    if not profile.precisions:
        if latency_s is None:
            raise ValueError(f"device profile {profile.name} has no roofline: pass the measured latency_s")
        return Estimate(latency_s, active * latency_s, active, (active - idle) * latency_s, False, source)
    if isinstance(model, nn.Module):
        if input_shape is None:
            raise ValueError("input_shape is required to cost a module")
        precision = precision or default_precision(model)
        model = layer_costs(model, input_shape)
    if precision is None:
        raise ValueError("precision is required with precomputed layer costs")
    time_s = sum(layer_latencies(model, profile, precision)) if latency_s is None else latency_s
    dynamic = dynamic_energy(model, profile, precision)
    energy = idle * time_s + dynamic
    clamped = energy > peak * time_s
    if clamped:
        energy = peak * time_s
    return Estimate(time_s, energy, energy / time_s, energy - idle * time_s, clamped, source)
