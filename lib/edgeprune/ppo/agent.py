"""The PPO agent (stable-baselines3) over :class:`~edgeprune.envs.prune_quant.PruneQuantEnv`.

PPO's clipped surrogate objective is the PPO paper's "stable updates". Episodes are
one pass over the layers with the reward at the end, so the discount is 1 (as in
AMC); each update uses ``episodes_per_update`` whole episodes, one episode per
minibatch. The finished episodes are the learning curve (:func:`log_episodes` writes
it to DVCLive).

The chosen policy is the best configuration the search met that satisfies the
accuracy floor, the deterministic (greedy) policy's own configuration included: like
AMC, the search keeps its best finds rather than trust the last policy alone, and the
densest few are re-scored on validation images the search never saw before one is
chosen (:func:`select_policy`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Finalist:
    """A configuration re-scored before the final choice."""

    episode: Episode
    top1: float  # on the selection images, which the search never saw
    confirmed: bool  # top1 meets the selection floor


def select_policy(
    episodes: Sequence[Episode], score: Callable[[Episode], float], floor: float, finalists: int = 1
) -> tuple[Episode, list[Finalist]]:
    """The final choice: the densest of the ``finalists`` densest feasible configurations
    whose top-1 on fresh images (``score``) still meets ``floor``.

    Why re-score: every episode is judged on the same few hundred validation images, and
    the densest of many configurations that pass the floor on them is the one those
    images flatter most (the winner's curse; on the quick model a choice at 77.2% in the
    search, 1.3 points under dense, tested 3.8 points under dense). Re-scoring a few
    finalists on other images keeps the choice honest; if none is confirmed, the most
    accurate finalist is taken. With no feasible episode at all, the most accurate
    episode is the only finalist. Returns (chosen, finalists in density order).
    """
    if not episodes:
        raise ValueError("no episodes to choose from")
    if finalists < 1:
        raise ValueError(f"finalists must be >= 1, got {finalists}")
    distinct = {(e.rates, e.bits): e for e in reversed(episodes)}.values()  # the first episode of each action
    feasible = sorted((e for e in distinct if e.feasible), key=lambda e: (-e.outcome.density, -e.outcome.top1))
    candidates = feasible[:finalists] or [max(episodes, key=lambda e: e.outcome.top1)]
    scored = []
    for episode in candidates:
        top1 = score(episode)
        scored.append(Finalist(episode, top1, top1 >= floor))
    confirmed = [f for f in scored if f.confirmed]
    chosen = confirmed[0] if confirmed else max(scored, key=lambda f: f.top1)
    return chosen.episode, scored
