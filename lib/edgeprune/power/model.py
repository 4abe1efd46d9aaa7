"""Modelled latency and energy of a network on a device profile (:mod:`edgeprune.power.profiles`).

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
from pathlib import Path

from torch import nn

from edgeprune.counting import LayerCost, layer_costs
from edgeprune.power.profiles import BYTES_PER_ELEMENT, DeviceProfile, PrecisionSpec, load_profile

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
