"""The meter interface: a :class:`MeterReading`, the integral of a sampled trace, :class:`Meter` and the
background-polled :class:`SampledMeter` every backend builds on."""

from __future__ import annotations

import abc
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["Meter", "MeterReading", "SampledMeter", "reading_from_trace"]


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
