"""Power meters: one start / stop / read interface over the sensors an edge board exposes.

Backends:

* :class:`JetsonINA3221Meter` (:mod:`~edgeprune.power.meters.jetson`) -- the INA3221 rail monitor
  of a Jetson, read from sysfs in both the JetPack 4 ``ina3221x`` iio layout and the JetPack 5+
  hwmon ``ina3221`` layout. Board power is the 5 V input rail (``POM_5V_IN``; ``VDD_IN`` on later
  modules), never the sum of rails: the GPU and CPU rails are branches of that input (NVIDIA
  forum, quoted in rbonghi/jetson_stats#51).
* :class:`I2CMeter` (:mod:`~edgeprune.power.meters.i2c`) -- an INA219 (through ``pi-ina219``) or
  INA260 on a Raspberry Pi's I2C bus.
* :class:`RaplMeter` (:mod:`~edgeprune.power.meters.rapl`) -- Intel RAPL energy counters under
  ``/sys/class/powercap``.

Power sensors are polled by a background thread at a configurable rate (:class:`SampledMeter`,
in :mod:`~edgeprune.power.meters.base` with the reading types); :func:`best_meter` picks the best
backend present. This package needs only the standard library, so the device runner can ship it
to a board that has torch but not the rest of this project's stack.
"""

from __future__ import annotations

from edgeprune.power.meters.base import Meter, MeterReading, SampledMeter, reading_from_trace
from edgeprune.power.meters.best import best_meter
from edgeprune.power.meters.i2c import INA260, I2CMeter
from edgeprune.power.meters.jetson import JetsonINA3221Meter, PowerMode, parse_nvpmodel, read_nvpmodel
from edgeprune.power.meters.rapl import RaplMeter

__all__ = [
    "INA260",
    "I2CMeter",
    "JetsonINA3221Meter",
    "Meter",
    "MeterReading",
    "PowerMode",
    "RaplMeter",
    "SampledMeter",
    "best_meter",
    "parse_nvpmodel",
    "read_nvpmodel",
    "reading_from_trace",
]
