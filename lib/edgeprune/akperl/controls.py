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

:func:`greedy_search` is the other control the field expects, a sensitivity allocation in the
manner of NetAdapt (Yang et al., ECCV 2018) and HAQ's budgeted search (Wang et al., CVPR 2019):
each unit's accuracy drop and sparsity gain are measured once per level with every other unit
dense, then levels are raised greedily, the move of least predicted drop per point of sparsity
first, until the predicted sparsity meets the agent's floor (``min_sparsity``, its sparsity
target); the allocation is then scored once like any configuration. Block removal (the 100 %
level) is not among its moves: removing a block also removes the units inside it, which breaks
the additive prediction the allocation rests on. Its budget is the single-unit evaluations,
units x 3 (60 on mobilenet_v3_small's 20 units), each one accuracy evaluation; the agent spends
one per ``accuracy_every`` steps and one per episode end (7 per episode there, 105 for 15
episodes), so the greedy control spends less than the agent and needs no ``episodes``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from edgeprune.akperl.reward import RewardCoefficients
from edgeprune.akperl.task import PruningTask
from edgeprune.akperl.units import LEVELS
from edgeprune.allocation import allocate as greedy_allocation
from edgeprune.envs.akperl import AkperlEnv


@dataclass
class ControlRun:
    """One control search: every configuration it scored and the one it keeps."""

    label: str
    seed: int
    condition: str
    episodes: pd.DataFrame  # one row per scored configuration: episode, levels, R, acc, power, sparsity
    seconds: float
    chosen: int | None = None  # the row the control keeps; None = the highest R

    @property
    def best(self) -> pd.Series:
        """The configuration the control keeps: ``chosen``, else the highest R (the first one on ties)."""
        return self.episodes.loc[self.episodes["R"].idxmax() if self.chosen is None else self.chosen]

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
    rows = [
        {"episode": episode, **_score(env, [int(rng.integers(len(LEVELS))) for _ in task.units], condition)}
        for episode in range(1, episodes + 1)
    ]  # the same draws, in the same order, as one per step
    return ControlRun("random", seed, condition, pd.DataFrame(rows), time.perf_counter() - tic)


def _score(env: AkperlEnv, levels: list[int], condition: str) -> dict[str, object]:
    """One configuration walked through ``env`` under ``condition`` at its reference statistics.

    ``levels`` holds one level per unit; the levels of units inside a block an earlier level
    removed are never asked for (the env skips those units, as in the agent's episodes).
    """
    env.reset(options={"condition": condition, "reference": True})
    done = False
    while not done:
        _, _, done, _, info = env.step(levels[env.unit_index])
    return {"levels": info["levels"], "R": info["R"], "acc": info["acc"], "power": info["power"],
            "sparsity": info["sparsity"]}  # fmt: skip


def allocate(drops: np.ndarray, gains: np.ndarray, target: float) -> list[int]:
    """Greedy allocation: levels per unit (row) whose summed ``gains`` reach ``target`` at little summed ``drops``.

    ``drops[u, l]`` and ``gains[u, l]`` are unit u's accuracy drop and sparsity at level l alone
    (level 0: none). From all-zero levels, each move raises one unit to a level of more gain, the
    move of least added drop per added gain first (ties: the earlier unit, then the lower level),
    until the summed gain reaches ``target`` (:func:`edgeprune.allocation.allocate`). ``ValueError``
    if every unit at its top level does not.
    """
    if gains[:, -1].sum() < target - 1e-12:
        raise ValueError(f"sparsity target {target:.1%} is unreachable: every unit at its top level gives "
                         f"{gains[:, -1].sum():.1%}")  # fmt: skip
    effects = {(u, level): (float(drops[u, level] - drops[u, 0]), float(gains[u, level] - gains[u, 0]))
               for u in range(len(drops)) for level in range(1, drops.shape[1])}  # fmt: skip
    chosen = greedy_allocation(effects, target_gain=target)
    return [int(chosen.get(u, 0)) for u in range(len(drops))]


def greedy_search(
    task: PruningTask,
    coefficients: RewardCoefficients,
    *,
    episodes: int | None = None,
    seed: int,
    condition: str = "clean",
    min_sparsity: float | None = None,
    stats_batch: int = 64,
) -> ControlRun:
    """The greedy sensitivity allocation of the module docstring, to the agent's floor ``min_sparsity``.

    Deterministic: ``seed`` only labels the run (its task is the seed's). ``episodes`` is accepted
    for a common signature and not used: the greedy control's budget is its sensitivity table.
    """
    del episodes
    if min_sparsity is None or min_sparsity <= 0:
        raise ValueError("the greedy control allocates to a sparsity target: set akperl.target_sparsity > 0 "
                         "with akperl.enforce_target_sparsity")  # fmt: skip
    if condition not in task.conditions:
        raise KeyError(f"condition {condition!r} is not one of the task's {list(task.conditions)}")
    tic = time.perf_counter()
    probe = AkperlEnv(task, coefficients, accuracy_every=len(task.units), stats_batch=stats_batch)  # no floor
    top = len(LEVELS) - 1  # the levels below block removal
    dense_acc = task.dense_accuracy(condition)
    drops, gains = np.zeros((len(task.units), top)), np.zeros((len(task.units), top))
    rows = []
    for u in range(len(task.units)):
        for level in range(1, top):
            levels = [0] * len(task.units)
            levels[u] = level
            row = _score(probe, levels, condition)
            drops[u, level], gains[u, level] = dense_acc - row["acc"], row["sparsity"]
            rows.append({"episode": len(rows) + 1, **row})
    levels = allocate(drops, gains, min_sparsity)
    scorer = AkperlEnv(
        task, coefficients, accuracy_every=len(task.units), stats_batch=stats_batch, min_sparsity=min_sparsity
    )  # the agent's floor, as the agent's configurations are scored
    rows.append({"episode": len(rows) + 1, **_score(scorer, levels, condition)})
    return ControlRun("greedy", seed, condition, pd.DataFrame(rows), time.perf_counter() - tic, chosen=len(rows) - 1)


SEARCHES = {"random": random_search, "greedy": greedy_search}
"""The controls by their ``akperl.controls`` name."""
