"""Greedy budgeted allocation from single-move sensitivities (NetAdapt, Yang et al. ECCV 2018; HAQ's
budgeted search, Wang et al. CVPR 2019): the search controls of both RL agents use it.

Each unit (a layer, a channel group) has options (a pruning level, a bit-width), and each option's
effect was measured alone from the mildest configuration: the accuracy it costs (``drop``) and
what it buys (``gain``: sparsity, bytes saved). Effects are assumed additive across units; within
a unit an option *replaces* the one taken before. From nothing, each step takes the move (a unit
to another option) of least added drop per added gain; ties go to the move met first in
``effects``' order.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

__all__ = ["allocate"]

Effects = Mapping[tuple[Hashable, Hashable], tuple[float, float]]


def allocate(effects: Effects, *, target_gain: float | None = None, max_drop: float = math.inf) -> dict[Hashable, Hashable]:
    """The options taken, ``{unit: option}`` (units left at their mildest setting are absent).

    ``effects[unit, option] = (drop, gain)`` of that option alone. With ``target_gain``, moves
    are taken until the summed gain reaches it (``ValueError`` if the moves run out first);
    without, until no move adds gain while keeping the summed drop at most ``max_drop``.
    """
    chosen: dict[Hashable, Hashable] = {}
    drop = gain = 0.0
    while target_gain is None or gain < target_gain - 1e-12:
        best: tuple[float, Hashable, Hashable, float, float] | None = None
        for (unit, option), (d, g) in effects.items():
            now_d, now_g = effects[unit, chosen[unit]] if unit in chosen else (0.0, 0.0)
            added_g, added_d = g - now_g, d - now_d
            if added_g <= 0 or drop + added_d > max_drop:
                continue
            cost = added_d / added_g
            if best is None or cost < best[0]:
                best = (cost, unit, option, added_d, added_g)
        if best is None:
            if target_gain is None:
                break
            raise ValueError(f"no move reaches the target gain {target_gain:g} (reached {gain:g})")
        _, unit, option, added_d, added_g = best
        chosen[unit] = option
        drop, gain = drop + added_d, gain + added_g
    return chosen
