"""Raspberry Pi: board power from an INA219 (through ``pi-ina219``) or INA260 on the I2C bus."""

from __future__ import annotations

from typing import Any, Optional

from edgeprune.power.meters.base import SampledMeter

__all__ = ["INA260", "I2CMeter"]


class I2CMeter(SampledMeter):
    """Board power from an I2C power monitor between the supply and a Raspberry Pi.

    ``sensor`` is any object whose ``power()`` returns milliwatts: a ``pi-ina219`` ``INA219``, an
    :class:`INA260`, or a fake in tests. :meth:`ina219` and :meth:`ina260` open real ones.
    """

    def __init__(self, sensor: Any, *, chip: str = "INA219", device_name: str = "rpi4", rate_hz: float = 50.0) -> None:
        super().__init__(rate_hz)
        if not callable(getattr(sensor, "power", None)):
            raise TypeError(f"sensor must have a power() method returning mW, got {type(sensor).__name__}")
        self._sensor = sensor
        self.chip = chip
        self.device_name = device_name
        self.sample()

    @classmethod
    def ina219(
        cls,
        *,
        address: int = 0x40,
        shunt_ohms: float = 0.1,
        max_expected_amps: float = 3.0,
        busnum: Optional[int] = None,
        **kwargs: Any,
    ) -> I2CMeter:
        """Open an INA219 through ``pi-ina219`` (16 V range: the Pi's supply is 5.1 V)."""
        if shunt_ohms <= 0:
            raise ValueError(f"shunt_ohms must be > 0, got {shunt_ohms}")
        try:
            from ina219 import INA219
        except ImportError:
            raise ModuleNotFoundError(
                "the INA219 meter needs pi-ina219: pip install 'edgeprune[pi]' (or pip install pi-ina219)"
            ) from None
        extra = {} if busnum is None else {"busnum": busnum}
        sensor = INA219(shunt_ohms, max_expected_amps, address=address, **extra)
        sensor.configure(voltage_range=INA219.RANGE_16V)
        return cls(sensor, chip="INA219", **kwargs)

    @classmethod
    def ina260(cls, *, address: int = 0x40, busnum: Optional[int] = None, **kwargs: Any) -> I2CMeter:
        """Open an INA260 (internal 2 mOhm shunt) over ``Adafruit_GPIO.I2C``, which pi-ina219 installs."""
        return cls(INA260.open(address=address, busnum=busnum), chip="INA260", **kwargs)

    @property
    def source(self) -> str:
        return f"measured on {self.device_name} ({self.chip})"

    def sample(self) -> float:
        return float(self._sensor.power()) / 1e3


class INA260:
    """Minimal INA260 reader: the power register (0x03, big-endian, 10 mW per bit; TI datasheet 8.6.3).

    Written here because pi-ina219 covers only the INA219; ``device`` is an Adafruit_GPIO I2C
    device (``readList(register, n)``) or a fake in tests.
    """

    POWER_REGISTER = 0x03
    POWER_LSB_MW = 10.0

    def __init__(self, device: Any) -> None:
        self._device = device

    @classmethod
    def open(cls, *, address: int = 0x40, busnum: Optional[int] = None) -> INA260:
        try:
            import Adafruit_GPIO.I2C as I2C
        except ImportError:
            raise ModuleNotFoundError(
                "the INA260 meter needs Adafruit_GPIO (installed by pi-ina219): pip install 'edgeprune[pi]'"
            ) from None
        return cls(I2C.get_i2c_device(address, busnum=busnum))

    def power(self) -> float:
        high, low = self._device.readList(self.POWER_REGISTER, 2)
        return ((high << 8) | low) * self.POWER_LSB_MW
