"""Shared AKPERL test material: a tiny residual CNN and random images (the `task` fixture is in conftest)."""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.models import BasicBlock

SHAPE = (3, 16, 16)


def tiny_resnet() -> nn.Module:
    """stem conv 3->8, one identity-skip BasicBlock(8), a 16-wide hidden linear, classifier 16->4."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        BasicBlock(8, 8), nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4),
    ).eval()  # fmt: skip


def images(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8, generator=g), torch.randint(0, 4, (n,), generator=g)
