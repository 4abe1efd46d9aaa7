"""One placement rule (edgeprune.placement): the device resolved from params, every tensor checked where it lands."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeprune import quant
from edgeprune.placement import INT8_DEVICE, check_placed, place, resolve_device


class LeftBehind(nn.Module):
    """A module whose ``_apply`` forgets one buffer: ``.to(device)`` leaves it where it was."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.register_buffer("stale", torch.zeros(1))

    def _apply(self, fn, recurse=True):
        stale = self.stale
        super()._apply(fn, recurse)
        self.stale = stale.to("meta")  # stands in for a GPU the CPU-only test machine does not have
        return self


def test_auto_cpu_and_bad_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu") and resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="device 'cuda'.*no CUDA GPU.*device: auto or cpu"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="'tpu'"):
        resolve_device("tpu")


def test_place_moves_and_checks_every_parameter_and_buffer():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    placed = place(model, "cpu", torch.channels_last)
    assert placed is model and model[0].weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(RuntimeError, match=r"buffer 'stale' is on meta, expected cpu"):
        place(LeftBehind(), "cpu")
    with pytest.raises(RuntimeError, match=r"parameter '0.weight' is on cpu, expected meta"):
        check_placed(model, "meta")


def test_int8_networks_are_built_on_the_cpu():
    assert INT8_DEVICE == torch.device("cpu")
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
    int8 = quant.quantize_int8(model, torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8))
    assert all(t.device == INT8_DEVICE for t in int8.state_dict().values() if isinstance(t, torch.Tensor))
