"""Tiny conv nets trained in a second on separable colour images (quantization and PPO tests)."""

from __future__ import annotations

import torch
from torch import nn

from edgeprune.data import normalize


def separable(n: int, seed: int, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``size`` x ``size`` images whose class (0..2) is the brightest colour channel."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=gen)
    x = torch.randint(40, 140, (n, 3, size, size), generator=gen)
    x[torch.arange(n), y] += torch.randint(60, 110, (n, 1, 1), generator=gen)
    return x.to(torch.uint8), y


def chain(seed: int = 0) -> nn.Sequential:
    """Two 16-channel conv + BN + ReLU layers and a 3-class head, for 8 x 8 :func:`separable` images."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3),
    )  # fmt: skip


def fake_quantized(model: nn.Module) -> bool:
    """True while any layer of ``model`` carries a fake quantizer (a weight parametrization: QAT is on)."""
    return any(hasattr(m, "parametrizations") for m in model.modules())


def train_briefly(model: nn.Module, steps: int = 60) -> nn.Module:
    """SGD on 512 :func:`separable` images (batches of 64, cycling); returns ``model`` in eval mode."""
    x, y = separable(512, seed=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model.train()
    for step in range(steps):
        idx = torch.arange(step * 64, step * 64 + 64) % len(y)
        loss = nn.functional.cross_entropy(model(normalize(x[idx])), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
