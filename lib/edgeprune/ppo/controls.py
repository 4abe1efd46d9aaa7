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
"""

from __future__ import annotations

import numpy as np

from edgeprune.envs.prune_quant import Episode, PruneQuantEnv


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
