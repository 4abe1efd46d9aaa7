"""Jetson: board power from the INA3221 rail monitor (JetPack 4 iio and JetPack 5+ hwmon sysfs layouts),
and the power mode ``nvpmodel`` reports."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from edgeprune.power.meters.base import SampledMeter
from edgeprune.power.meters.sysfs import read_number, read_text

__all__ = ["JetsonINA3221Meter", "PowerMode", "parse_nvpmodel", "read_nvpmodel"]


# Power budgets of nvpmodel modes whose names do not say them (NVIDIA L4T "Power Management for
# Jetson Nano": mode 0, MAXN, is the 10 W budget; mode 1 is named 5W). MAXN means other budgets
# on other Jetsons, hence the device in the key.
_MODE_BUDGET = {("jetson-nano", "MAXN"): "10W"}


@dataclass(frozen=True)
class PowerMode:
    """A Jetson power mode as ``nvpmodel -q`` reports it."""

    name: str
    id: int

    def label(self, device_name: str) -> str:
        """The mode as a power budget where known (``MAXN`` on a ``jetson-nano`` is ``10W``), else its name."""
        return _MODE_BUDGET.get((device_name, self.name), self.name)


def parse_nvpmodel(output: str) -> PowerMode:
    """Parse ``nvpmodel -q``: a ``NV Power Mode: <name>`` line followed by the mode id."""
    match = re.search(r"NV Power Mode:\s*(\S+)\s*\n\s*(\d+)", output)
    if match is None:
        raise ValueError(f"unrecognised nvpmodel -q output: {output!r}")
    return PowerMode(name=match.group(1), id=int(match.group(2)))


def read_nvpmodel(command: Sequence[str] = ("nvpmodel", "-q")) -> Optional[PowerMode]:
    """The current Jetson power mode, or None where ``nvpmodel`` is absent or refuses."""
    if shutil.which(command[0]) is None:
        return None
    try:
        result = subprocess.run(list(command), capture_output=True, text=True, timeout=10, check=True)
        return parse_nvpmodel(result.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


@dataclass(frozen=True)
class _Rail:
    files: Tuple[Path, ...]  # (power mW,) or (voltage mV, current mA)

    def watts(self) -> float:
        if len(self.files) == 1:
            return read_number(self.files[0]) / 1e3
        return read_number(self.files[0]) * read_number(self.files[1]) / 1e6


def _jetpack4_rails(root: Path) -> Dict[str, _Rail]:
    """``ina3221x`` iio: ``rail_name_N`` with ``in_powerN_input`` in mW."""
    rails = {}
    for device in sorted(glob.glob(str(root / "bus/i2c/drivers/ina3221x/*/iio:device*"))):
        for label in sorted(Path(device).glob("rail_name_*")):
            channel = label.name.rsplit("_", 1)[1]
            rails[read_text(label)] = _Rail((Path(device) / f"in_power{channel}_input",))
    return rails


def _jetpack5_rails(root: Path) -> Dict[str, _Rail]:
    """hwmon ``ina3221``: ``inN_label`` with ``inN_input`` (mV) and ``currN_input`` (mA)."""
    devices = set(glob.glob(str(root / "bus/i2c/drivers/ina3221/*/hwmon/hwmon*")))
    for hwmon in glob.glob(str(root / "class/hwmon/hwmon*")):
        name = Path(hwmon) / "name"
        if name.is_file() and read_text(name) == "ina3221":
            devices.add(hwmon)
    rails = {}
    for device in sorted(devices):
        for label in sorted(Path(device).glob("in*_label")):
            channel = label.name[2:].split("_", 1)[0]
            current = Path(device) / f"curr{channel}_input"
            if current.exists():  # in4..in6 are shunt voltages without a current channel
                rails[read_text(label)] = _Rail((Path(device) / f"in{channel}_input", current))
    return rails


class JetsonINA3221Meter(SampledMeter):
    """Board power of a Jetson from its INA3221 rail monitor (sysfs), sampled at ``rate_hz``.

    ``rail=None`` picks the board's input rail (``POM_5V_IN``, or ``VDD_IN`` on JetPack 5+
    modules); the other rails are branches of it and are only reported by :meth:`rails`.
    """

    INPUT_RAILS = ("POM_5V_IN", "VDD_IN")

    def __init__(
        self,
        sysfs_root: str | os.PathLike[str] = "/sys",
        *,
        rail: Optional[str] = None,
        rate_hz: float = 50.0,
        device_name: str = "jetson",
        power_mode: Optional[PowerMode] = None,
    ) -> None:
        super().__init__(rate_hz)
        root = Path(sysfs_root)
        if not root.is_dir():
            raise FileNotFoundError(f"sysfs root {root} does not exist")
        self.layout, self._rails = "jetpack4-ina3221x", _jetpack4_rails(root)
        if not self._rails:
            self.layout, self._rails = "jetpack5-hwmon", _jetpack5_rails(root)
        if not self._rails:
            raise FileNotFoundError(
                f"no INA3221 rails under {root}: looked for bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_* "
                f"(JetPack 4) and bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in*_label (JetPack 5+)"
            )
        if rail is None:
            found = [name for name in self.INPUT_RAILS if name in self._rails]
            if not found:
                raise KeyError(f"no board input rail {self.INPUT_RAILS} among rails {sorted(self._rails)}")
            rail = found[0]
        if rail not in self._rails:
            raise KeyError(f"rail {rail!r} not found; rails: {sorted(self._rails)}")
        self.rail = rail
        self.device_name = device_name
        self.power_mode = power_mode
        self.sample()  # an unreadable sensor fails here, not on the sampler thread

    @property
    def source(self) -> str:
        mode = f" {self.power_mode.label(self.device_name)}" if self.power_mode is not None else ""
        return f"measured on {self.device_name}{mode}"

    def rails(self) -> Dict[str, float]:
        """Every rail's power now, in W (for the record; only the input rail is board power)."""
        return {name: rail.watts() for name, rail in self._rails.items()}

    def sample(self) -> float:
        return self._rails[self.rail].watts()
