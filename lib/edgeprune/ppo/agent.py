"""The PPO agent (stable-baselines3) over :class:`~edgeprune.envs.prune_quant.PruneQuantEnv`.

PPO's clipped surrogate objective is the PPO paper's "stable updates". Episodes are
one pass over the layers with the reward at the end, so the discount is 1 (as in
AMC); each update uses ``episodes_per_update`` whole episodes, one episode per
minibatch. The finished episodes are the learning curve (:func:`log_episodes` writes
it to DVCLive).

The chosen policy is the best configuration the search met that satisfies the
accuracy floor, the deterministic (greedy) policy's own configuration included
(:func:`extract_policy`): like AMC, the search keeps its best find rather than trust
the last policy alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from dvclive import Live
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Logger
from tqdm.auto import tqdm

from edgeprune.envs.prune_quant import Episode, PruneQuantEnv


class EpisodeProgress(BaseCallback):
    """A progress bar over finished episodes (the learning curve is :attr:`PruneQuantEnv.episodes`)."""

    def __init__(self, total_episodes: int, progress: bool = True) -> None:
        super().__init__()
        self.bar = tqdm(total=total_episodes, desc="PPO episodes", disable=not progress, mininterval=5, leave=False)

    def _on_step(self) -> bool:
        self.bar.update(int(sum(self.locals["dones"])))
        return True

    def _on_training_end(self) -> None:
        self.bar.close()


def log_episodes(live: Live, episodes: Sequence[Episode]) -> None:
    """Write the learning curve (reward, top-1, MB, density, feasibility per episode) to DVCLive."""
    for i, episode in enumerate(episodes):
        live.step = i
        live.log_metric("episode/reward", episode.reward)
        live.log_metric("episode/top1", episode.outcome.top1)
        live.log_metric("episode/size_mb", episode.outcome.size_mb)
        live.log_metric("episode/density", episode.outcome.density)
        live.log_metric("episode/feasible", int(episode.feasible))


def train_agent(
    env: PruneQuantEnv,
    *,
    episodes: int,
    episodes_per_update: int = 4,
    learning_rate: float = 3e-4,
    n_epochs: int = 10,
    ent_coef: float = 0.01,
    clip_range: float = 0.2,
    net_arch: Sequence[int] = (64, 64),
    seed: int = 0,
    warm_start: float = 0.0,
    progress: bool = True,
) -> PPO:
    """Train PPO for ``episodes`` episodes (a multiple of ``episodes_per_update``).

    ``warm_start`` > 0 starts the policy near the mildest compression (see
    :func:`warm_start_logits`); 0 keeps stable-baselines3's near-uniform initial policy.
    """
    if episodes < 1 or episodes_per_update < 1 or episodes % episodes_per_update:
        raise ValueError(
            f"episodes ({episodes}) must be a positive multiple of episodes_per_update ({episodes_per_update})"
        )
    agent = PPO(
        "MlpPolicy",
        env,
        n_steps=env.num_layers * episodes_per_update,
        batch_size=env.num_layers,
        n_epochs=n_epochs,
        gamma=1.0,
        gae_lambda=0.95,
        learning_rate=learning_rate,
        ent_coef=ent_coef,
        clip_range=clip_range,
        policy_kwargs={"net_arch": list(net_arch)},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    agent.set_logger(Logger(folder=None, output_formats=[]))  # SB3's default makes an empty /tmp/SB3-* per run
    if warm_start:
        with torch.no_grad():
            agent.policy.action_net.bias.copy_(warm_start_logits(env, warm_start))
    agent.learn(total_timesteps=episodes * env.num_layers, callback=EpisodeProgress(episodes, progress))
    return agent


def warm_start_logits(env: PruneQuantEnv, strength: float) -> torch.Tensor:
    """Initial action logits: ``-strength`` per step away from the mildest option.

    Options are ordered from mildest (lowest prune rate, highest bit-width) to harshest.
    Why: post-training quantization at 2-3 bits in any one of ~50 layers collapses
    accuracy, so a uniform initial policy spends its first episodes almost entirely below
    the accuracy floor. Starting from mild compression (the greedy initial policy is
    "no pruning, highest bit-width"), PPO moves probability towards harsher options
    where the reward rises; the entropy bonus keeps exploring.
    """
    if strength < 0:
        raise ValueError(f"warm_start must be >= 0, got {strength}")

    def logits(values: Sequence[float], smallest_is_mildest: bool) -> torch.Tensor:
        order = sorted(range(len(values)), key=lambda i: values[i], reverse=not smallest_is_mildest)
        steps = torch.empty(len(values))
        steps[order] = torch.arange(len(values), dtype=torch.float32)  # 0 for the mildest option
        return -strength * steps

    return torch.cat([logits(env.prune_rates, smallest_is_mildest=True), logits(env.bits, smallest_is_mildest=False)])


def greedy_episode(agent: PPO, env: PruneQuantEnv) -> Episode:
    """Run the deterministic policy (most probable action at every layer) for one episode."""
    obs, _ = env.reset()
    done = False
    while not done:
        action, _ = agent.predict(obs, deterministic=True)
        obs, _, done, _, _ = env.step(action)
    return env.episodes[-1]


def best_feasible(episodes: Sequence[Episode]) -> Episode:
    """The highest-density episode meeting the accuracy floor; else the most accurate one."""
    if not episodes:
        raise ValueError("no episodes to choose from")
    feasible = [e for e in episodes if e.feasible]
    if feasible:
        return max(feasible, key=lambda e: e.outcome.density)
    return max(episodes, key=lambda e: e.outcome.top1)


def extract_policy(agent: PPO, env: PruneQuantEnv) -> tuple[Episode, Episode]:
    """(greedy policy's episode, chosen episode) after training."""
    greedy = greedy_episode(agent, env)
    return greedy, best_feasible(env.episodes)
