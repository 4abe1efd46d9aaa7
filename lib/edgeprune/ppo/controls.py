"""The equal-budget search control for the PPO agent: does the agent matter?

PPO is compared with a uniform static choice, so a gain over it can come from per-layer
allocation alone, which any search finds (random channel-pruning search, Li et al., CVPR 2022;
EagleEye, Li et al., ECCV 2020; for mixed precision, HAQ compares against such searches).
:func:`random_search` draws every layer's prune rate and bit-width uniformly from the agent's
action space and scores each configuration with the agent's own environment
(:class:`~edgeprune.envs.prune_quant.PruneQuantEnv`: the same cached search, accuracy floor and
density reward), as many configurations as the agent finished episodes. Its pick is then made
by the agent's own rule (:func:`edgeprune.ppo.agent.select_policy`: the densest feasible
finalists re-scored on the selection images), recovered and reported like the agent's.

:func:`greedy_search` is the sensitivity allocation of NetAdapt (Yang et al., ECCV 2018) and HAQ's
budgeted search (Wang et al., CVPR 2019), spending the same number of scored configurations.
From the mildest configuration (lowest prune rate, highest bit-width everywhere), each *move*
(one group to a higher prune rate, or one layer to a lower bit-width) is scored alone; with fewer
evaluations than moves, the moves that could save the most bytes are scored first (a layer's
parameters times the share a move removes). Then moves are taken greedily (:func:`edgeprune.allocation.allocate`), least predicted top-1
drop per stored byte saved first (drops and savings summed over the moves taken), while the
predicted top-1 stays at or above the agent's floor, and that allocation is scored as the last
configuration. Every scored configuration goes through the agent's environment, and the pick is
made by the agent's rule from all of them. The mildest configuration's own score, the reference
of the drops, comes from the search's cache (the static grid scores it before any search).
"""

from __future__ import annotations

import numpy as np

from edgeprune.allocation import allocate
from edgeprune.envs.prune_quant import Episode, PruneQuantEnv


def _play(env: PruneQuantEnv, rates: list[int], bits: list[int]) -> Episode:
    """Score one configuration (prune-rate index per group, bit-width index per layer) through ``env``."""
    env.reset()
    for layer, b in zip(env.layers, bits, strict=True):
        rate = rates[layer.group] if layer.group is not None and layer.leads_group else 0
        _, _, done, _, _ = env.step((rate, b))
    assert done, "one action per layer ends the episode"
    return env.episodes[-1]


def greedy_search(env: PruneQuantEnv, *, episodes: int, seed: int) -> list[Episode]:
    """The greedy sensitivity allocation of the module docstring, ``episodes`` scored configurations at most.

    Deterministic: ``seed`` is accepted for the controls' common signature and not used.
    """
    del seed
    if episodes < 2:
        raise ValueError(f"the greedy control needs a budget of at least two episodes (a move and the allocation), "
                         f"got {episodes}")  # fmt: skip
    layers, groups = env.layers, len(env.search.groups)
    rate_order = sorted(range(len(env.prune_rates)), key=lambda i: env.prune_rates[i])
    bit_order = sorted(range(len(env.bits)), key=lambda i: -env.bits[i])
    base_rates, base_bits = [rate_order[0]] * groups, [bit_order[0]] * len(layers)
    group_params = [sum(la.params for la in layers if la.group == g) for g in range(groups)]
    top_bits = env.bits[bit_order[0]]
    moves = [("rate", g, i, group_params[g] * env.prune_rates[i] * top_bits / 8)
             for g in range(groups) for i in rate_order[1:]]  # fmt: skip
    moves += [("bits", t, i, la.params * (top_bits - env.bits[i]) / 8) for t, la in enumerate(layers) for i in bit_order[1:]]
    moves.sort(key=lambda m: -m[3])  # the largest possible saving first (stable: rates before bits on ties)
    start = len(env.episodes)
    base = env.search.evaluate([env.prune_rates[i] for i in base_rates], [env.bits[i] for i in base_bits])
    effects = {}  # ((kind, index), option) -> (top-1 drop, bytes saved), measured alone
    for kind, index, option, _ in moves[: episodes - 1]:
        rates, bits = list(base_rates), list(base_bits)
        (rates if kind == "rate" else bits)[index] = option
        outcome = _play(env, rates, bits).outcome
        effects[(kind, index), option] = (base.top1 - outcome.top1, base.size_bytes - outcome.size_bytes)
    chosen = allocate(effects, max_drop=base.top1 - env.accuracy_floor)
    rates, bits = list(base_rates), list(base_bits)
    for (kind, index), option in chosen.items():
        (rates if kind == "rate" else bits)[index] = option
    _play(env, rates, bits)
    return env.episodes[start:]


def random_search(env: PruneQuantEnv, *, episodes: int, seed: int) -> list[Episode]:
    """``episodes`` configurations with uniformly random per-layer actions, scored by ``env``; reproducible in ``seed``."""
    if episodes < 1:
        raise ValueError(f"a control needs a budget of at least one episode, got {episodes}")
    rng = np.random.default_rng(seed)
    start = len(env.episodes)
    for _ in range(episodes):
        env.reset()
        done = False
        while not done:
            _, _, done, _, _ = env.step((int(rng.integers(len(env.prune_rates))), int(rng.integers(len(env.bits)))))
    return env.episodes[start:]


SEARCHES = {"random": random_search, "greedy": greedy_search}
"""The controls by their ``ppo.controls`` name: each scores at most ``episodes`` configurations through the env."""
