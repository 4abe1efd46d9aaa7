"""AKPERL environment: one episode walks the pruning units of a trained CNN and prunes each.

Episode: a copy of the dense network; an input condition (drawn per episode, or given
with ``reset(options={"condition": ...})``) and an incoming batch of images under it.
Step ``t`` picks the level of unit ``t`` (:func:`edgeprune.akperl.units.find_units`)
from :data:`~edgeprune.akperl.units.LEVELS` = {0, 25, 50, 75, 100} %, and the unit is
physically pruned with Torch-Pruning at once; 100 % removes the unit's residual block
where it has an identity skip and is applied as 75 % elsewhere (no action masks in
Stable-Baselines3's DQN). With ``min_sparsity`` the level is raised, where needed, to
the smallest one that keeps that channel sparsity reachable
(:class:`edgeprune.akperl.budget.SparsityFloor`, AMC's resource constraint). The
episode ends after the last unit.

Observation (19 float32 values, clipped to [-10, 10]):

====  =====================================================================
0     unit index / (units - 1)
1-3   unit type one-hot: conv, depthwise-coupled conv, linear
4     unit channels / the widest unit's channels
5     unit share of the dense network's MACs
6     position: share of the dense MACs executed before the unit
7     1 when 100 % removes a residual block, else 0
8     previous action: the level applied at the previous step
9     current accuracy estimate (fraction; dense at the first step)
10    current modelled power relative to dense (dynamic energy ratio)
11-16 input statistics: per-channel mean and variance - 1 of the incoming
      batch after normalisation (zeros when ``input_stats=False``)
17    channel sparsity reached so far
18    the level the sparsity floor imposes on this unit (0 without a floor)
====  =====================================================================

Reward: :mod:`edgeprune.akperl.reward` (the paper's R paid out per step by potential
shaping; the episode's R is in the last step's ``info["R"]``). Accuracy is measured
every ``accuracy_every`` steps and at the end; in between the estimate carries over
(and the shaped reward's accuracy difference is zero), which keeps the return equal
to R up to a constant.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from torch import nn

from edgeprune.akperl.budget import SparsityFloor
from edgeprune.akperl.reward import RewardCoefficients
from edgeprune.akperl.task import PruningTask, batch_stats, canonical_key
from edgeprune.akperl.units import LEVELS, REMOVE_BLOCK, LayerwisePruner, PruningUnit, legal_level

OBS_SIZE = 19
KINDS = ("conv", "depthwise", "linear")


class AkperlEnv(gym.Env):
    """Per-unit filter pruning of ``task.model`` under an input condition (see the module docstring)."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        task: PruningTask,
        coefficients: RewardCoefficients,
        *,
        input_stats: bool = True,
        accuracy_every: int = 1,
        stats_batch: int = 64,
        min_sparsity: float | None = None,
    ) -> None:
        super().__init__()
        if len(coefficients.weights) != len(task.units):
            raise ValueError(f"{len(coefficients.weights)} layer weights for {len(task.units)} units")
        if accuracy_every < 1:
            raise ValueError(f"accuracy_every must be >= 1, got {accuracy_every}")
        smallest_pool = min(len(p) for p in task.stats_pools.values())
        if not 2 <= stats_batch <= smallest_pool:
            raise ValueError(f"stats_batch must be in 2..{smallest_pool} (the stats pool), got {stats_batch}")
        self.task = task
        self.coefficients = coefficients
        self.input_stats = input_stats
        self.accuracy_every = accuracy_every
        self.stats_batch = stats_batch
        self.min_sparsity = min_sparsity
        self.budget = SparsityFloor(task.model, task.units, task.ignored_layers, min_sparsity or 0.0)
        self.action_space = spaces.Discrete(len(LEVELS))
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(OBS_SIZE,), dtype=np.float32)
        self._widest = max(u.channels for u in task.units)
        self._started = False
        self._pruner: LayerwisePruner | None = None

    # ------------------------------------------------------------------ state

    @property
    def model(self) -> nn.Module:
        """The network as pruned so far in this episode."""
        return self._ensure_pruner().model

    def _ensure_pruner(self) -> LayerwisePruner:
        """The episode's private copy of the network, made on first use (a reset alone costs nothing)."""
        if not self._started:
            raise RuntimeError("call reset() first")
        if self._pruner is None:
            self._pruner = LayerwisePruner(self.task.model, self.task.input_shape)
        return self._pruner

    @property
    def unit_index(self) -> int:
        """The index (into ``task.units``) of the unit the next step decides; units of a removed block are skipped."""
        return self._t

    @property
    def condition(self) -> str:
        return self._condition

    def _unit_features(self, t: int) -> list[float]:
        n = len(self.task.units)
        if t >= n:  # past the last unit: the terminal observation
            return [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        u: PruningUnit = self.task.units[t]
        return [
            t / max(n - 1, 1),
            *(float(u.kind == k) for k in KINDS),
            u.channels / self._widest,
            u.mac_share,
            u.position,
            float(u.block is not None),
        ]

    def _current(self) -> tuple[nn.Module, list[str]]:
        """The network as pruned so far and the blocks it has lost (the dense network before the first step)."""
        return (self._pruner.model, self._pruner.removed) if self._pruner is not None else (self.task.model, [])

    def _floor_level(self) -> int:
        """The smallest level the sparsity floor allows for the current unit (0 past the last one)."""
        if self._t >= len(self.task.units):
            return 0
        return self.budget.minimum_level(self._t, *self._current())

    def _obs(self) -> np.ndarray:
        stats = self._stats if self.input_stats else np.zeros(6, dtype=np.float32)
        features = [*self._unit_features(self._t), LEVELS[self._prev], self._acc, self._power, *stats]
        sparsity = self.budget.sparsity(self._current()[0])
        obs = np.array([*features, sparsity, LEVELS[self._floor_level()]], dtype=np.float32)
        return np.clip(obs, -10.0, 10.0)

    def _advance(self) -> None:
        """Move to the next unit still present (units of a removed block are skipped, marked removed)."""
        while self._t < len(self.task.units) and self._pruner.skipped(self.task.units[self._t]):
            self._levels[self._t] = REMOVE_BLOCK
            self._t += 1

    # ------------------------------------------------------------------ gymnasium API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Options: ``condition`` (default: drawn), ``reference=True`` (the condition's mean statistics
        instead of a random batch's)."""
        super().reset(seed=seed)
        options = options or {}
        conditions = self.task.conditions
        condition = options.get("condition")
        if condition is None:
            condition = conditions[int(self.np_random.integers(len(conditions)))]
        elif condition not in conditions:
            raise KeyError(f"condition {condition!r} is not one of the task's {list(conditions)}")
        self._condition = condition
        if options.get("reference", False):
            self._stats = self.task.reference_stats[condition]
        else:
            pool = self.task.stats_pools[condition]
            idx = self.np_random.choice(len(pool), size=self.stats_batch, replace=False)
            self._stats = batch_stats(pool[np.sort(idx)])
        self._started, self._pruner = True, None
        self._levels = [0] * len(self.task.units)
        self._applied: dict[int, float] = {}
        self._t = 0
        self._prev = 0
        self._steps = 0
        self._acc = self.task.dense_accuracy(condition)
        self._power = 1.0
        self._dense_acc = self._acc
        return self._obs(), {"condition": condition}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if not self._started or self._t >= len(self.task.units):
            raise RuntimeError("the episode is over: call reset()")
        if not self.action_space.contains(int(action)):
            raise ValueError(f"action must be in 0..{len(LEVELS) - 1}, got {action!r}")
        t = self._t
        unit = self.task.units[t]
        floor = self._floor_level()
        pruner = self._ensure_pruner()
        applied = pruner.apply(unit, max(legal_level(unit, int(action)), floor))
        self._levels[t] = applied
        self._applied[t] = LEVELS[applied]
        self._prev = applied
        self._steps += 1
        self._t += 1
        self._advance()
        terminated = self._t >= len(self.task.units)
        key = canonical_key(self._levels[: self._t])
        acc_before, power_before = self._acc, self._power
        measured = terminated or self._steps % self.accuracy_every == 0
        if measured:
            self._acc = self.task.evaluator(pruner.model, self._condition, key)
        self._power = self.task.power.relative(pruner.model, key)
        reward = self.coefficients.step(t, LEVELS[applied], (acc_before, self._acc), (power_before, self._power))
        info: dict[str, Any] = {
            "unit": unit.name,
            "requested": LEVELS[int(action)],
            "floor": LEVELS[floor],
            "level": LEVELS[applied],
            "removed_block": unit.block if applied == REMOVE_BLOCK else None,
            "acc": self._acc,
            "acc_measured": measured,
            "power": self._power,
            "condition": self._condition,
        }
        if terminated:
            info["levels"] = tuple(self._levels)
            info["sparsity"] = self.budget.sparsity(pruner.model)
            info["R"] = self.coefficients.objective(self._acc, self._power, self._applied)
            info["return_offset"] = self.coefficients.offset(self._dense_acc)
        return self._obs(), float(reward), terminated, False, info
