"""Shared device-test material: a fake board's sysfs tree and a fixture restoring torch's global state."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

JETSON_NANO = "NVIDIA Jetson Nano Developer Kit"
RASPBERRY_PI_4 = "Raspberry Pi 4 Model B Rev 1.4"
NANO_RAILS_MW = (("POM_5V_IN", 4000), ("POM_5V_GPU", 1000), ("POM_5V_CPU", 800))


def fake_board(root: Path, model: str, bin_dir: Path | None = None, nvpmodel_lines: tuple[str, ...] = ()) -> Path:
    """A device tree naming the board under ``root``; with ``bin_dir``, a Jetson's INA3221 rails
    (JetPack 4 layout, :data:`NANO_RAILS_MW`) and an ``nvpmodel`` there saying MAXN, after
    ``nvpmodel_lines`` (other lines the real tool prints, which the parser must skip)."""
    (root / "firmware/devicetree/base").mkdir(parents=True)
    (root / "firmware/devicetree/base/model").write_text(model + "\x00")
    if bin_dir is not None:
        rails = root / "bus/i2c/drivers/ina3221x/6-0040/iio:device0"
        rails.mkdir(parents=True)
        for channel, (name, mw) in enumerate(NANO_RAILS_MW):
            (rails / f"rail_name_{channel}").write_text(name)
            (rails / f"in_power{channel}_input").write_text(str(mw))
        bin_dir.mkdir()
        tool = bin_dir / "nvpmodel"
        output = "".join(f"{line}\\n" for line in (*nvpmodel_lines, "NV Power Mode: MAXN", "0"))
        tool.write_text(f"#!/bin/sh\nprintf '{output}'\n")
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return root


@pytest.fixture
def restore_torch_state() -> Iterator[None]:
    """run_benchmark sets torch's thread count and load_exported the int8 engine: undo both."""
    threads, engine = torch.get_num_threads(), torch.backends.quantized.engine
    yield
    torch.set_num_threads(threads)
    torch.backends.quantized.engine = engine
