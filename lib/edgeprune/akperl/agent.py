"""Training the AKPERL agent (Stable-Baselines3 ``DQN``), reading its policy, and the coefficient grid search.

Every run logs, per finished episode, the paper's episode reward R, the shaped return,
the mean greedy Q-value of fixed probe states (the initial state of every condition,
as Mnih et al. 2015 track Q on held-out states), epsilon and the number of accuracy
evaluations so far, to a DataFrame and, given a folder, to DVCLive.
Convergence is reported as the environment steps until the rolling mean of R first
reaches 99 % of its final value (:func:`steps_to_fraction`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from dvclive import Live
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger

from edgeprune.akperl.params import DQNParams
from edgeprune.akperl.reward import RewardCoefficients, coefficient_grid
from edgeprune.akperl.task import PruningTask
from edgeprune.akperl.units import channel_sparsity, levels_percent
from edgeprune.envs.akperl import AkperlEnv


@dataclass
class AgentRun:
    """One trained agent: its learning curve and the configuration it picks per condition."""

    label: str
    seed: int
    coefficients: RewardCoefficients
    input_stats: bool
    episodes: pd.DataFrame
    policy: pd.DataFrame
    steps_to_99: int | None
    seconds: float
    agent: DQN

    def levels(self, condition: str) -> tuple[int, ...]:
        """The level indices the greedy policy picks for ``condition``'s reference statistics."""
        return tuple(self.policy.set_index("condition").loc[condition, "levels"])

    def summary(self) -> dict[str, float | int | str | None]:
        return {
            "label": self.label,
            "seed": self.seed,
            "alpha": self.coefficients.alpha,
            "beta": self.coefficients.beta,
            "gamma": self.coefficients.gamma,
            "lam": self.coefficients.lam,
            "input_stats": self.input_stats,
            "steps": int(self.episodes.step.iloc[-1]) if len(self.episodes) else 0,
            "episodes": len(self.episodes),
            "final_R": final_value(self.episodes.R.to_numpy()) if len(self.episodes) else float("nan"),
            "steps_to_99": self.steps_to_99,
            "val_acc": float(self.policy.acc.mean()),
            "power_rel": float(self.policy.power.mean()),
            "sparsity": float(self.policy.sparsity.mean()),
            "seconds": round(self.seconds, 2),
        }


def _window(n: int) -> int:
    return max(3, n // 10)


def final_value(values: Sequence[float], window: int | None = None) -> float:
    """Mean of the last ``window`` values (default a tenth of them, at least 3)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("final_value needs at least one value")
    return float(values[-(window or _window(len(values))) :].mean())


def steps_to_fraction(
    steps: Sequence[int], rewards: Sequence[float], fraction: float = 0.99, window: int | None = None
) -> int | None:
    """First step at which the rolling mean of ``rewards`` reaches ``fraction`` of its final value.

    "Reaches 99 %" means ``>= final - (1 - fraction) * |final|``, which also reads right
    for a negative final reward. The rolling window defaults to a tenth of the episodes
    (at least 3); the final value is the mean of the last window. ``None`` for no episodes.
    """
    if len(steps) != len(rewards):
        raise ValueError(f"steps ({len(steps)}) and rewards ({len(rewards)}) differ in length")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if len(rewards) == 0:
        return None
    window = window or _window(len(rewards))
    rolling = pd.Series(rewards, dtype=float).rolling(window, min_periods=1).mean().to_numpy()
    final = final_value(rewards, window)
    reached = np.nonzero(rolling >= final - (1 - fraction) * abs(final))[0]
    return int(steps[reached[0]])


class EpisodeLog(BaseCallback):
    """Records every finished episode and the greedy Q-value of the probe states."""

    def __init__(self, probes: np.ndarray, task: PruningTask, live: Live | None = None) -> None:
        super().__init__()
        self.probes = torch.as_tensor(probes)
        self.task = task
        self.live = live
        self.rows: list[dict] = []
        self._return = 0.0

    def _on_step(self) -> bool:
        self._return += float(self.locals["rewards"][0])
        if not self.locals["dones"][0]:
            return True
        info = self.locals["infos"][0]
        with torch.no_grad():
            q = self.model.q_net(self.probes.to(self.model.device)).max(dim=1).values.mean().item()
        row = {
            "episode": len(self.rows) + 1,
            "step": self.num_timesteps,
            "condition": info["condition"],
            "R": info["R"],
            "return": self._return,
            "q_max": q,
            "epsilon": self.model.exploration_rate,
            "acc": info["acc"],
            "power": info["power"],
            "evaluations": self.task.evaluator.evaluations,
        }
        self.rows.append(row)
        self._return = 0.0
        if self.live is not None:
            self.live.step = self.num_timesteps
            for key in ("R", "return", "q_max", "epsilon", "evaluations"):
                self.live.log_metric(f"episode/{key}" if key in ("R", "return") else key, row[key])
        return True


def probe_states(env: AkperlEnv) -> np.ndarray:
    """The initial observation of every condition at its reference statistics."""
    return np.stack([env.reset(options={"condition": c, "reference": True})[0] for c in env.task.conditions])


def greedy_policy(agent: DQN, env: AkperlEnv) -> pd.DataFrame:
    """Roll the greedy policy out once per condition (reference statistics); one row per condition."""
    rows = []
    for condition in env.task.conditions:
        obs, _ = env.reset(options={"condition": condition, "reference": True})
        done = False
        while not done:
            action, _ = agent.predict(obs, deterministic=True)
            obs, _, done, _, info = env.step(int(action))
        rows.append(
            {
                "condition": condition,
                "levels": tuple(int(v) for v in info["levels"]),
                "percent": levels_percent(info["levels"]),
                "acc": info["acc"],
                "power": info["power"],
                "R": info["R"],
                "sparsity": channel_sparsity(env.task.model, env.model, env.task.ignored_layers, env.task.input_shape),
            }
        )
    return pd.DataFrame(rows)


def train_agent(
    task: PruningTask,
    coefficients: RewardCoefficients,
    *,
    dqn: DQNParams,
    steps: int,
    seed: int,
    label: str = "akperl",
    input_stats: bool = True,
    accuracy_every: int = 1,
    stats_batch: int = 64,
    min_sparsity: float | None = None,
    live_dir: str | Path | None = None,
) -> AgentRun:
    """Train a DQN agent for ``steps`` environment steps and read its greedy policy.

    ``min_sparsity``: the channel-sparsity floor every episode must reach (:class:`AkperlEnv`).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    tic = time.perf_counter()
    kwargs = {
        "input_stats": input_stats, "accuracy_every": accuracy_every, "stats_batch": stats_batch,
        "min_sparsity": min_sparsity,
    }  # fmt: skip
    env = AkperlEnv(task, coefficients, **kwargs)
    probes = probe_states(AkperlEnv(task, coefficients, **kwargs))
    agent = DQN(
        "MlpPolicy",
        env,
        learning_rate=dqn.learning_rate,
        buffer_size=dqn.buffer_size,
        learning_starts=min(dqn.learning_starts, steps - 1),
        batch_size=dqn.batch_size,
        gamma=dqn.gamma,
        n_steps=dqn.n_steps,
        train_freq=dqn.train_freq,
        gradient_steps=dqn.gradient_steps,
        target_update_interval=dqn.target_update_interval,
        exploration_fraction=dqn.exploration_fraction,
        exploration_final_eps=dqn.exploration_final_eps,
        policy_kwargs={"net_arch": list(dqn.net_arch)},
        seed=seed,
        device="cpu",  # a 19-input MLP: a GPU only adds transfer latency
    )
    agent.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default makes an empty /tmp/SB3-* per run
    live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=None, report=None) if live_dir is not None else None
    log = EpisodeLog(probes, task, live)
    try:
        agent.learn(total_timesteps=steps, callback=log)
    finally:
        if live is not None:
            live.end()
    episodes = pd.DataFrame(log.rows)
    policy = greedy_policy(agent, AkperlEnv(task, coefficients, **kwargs))
    to99 = steps_to_fraction(episodes.step.to_numpy(), episodes.R.to_numpy()) if len(episodes) else None
    return AgentRun(label, seed, coefficients, input_stats, episodes, policy, to99, time.perf_counter() - tic, agent)


def select_coefficients(table: pd.DataFrame, target_sparsity: float) -> int:
    """Index of the grid row to keep: the most accurate among those reaching ``target_sparsity``
    (mean over conditions of the greedy configurations), else the sparsest."""
    if table.empty:
        raise ValueError("the grid-search table is empty")
    feasible = table[table.sparsity >= target_sparsity]
    if len(feasible):
        return int(feasible.val_acc.idxmax())
    return int(table.sparsity.idxmax())


def grid_search(
    task: PruningTask,
    grid: tuple[Sequence[float], Sequence[float], Sequence[float]],
    *,
    weights: tuple[float, ...],
    lam: float,
    target_sparsity: float,
    dqn: DQNParams,
    steps: int,
    seed: int,
    accuracy_every: int = 1,
    stats_batch: int = 64,
    min_sparsity: float | None = None,
    live_root: str | Path | None = None,
) -> tuple[pd.DataFrame, RewardCoefficients, list[AgentRun]]:
    """Train one agent per (alpha, beta, gamma) of ``grid`` and keep the one :func:`select_coefficients` picks.

    Returns the table (one row per combination, ``selected`` marking the choice), the
    chosen coefficients and the runs.
    """
    combos = coefficient_grid(*grid)
    runs, rows = [], []
    for i, (alpha, beta, gamma) in enumerate(combos):
        coefficients = RewardCoefficients(alpha, beta, gamma, lam, weights)
        live = Path(live_root) / f"grid-{i}" if live_root is not None else None
        run = train_agent(
            task, coefficients, dqn=dqn, steps=steps, seed=seed, label=f"grid-{i}",
            accuracy_every=accuracy_every, stats_batch=stats_batch, min_sparsity=min_sparsity, live_dir=live,
        )  # fmt: skip
        runs.append(run)
        rows.append(run.summary())
    table = pd.DataFrame(rows)
    best = select_coefficients(table, target_sparsity)
    table["selected"] = table.index == best
    return table, runs[best].coefficients, runs
