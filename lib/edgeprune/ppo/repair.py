"""Keeping an episode's configuration above the accuracy floor, as HAQ keeps its resource budget.

HAQ (Wang et al., CVPR 2019) lets the agent choose every layer's bit-width and, when the episode's
configuration exceeds the budget, lowers bit-widths layer by layer until it fits; the reward is
computed on the configuration actually deployed. Here the constraint is the accuracy floor: with
``ppo.repair`` an episode whose predicted top-1 is below it is *relaxed* one move at a time (a layer
one bit-width option up, or a channel group one prune-rate option down), the move that regains
the most predicted top-1 per stored byte it adds first, until the prediction reaches the floor or
the configuration is the mildest. The agent is rewarded on the repaired configuration, so an
episode that overshoots still teaches which layers to compress. Needs the sensitivity predictor
(``ppo.signal: sensitivity``): each move is scored by the predictor, not by a recovery.

Bytes per move are estimated from the layer table (parameters x kept share x bit-width / 8); the
repaired configuration's size is then measured like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from edgeprune.ppo.search import LayerInfo

__all__ = ["relax"]

Predict = Callable[[tuple[float, ...], tuple[int, ...]], float]


def _bytes(layers: Sequence[LayerInfo], rates: Sequence[float], bits: Sequence[int]) -> float:
    """Estimated stored bytes: each layer's parameters x its group's kept share x its bit-width / 8."""
    return sum(la.params * (1.0 - (rates[la.group] if la.group is not None else 0.0)) * b / 8 for la, b in zip(layers, bits))


def _milder(value: float, steps: Sequence[float]) -> float | None:
    """The next milder option than ``value`` in ``steps`` (mildest first); None at the mildest or off the list."""
    position = steps.index(value) if value in steps else 0
    return steps[position - 1] if position > 0 else None


def relax(
    predict: Predict,
    layers: Sequence[LayerInfo],
    rates: Sequence[float],
    bits: Sequence[int],
    *,
    floor: float,
    prune_rates: Sequence[float],
    bit_options: Sequence[int],
) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """``(rates, bits)`` relaxed until ``predict`` reaches ``floor`` (or nothing is left to relax)."""
    rate_steps = sorted(prune_rates)  # mildest first
    bit_steps = sorted(bit_options, reverse=True)
    rates, bits = list(rates), list(bits)
    top1 = predict(tuple(rates), tuple(bits))
    while top1 < floor:
        size = _bytes(layers, rates, bits)
        best: tuple[float, list[float], list[int], float] | None = None
        moves = [("bits", t, _milder(b, bit_steps)) for t, b in enumerate(bits)]
        moves += [("rate", g, _milder(r, rate_steps)) for g, r in enumerate(rates)]
        for kind, index, option in (m for m in moves if m[2] is not None):
            new_rates, new_bits = list(rates), list(bits)
            (new_bits if kind == "bits" else new_rates)[index] = option
            gained = predict(tuple(new_rates), tuple(new_bits)) - top1
            added = max(_bytes(layers, new_rates, new_bits) - size, 1e-9)
            score = gained / added
            if best is None or score > best[0]:
                best = (score, new_rates, new_bits, gained)
        if best is None:  # the mildest configuration: nothing left to relax
            break
        _, rates, bits, gained = best
        top1 += gained
    return tuple(rates), tuple(bits)
