"""Measured device results into the device-power table (stage 60_device_power).

A JSON written by ``python -m edgeprune.device run`` on a real board and committed under
``results/device/measured/`` replaces the modelled row of its model, device and precision:
``measured on jetson-nano 10W`` when a meter ran, ``latency measured on rpi4, power modelled:
rpi4`` when the board had none. Also here: the kept model a row describes and the row itself,
which the stage's modelled and host rows share.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from edgeprune.paths import ResultPaths
from edgeprune.power.model import estimate
from edgeprune.power.outputs import KEY, out_dir
from edgeprune.power.profiles import available_profiles, load_profile

if TYPE_CHECKING:
    from edgeprune.counting import LayerCost


@dataclass(frozen=True)
class KeptModel:
    """A model a method stage kept for the devices, named by its file ``<method>-<setting>.pt``."""

    model: str
    stage: str
    method: str
    setting: str
    path: Path

    @property
    def name(self) -> str:
        """The export's name, which a device's result JSON carries back."""
        return f"{self.model}/{self.stage}/{self.method}-{self.setting}"


class Costed(Protocol):
    """What a measured row needs of a kept model the stage loaded: the model, its layer costs and MACs."""

    item: KeptModel
    costs: list[LayerCost]

    @property
    def macs(self) -> int: ...


def power_row(item: KeptModel, device: str, precision: str, processor: str, *, latency_ms: float,
              energy_mj: float | None, power_mw: float | None, source: str, macs: int, **extra: Any) -> dict[str, Any]:  # fmt: skip
    """One row of ``power.csv`` (:data:`edgeprune.power.outputs.COLUMNS`), ``extra`` as a dict."""
    return {"model": item.model, "stage": item.stage, "method": item.method, "setting": item.setting, "device": device,
            "precision": precision, "processor": processor, "latency_ms": latency_ms, "energy_mj": energy_mj,
            "power_mw": power_mw, "source": source, "macs": macs, "extra": extra}  # fmt: skip


def measured_dir(paths: ResultPaths) -> Path:
    """Where result JSONs of real device runs are committed (see its README.md)."""
    return out_dir(paths) / "measured"


@dataclass(frozen=True)
class Measurement:
    """One result JSON of ``python -m edgeprune.device run``."""

    file: Path
    name: str
    device: str
    label: str
    precision: str
    latency_ms: float
    energy_mj: float | None
    power_mw: float | None
    metered: bool
    source: str
    macs: int

    @property
    def processor(self) -> str:
        """The runner puts only ``--cuda-half`` (fp16) on a GPU; everything else runs on the CPU."""
        return "gpu" if self.precision == "fp16" else "cpu"


def read_measurement(path: Path) -> Measurement:
    """Parse a device result JSON; a missing field is a ``KeyError`` naming the file."""
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"measured result {path} is not valid JSON: {err}") from None
    try:
        dev = raw["device"]
        mode = dev["power_mode"]
        label = dev["name"] if mode is None else f"{dev['name']} {mode['label']}"
        metered = "meter" in raw and raw["energy_per_image_mj"] is not None
        return Measurement(
            file=path, name=raw["model"], device=label.lower().replace(" ", "-"), label=label,
            precision=raw["precision"], latency_ms=float(raw["latency_ms"]["median"]),
            energy_mj=raw["energy_per_image_mj"] if metered else None,
            power_mw=raw["mean_power_mw"] if metered else None,
            metered=metered, source=raw["source"], macs=int(raw["export"]["macs"]),
        )  # fmt: skip
    except (KeyError, TypeError) as err:
        raise KeyError(f"measured result {path} lacks {err} (write it with `python -m edgeprune.device run`)") from None


def measured_row(m: Measurement, costed: Costed) -> dict[str, Any]:
    """The row a measurement gives: metered energy, else power modelled from its latency where a profile exists."""
    extra: dict[str, Any] = {"measured_json": m.file.name, "runner_source": m.source}
    if m.metered:
        energy, power, source = m.energy_mj, m.power_mw, m.source
    elif m.device in available_profiles() and m.precision in load_profile(m.device).precisions:
        est = estimate(costed.costs, m.device, precision=m.precision, latency_s=m.latency_ms / 1e3)
        energy, power = est.energy_j * 1e3, est.mean_power_w * 1e3
        source = f"latency measured on {m.label}, power modelled: {m.device}"
    else:
        energy, power, source = None, None, f"latency measured on {m.label}, power not metered"
    return power_row(costed.item, m.device, m.precision, m.processor, latency_ms=m.latency_ms, energy_mj=energy,
                     power_mw=power, source=source, macs=costed.macs, **extra)  # fmt: skip


def ingest_measured(folder: Path, costed: dict[str, Costed]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Rows of every usable JSON in ``folder``; the others with the reason they were ignored.

    A JSON is ignored (with a warning) when no kept model has its name, or when its export's MACs
    differ from the kept model's: it measured another architecture. Two JSONs for the same
    model, device and precision are an error: keep one.
    """
    rows, ignored, seen = [], {}, {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        m = read_measurement(path)
        if m.name not in costed:
            ignored[path.name] = f"no kept model named {m.name!r} in this run's stages and models"
        elif m.macs != costed[m.name].macs:
            ignored[path.name] = f"its export has {m.macs} MACs, {m.name} now has {costed[m.name].macs}: re-run the device"
        else:
            key = (m.name, m.device, m.precision, m.processor)
            if key in seen:
                raise ValueError(f"{seen[key]} and {path.name} both measure {m.name} {m.precision} on {m.label}: keep one")
            seen[key] = path.name
            rows.append(measured_row(m, costed[m.name]))
    for name, reason in ignored.items():
        warnings.warn(f"{folder / name} ignored: {reason}", stacklevel=2)
    return rows, ignored


def merge(modelled: list[dict[str, Any]], measured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``modelled`` with every row that a measured row has the key of replaced by it."""
    by_key = {tuple(r[k] for k in KEY): r for r in modelled}
    by_key.update({tuple(r[k] for k in KEY): r for r in measured})
    return list(by_key.values())
