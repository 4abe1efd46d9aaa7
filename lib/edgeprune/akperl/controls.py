"""Equal-budget search controls for the AKPERL agent: does the DQN matter?

AKPERL is compared with uniform static pruning, so a gain over it can come from non-uniform
allocation alone, which any search finds. Random channel-pruning search (Li et al., "Revisiting
Random Channel Pruning for Neural Network Compression", CVPR 2022) and EagleEye (Li et al.,
ECCV 2020) report random configurations, scored by adaptive BatchNorm, matching AMC-style
agents. :func:`random_search` is that control: per-unit levels drawn uniformly from
:data:`~edgeprune.akperl.units.LEVELS`, each configuration walked through the agent's own
environment (:class:`~edgeprune.envs.akperl.AkperlEnv`: the same units, sparsity floor, BatchNorm
re-estimation, validation images and reward R), the one with the highest R kept.

Equal budget: the control scores exactly as many configurations as the agent finished
episodes (the agent also measured accuracy every ``accuracy_every`` steps inside its
episodes; the control measures it once per configuration, at the end, which is what R
uses). Every configuration is scored under the clean condition at its reference statistics,
the condition whose network Table 1 reports, so the control spends its whole budget where
the agent is judged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edgeprune.akperl.reward import RewardCoefficients
from edgeprune.akperl.task import PruningTask
from edgeprune.akperl.units import LEVELS
from edgeprune.envs.akperl import AkperlEnv


@dataclass
class ControlRun:
    """One control search: every configuration it scored and the one it keeps."""

    label: str
    seed: int
    condition: str
    episodes: pd.DataFrame  # one row per scored configuration: episode, levels, R, acc, power, sparsity
    seconds: float

    @property
    def best(self) -> pd.Series:
        """The configuration with the highest R (the first one on ties)."""
        return self.episodes.loc[self.episodes["R"].idxmax()]

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.best["levels"])

    def summary(self) -> dict[str, float | int | str]:
        best = self.best
        return {
            "label": self.label, "seed": self.seed, "condition": self.condition, "episodes": len(self.episodes),
            "R": float(best["R"]), "val_acc": float(best["acc"]), "power_rel": float(best["power"]),
            "sparsity": float(best["sparsity"]), "seconds": round(self.seconds, 2),
        }  # fmt: skip


def random_search(
    task: PruningTask,
    coefficients: RewardCoefficients,
    *,
    episodes: int,
    seed: int,
    condition: str = "clean",
    min_sparsity: float | None = None,
    stats_batch: int = 64,
) -> ControlRun:
    """Score ``episodes`` uniformly random configurations with the agent's reward; see the module docstring.

    ``min_sparsity`` is the agent's sparsity floor (raised levels, as in its episodes);
    ``seed`` fixes the draws, so the same call scores the same configurations.
    """
    if episodes < 1:
        raise ValueError(f"a control needs a budget of at least one episode, got {episodes}")
    if condition not in task.conditions:
        raise KeyError(f"condition {condition!r} is not one of the task's {list(task.conditions)}")
    tic = time.perf_counter()
    env = AkperlEnv(
        task, coefficients, accuracy_every=len(task.units), stats_batch=stats_batch, min_sparsity=min_sparsity
    )  # accuracy measured once per configuration, at its end (R's accuracy)
    rng = np.random.default_rng(seed)
    rows = []
    for episode in range(1, episodes + 1):
        env.reset(options={"condition": condition, "reference": True})
        done = False
        while not done:
            _, _, done, _, info = env.step(int(rng.integers(len(LEVELS))))
        rows.append({
            "episode": episode, "levels": info["levels"], "R": info["R"], "acc": info["acc"], "power": info["power"],
            "sparsity": info["sparsity"],
        })  # fmt: skip
    return ControlRun("random", seed, condition, pd.DataFrame(rows), time.perf_counter() - tic)


SEARCHES = {"random": random_search}
"""The controls by their ``akperl.controls`` name."""
