"""The best meter a machine offers, trying each backend in turn and recording why the others failed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from edgeprune.power.meters.base import Meter
from edgeprune.power.meters.i2c import I2CMeter
from edgeprune.power.meters.jetson import JetsonINA3221Meter, PowerMode
from edgeprune.power.meters.rapl import RaplMeter

__all__ = ["best_meter"]


def best_meter(
    sysfs_root: str | os.PathLike[str] = "/sys",
    *,
    rate_hz: float = 50.0,
    device_name: str = "device",
    power_mode: Optional[PowerMode] = None,
    i2c_address: int = 0x40,
    shunt_ohms: float = 0.1,
) -> Tuple[Optional[Meter], Dict[str, str]]:
    """The best meter this machine offers (Jetson INA3221 -> INA219 -> RAPL), or None.

    Also returns, for each backend that was skipped, why: the record says what was tried.
    """
    root = Path(sysfs_root)
    attempts: List[Tuple[str, Callable[[], Meter]]] = [
        ("jetson-ina3221", lambda: JetsonINA3221Meter(root, rate_hz=rate_hz, device_name=device_name, power_mode=power_mode)),
        ("ina219", lambda: I2CMeter.ina219(address=i2c_address, shunt_ohms=shunt_ohms, rate_hz=rate_hz, device_name=device_name)),
        ("rapl", lambda: RaplMeter(root / "class" / "powercap", rate_hz=min(rate_hz, 10.0), device_name=device_name)),
    ]
    skipped: Dict[str, str] = {}
    for name, open_meter in attempts:
        try:
            return open_meter(), skipped
        except (OSError, KeyError, ValueError, ImportError, RuntimeError) as err:
            skipped[name] = f"{type(err).__name__}: {err}"
    return None, skipped
