"""Modelled latency and energy of a network on a device profile (:mod:`edgeprune.power.profiles`).

Per layer (every Conv2d / Linear, float or ``torch.ao`` quantized), forward hooks record MACs and
the elements it moves (weights, input and output activations). On a profile:

* **latency** = sum over layers of ``max(MACs / (peak x efficiency), bytes / bandwidth) + overhead``:
  a roofline per layer plus the framework's per-layer dispatch cost. Depthwise convolutions run
  at ``depthwise_efficiency_ratio`` of the dense efficiency: they have too little reuse per byte
  for the SIMD / CUDA kernels that reach peak on dense convolutions.
* **energy** (the board model, the one every stage and claim uses) = ``idle W x T + (active W -
  idle W) x T`` over the modelled or measured latency ``T``: batch-1 inference keeps the
  processor busy for all of ``T``, the per-layer dispatch overhead included (a core spinning
  through the framework draws the same power as one multiplying). At a frame rate ``f`` the
  mean power above idle is ``(active - idle) x min(1, f x T)``. Energy thus falls exactly as
  time does, and the model's trustworthiness is that of its time ratios, which the device stage
  checks against the host's measured latencies (:mod:`edgeprune.power.validation`).
* **dynamic-only energy** (an ablation, labelled so wherever it is reported) = ``k x sum(MACs x
  pJ/MAC) + sum(bytes x pJ/byte)`` with the Horowitz (ISSCC 2014, 45 nm) arithmetic and DRAM
  energies, ``k`` chosen so that dense layers at the reference precision and calibrated
  efficiency draw ``active - idle`` W. It charges nothing for the dispatch overhead, so on
  overhead-bound networks (mobilenet_v3_small at 32x32: ~90 % of the modelled Pi 4 time) it
  falls with MACs where the board's energy does not.

A profile without ``precisions`` has no roofline: it takes a measured latency only.

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
    """``k``: busy dense layers at the reference precision draw (active - idle) W (dynamic-only ablation)."""
    ref = _precision(profile, profile.energy_reference)
    mac_rate = ref.peak_gmac_s.value * 1e9 * ref.efficiency.value
    return (profile.active_power_w.value - profile.idle_power_w.value) / (ref.pj_per_mac.value * 1e-12 * mac_rate)


def dynamic_only_energy(costs: Sequence[LayerCost], profile: DeviceProfile, precision: str) -> float:
    """The dynamic-only ablation, J: k x MACs x pJ/MAC + bytes x pJ/byte (no charge for time)."""
    spec = _precision(profile, precision)
    macs = sum(c.macs for c in costs)
    moved = sum(c.bytes_moved(BYTES_PER_ELEMENT[precision]) for c in costs)
    return (dynamic_scale(profile) * macs * spec.pj_per_mac.value + moved * profile.pj_per_byte.value) * 1e-12


@dataclass(frozen=True)
class Estimate:
    """Modelled latency and energy of one image (batch 1) on a profile.

    ``energy_j`` and ``above_idle_energy_j`` are the board model's; ``dynamic_only_energy_j`` is
    the ablation (NaN on a profile without a roofline).
    """

    latency_s: float
    energy_j: float
    mean_power_w: float
    above_idle_energy_j: float
    dynamic_only_energy_j: float
    source: str

    def above_idle_power_w(self, frame_rate_hz: float) -> float:
        """Mean power above idle when frames arrive at ``frame_rate_hz`` (busy share capped at 1)."""
        if frame_rate_hz <= 0:
            raise ValueError(f"frame_rate_hz must be > 0, got {frame_rate_hz}")
        return self.above_idle_energy_j / self.latency_s * min(1.0, frame_rate_hz * self.latency_s)

    def to_dict(self) -> dict[str, float | str]:
        return {
            "latency_ms": self.latency_s * 1e3,
            "energy_mj": self.energy_j * 1e3,
            "mean_power_mw": self.mean_power_w * 1e3,
            "above_idle_energy_mj": self.above_idle_energy_j * 1e3,
            "dynamic_only_energy_mj": self.dynamic_only_energy_j * 1e3,
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
    requires it.
    """
    if not isinstance(profile, DeviceProfile):
        profile = load_profile(profile)
    if latency_s is not None and not latency_s > 0:
        raise ValueError(f"latency_s must be > 0, got {latency_s}")
    idle, active = profile.idle_power_w.value, profile.active_power_w.value
    source = f"modelled: {profile.name}" if latency_s is None else f"latency measured, power modelled: {profile.name}"
    if not profile.precisions:
        if latency_s is None:
            raise ValueError(f"device profile {profile.name} has no roofline: pass the measured latency_s")
        return Estimate(latency_s, active * latency_s, active, (active - idle) * latency_s, float("nan"), source)
    if isinstance(model, nn.Module):
        if input_shape is None:
            raise ValueError("input_shape is required to cost a module")
        precision = precision or default_precision(model)
        model = layer_costs(model, input_shape)
    if precision is None:
        raise ValueError("precision is required with precomputed layer costs")
    time_s = sum(layer_latencies(model, profile, precision)) if latency_s is None else latency_s
    dynamic = dynamic_only_energy(model, profile, precision)
    return Estimate(time_s, active * time_s, active, (active - idle) * time_s, dynamic, source)
