"""Intel hosts: CPU package energy from the RAPL counters under ``/sys/class/powercap``."""

from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Optional, Sequence

from edgeprune.power.meters.base import SampledMeter
from edgeprune.power.meters.sysfs import read_number, read_text

__all__ = ["RaplMeter"]


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
