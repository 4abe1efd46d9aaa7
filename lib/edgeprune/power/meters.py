"""Power meters: one start / stop / read interface over the sensors an edge board exposes.

Backends:

* :class:`JetsonINA3221Meter` -- the INA3221 rail monitor of a Jetson, read from sysfs in both
  the JetPack 4 ``ina3221x`` iio layout and the JetPack 5+ hwmon ``ina3221`` layout. Board power
  is the 5 V input rail (``POM_5V_IN``; ``VDD_IN`` on later modules), never the sum of rails: the
  GPU and CPU rails are branches of that input (NVIDIA forum, quoted in rbonghi/jetson_stats#51).
* :class:`I2CMeter` -- an INA219 (through ``pi-ina219``) or INA260 on a Raspberry Pi's I2C bus.
* :class:`RaplMeter` -- Intel RAPL energy counters under ``/sys/class/powercap``.

Power sensors are polled by a background thread at a configurable rate (:class:`SampledMeter`).
This module needs only the standard library, so the device runner can ship it to a board that
has torch but not the rest of this project's stack.
"""

from __future__ import annotations

import abc
import glob
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# Power budgets of nvpmodel modes whose names do not say them (NVIDIA L4T "Power Management for
# Jetson Nano": mode 0, MAXN, is the 10 W budget; mode 1 is named 5W). MAXN means other budgets
# on other Jetsons, hence the device in the key.
_MODE_BUDGET = {("jetson-nano", "MAXN"): "10W"}


@dataclass(frozen=True)
class MeterReading:
    """What a meter measured between ``start()`` and ``stop()``."""

    energy_j: float
    mean_power_w: float
    samples: int
    duration_s: float
    sample_interval_s: float
    source: str

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def _trapezoid(times: Sequence[float], values: Sequence[float]) -> float:
    # Hand-written rather than numpy.trapezoid: this module must import on a board whose
    # numpy predates 2.0 (numpy.trapz there) or that has no numpy at all.
    return sum((t1 - t0) * (v0 + v1) / 2.0 for t0, t1, v0, v1 in zip(times, times[1:], values, values[1:]))


def reading_from_trace(
    times_s: Sequence[float], values: Sequence[float], source: str, *, cumulative: bool = False
) -> MeterReading:
    """Integrate a sampled trace into a :class:`MeterReading`.

    ``values`` are instantaneous power in W (trapezoidal integral over ``times_s``) or, with
    ``cumulative=True``, a monotone energy counter in J (energy = last - first).
    """
    if len(times_s) != len(values):
        raise ValueError(f"times_s has {len(times_s)} entries but values has {len(values)}")
    if len(times_s) < 2:
        raise ValueError(f"a reading needs at least 2 samples, got {len(times_s)}")
    if any(t1 <= t0 for t0, t1 in zip(times_s, times_s[1:])):
        raise ValueError("times_s must be strictly increasing")
    duration = times_s[-1] - times_s[0]
    energy = values[-1] - values[0] if cumulative else _trapezoid(times_s, values)
    return MeterReading(
        energy_j=energy,
        mean_power_w=energy / duration,
        samples=len(times_s),
        duration_s=duration,
        sample_interval_s=duration / (len(times_s) - 1),
        source=source,
    )


class Meter(abc.ABC):
    """start() / stop() bracket the work; read() returns the :class:`MeterReading`."""

    @property
    @abc.abstractmethod
    def source(self) -> str:
        """How the numbers were obtained, e.g. ``"measured on jetson-nano 10W"``."""

    @abc.abstractmethod
    def start(self) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> MeterReading: ...

    def __enter__(self) -> Meter:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SampledMeter(Meter):
    """A meter that polls :meth:`sample` on a background thread at ``rate_hz``.

    The first sample is taken in ``start()`` and the last in ``stop()``, so the integral spans the
    whole bracketed interval. A read error on the thread ends sampling and is raised by ``stop()``.
    """

    #: ``sample()`` returns a cumulative energy counter in J rather than power in W.
    cumulative = False

    def __init__(self, rate_hz: float = 50.0) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be > 0, got {rate_hz}")
        self.rate_hz = float(rate_hz)
        self._times: List[float] = []
        self._values: List[float] = []
        self._thread: Optional[threading.Thread] = None
        self._halt = threading.Event()
        self._error: Optional[BaseException] = None

    @abc.abstractmethod
    def sample(self) -> float:
        """One reading: power in W, or (``cumulative``) energy in J since ``start()``."""

    def _reset(self) -> None:
        """Hook run by ``start()`` before the first sample (counters re-zero here)."""

    def _record(self) -> None:
        value = self.sample()
        self._times.append(time.perf_counter())
        self._values.append(value)

    def _run(self) -> None:
        interval = 1.0 / self.rate_hz
        next_at = self._times[0] + interval
        while not self._halt.wait(max(0.0, next_at - time.perf_counter())):
            try:
                self._record()
            except (OSError, ValueError) as err:
                self._error = err
                return
            next_at += interval

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} is already running; call stop() first")
        self._times, self._values, self._error = [], [], None
        self._halt.clear()
        self._reset()
        self._record()
        self._thread = threading.Thread(target=self._run, name=f"{type(self).__name__}-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        self._halt.set()
        self._thread.join()
        self._thread = None
        if self._error is not None:
            raise RuntimeError(f"{self.source}: the sensor failed during sampling: {self._error}") from self._error
        self._record()

    def read(self) -> MeterReading:
        if self._thread is not None or len(self._times) < 2:
            raise RuntimeError(f"{type(self).__name__}.read() needs a completed start() / stop() interval")
        return reading_from_trace(self._times, self._values, self.source, cumulative=self.cumulative)


def read_number(path: Path) -> float:
    """The number in one sysfs attribute file, with errors that name the file."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"sensor file {path} does not exist") from None
    except PermissionError:
        raise PermissionError(f"sensor file {path} is not readable by this user (try as root)") from None
    except OSError as err:
        raise OSError(f"sensor file {path} cannot be read: {err}") from None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"sensor file {path} holds {text!r}, not a number") from None


def read_text(path: Path) -> str:
    """One sysfs attribute file as stripped text, with errors that name the file."""
    try:
        return path.read_text().strip()
    except OSError as err:
        raise OSError(f"cannot read {path}: {err}") from None


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


class RaplMeter(SampledMeter):
    """CPU package energy from Intel RAPL counters (``/sys/class/powercap/intel-rapl:N``).

    The ``energy_uj`` counters wrap at ``max_energy_range_uj``; polling at ``rate_hz`` (far faster
    than a wrap, which takes minutes at full load) lets each step add at most one wrap.
    Since Linux 5.10 the counters are readable by root only (Intel SA-00389).
    """

    cumulative = True

    def __init__(
        self,
        powercap_root: str | os.PathLike[str] = "/sys/class/powercap",
        *,
        domains: Optional[Sequence[str]] = None,
        rate_hz: float = 10.0,
        device_name: str = "host",
    ) -> None:
        super().__init__(rate_hz)
        root = Path(powercap_root)
        if not root.is_dir():
            raise FileNotFoundError(f"powercap root {root} does not exist: this host exposes no Intel RAPL")
        top = [Path(p) for p in sorted(glob.glob(str(root / "intel-rapl:*"))) if re.fullmatch(r"intel-rapl:\d+", Path(p).name)]
        names = {read_text(p / "name"): p for p in top if (p / "name").is_file()}
        if domains is None:
            domains = [n for n in names if n.startswith("package")]
        missing = [d for d in domains if d not in names]
        if not domains or missing:
            raise FileNotFoundError(
                f"RAPL domain(s) {missing or 'package-*'} not found under {root}; domains there: {sorted(names)}"
            )
        self.domains = list(domains)
        self._counters = [names[d] / "energy_uj" for d in self.domains]
        self._ranges = [read_number(names[d] / "max_energy_range_uj") for d in self.domains]
        self.device_name = device_name
        self._reset()

    @property
    def source(self) -> str:
        return f"measured on {self.device_name} (RAPL {'+'.join(self.domains)})"

    def _reset(self) -> None:
        self._last = [read_number(c) for c in self._counters]
        self._joules = 0.0

    def sample(self) -> float:
        for i, (counter, wrap) in enumerate(zip(self._counters, self._ranges)):
            now = read_number(counter)
            step = now - self._last[i]
            self._joules += (step if step >= 0 else step + wrap) / 1e6
            self._last[i] = now
        return self._joules


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
