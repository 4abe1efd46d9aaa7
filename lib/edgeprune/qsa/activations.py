"""Activation vectors of a network's layers: what a QSA learns to reconstruct.

A layer's *activation* is what its next layer receives: the output of the layer's
BatchNorm and nonlinearity when they follow it directly, else the layer's own output.
The sites are found once, by tensor identity in one forward pass (a module whose
input *is* the layer's output tensor consumes it), so no per-architecture table is
needed.

One sample is the C-vector of a layer's channels at one spatial position of one image
(a few random positions per calibration image). That is the granularity at which a
channel can be spared: the next layer mixes channels position by position, so a
channel whose value at every position follows from the other channels' values carries
nothing they do not. The cheaper alternative, one vector of per-channel RMS over all
positions per image, ranked channels about as well at 2-10% of mobilenet_v3_small's
channels and worse at 20% (52.2% vs 56.7% top-1 after BN recalibration, quick model,
1,000 test images), so positions it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from edgeprune.data import normalize

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)
NONLINEARITIES = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.Mish)


@torch.no_grad()
def activation_sites(model: nn.Module, layers: Sequence[str], example: torch.Tensor) -> dict[str, str]:
    """For each layer name, the module whose output is that layer's activation.

    Follows the chain layer -> BatchNorm -> nonlinearity as far as each step consumes
    the previous output tensor itself and is called once per forward pass (a ReLU
    module reused across a residual block would mix several activations). Unknown
    layer names are a ``KeyError``; a layer called more than once, a ``ValueError``.
    """
    modules = dict(model.named_modules())
    for name in layers:
        if name not in modules:
            raise KeyError(f"layer {name!r} does not exist in {type(model).__name__}")
    calls: list[tuple[str, torch.Tensor | None, torch.Tensor]] = []  # (module, input, output) in call order

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            calls.append((name, first, output))

        return record

    wanted = set(layers) | {n for n, m in modules.items() if isinstance(m, NORMS + NONLINEARITIES)}
    handles = [modules[n].register_forward_hook(hook(n)) for n in wanted]
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    times = Counter(name for name, _, _ in calls)
    output_of = {}
    consumer_of: dict[int, list[str]] = {}
    for name, inp, out in calls:
        output_of.setdefault(name, out)
        if inp is not None:
            consumer_of.setdefault(id(inp), []).append(name)
    sites = {}
    for name in layers:
        if times[name] != 1:
            raise ValueError(f"layer {name!r} is called {times[name]} times per forward pass of {type(model).__name__}, not once")
        site = name
        for kinds in (NORMS, NONLINEARITIES):
            consumers = consumer_of.get(id(output_of[site]), [])
            nxt = [c for c in consumers if isinstance(modules[c], kinds) and c != site and times[c] == 1]
            if len(nxt) != 1:
                if kinds is NORMS:
                    continue  # no norm: the nonlinearity may still follow the layer itself
                break
            site = nxt[0]
        sites[name] = site
    return sites


def sample_positions(activation: torch.Tensor, positions: int, generator: torch.Generator) -> torch.Tensor:
    """(N, C, ...) -> (N * positions, C): the channel vectors at ``positions`` random
    spatial positions of each image (drawn with replacement; a (N, C) activation has
    one position, repeated)."""
    if activation.dim() < 2:
        raise ValueError(f"expected an activation of shape (N, C, ...), got {tuple(activation.shape)}")
    n, c = activation.shape[:2]
    flat = activation.reshape(n, c, -1)
    where = torch.randint(flat.shape[2], (n, positions), generator=generator)
    picked = torch.gather(flat, 2, where.unsqueeze(1).expand(n, c, positions))  # (N, C, positions)
    return picked.transpose(1, 2).reshape(n * positions, c)


@torch.no_grad()
def activation_samples(
    model: nn.Module,
    x: torch.Tensor,
    sites: Mapping[str, str],
    *,
    positions: int = 2,
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Activation vectors (N * positions, C) of ``model`` on uint8 images ``x``, per layer name."""
    if positions < 1:
        raise ValueError(f"positions must be >= 1, got {positions}")
    modules = dict(model.named_modules())
    samples: dict[str, list[torch.Tensor]] = {name: [] for name in sites}
    by_site: dict[str, list[str]] = {}
    for layer, site in sites.items():
        by_site.setdefault(site, []).append(layer)
    generator = torch.Generator().manual_seed(seed)

    def hook(site: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            value = sample_positions(output.detach().float().cpu(), positions, generator)
            for layer in by_site[site]:
                samples[layer].append(value)

        return record

    handles = [modules[site].register_forward_hook(hook(site)) for site in by_site]
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    try:
        for i in range(0, len(x), batch_size):
            model(normalize(x[i : i + batch_size].to(param.device)))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {name: torch.cat(chunks) for name, chunks in samples.items()}
