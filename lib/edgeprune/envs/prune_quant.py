"""Gymnasium environment in which an agent picks a prune rate and a bit-width per layer.

One episode compresses the network once, layer by layer (as AMC and HAQ do): step t
shows the agent layer t's features and takes its action

    MultiDiscrete([len(prune_rates), len(bits)]) = (index of the prune rate, index of the bit-width).

The bit-width always applies to layer t's weights and input activations. The prune
rate applies to the layer's *channel group* (the layers Torch-Pruning must prune
together: a residual stream, an expansion conv and its depthwise conv); only the
group's first layer decides it, and later members see the decision in their features
(their prune index is ignored). Layers outside every group (the classifier) are never
pruned.

Reward: 0 until the last layer; then the compressed model is evaluated
(:class:`edgeprune.ppo.search.CompressionSearch`) and

    reward = density / dense density - penalty * max(0, accuracy floor - top-1),

where density = top-1 (%) per MB stored at the real bit-widths and the dense density
is the fp32 dense model's on the same images. The floor is soft during training
(points below it cost ``penalty`` each); the final policy is chosen among configurations
that meet it, re-scored on fresh images (:func:`edgeprune.ppo.agent.select_policy`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from edgeprune.fakequant import check_bits
from edgeprune.ppo.repair import relax
from edgeprune.ppo.search import CompressionSearch, Outcome

FEATURES = (
    "position",  # t / (layers - 1)
    "depthwise",
    "linear",
    "in_channels",  # / widest layer
    "out_channels",
    "kernel",  # / largest kernel
    "strided",
    "params",  # / largest layer
    "macs",  # / largest layer
    "leads_group",  # 1: this step's prune rate is the group's
    "group_rate",  # the group's rate when an earlier layer set it, else 0
    "prev_rate",  # previous step's prune rate
    "prev_bits",  # previous step's bit-width / 8
    "params_done",  # share of the dense weights already decided
    "kept_estimate",  # estimated stored share of the decided weights (out-channels kept x bits / 32)
)


@dataclass(frozen=True)
class Episode:
    """One finished episode: the action taken and what it measured."""

    rates: tuple[float, ...]  # per group
    bits: tuple[int, ...]  # per layer
    outcome: Outcome
    reward: float
    feasible: bool

    def to_json(self) -> dict[str, Any]:
        """A flat JSON object (the stage's checkpoints and ``episodes.csv``), with the outcome's density."""
        return {"rates": list(self.rates), "bits": list(self.bits), **asdict(self.outcome), "density": self.outcome.density,
                "reward": self.reward, "feasible": self.feasible}  # fmt: skip

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Episode:
        outcome = Outcome(obj["top1"], obj["size_bytes"], obj["params"])
        return cls(tuple(obj["rates"]), tuple(obj["bits"]), outcome, obj["reward"], obj["feasible"])


def check_prune_rates(rates: Sequence[float]) -> tuple[float, ...]:
    """Distinct prune rates in [0, 1), or a ``ValueError`` naming the bad one."""
    if not rates:
        raise ValueError("prune_rates must not be empty")
    for rate in rates:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"prune rates must be in [0, 1), got {rate!r}")
    if len(set(rates)) != len(rates):
        raise ValueError(f"prune_rates has duplicates: {list(rates)}")
    return tuple(float(r) for r in rates)


def density_reward(outcome: Outcome, dense: Outcome, accuracy_floor: float, penalty: float) -> float:
    """Performance density relative to the dense model's, minus ``penalty`` per point below the floor."""
    return outcome.density / dense.density - penalty * max(0.0, accuracy_floor - outcome.top1)


class PruneQuantEnv(gym.Env):
    """Per-layer prune rate and bit-width; reward = performance density with an accuracy floor."""

    metadata = {"render_modes": []}

    def __init__(
        self,
        search: CompressionSearch,
        *,
        prune_rates: Sequence[float],
        bits: Sequence[int],
        accuracy_floor: float,
        penalty: float = 1.0,
        repair: bool = False,
    ) -> None:
        super().__init__()
        self.search = search
        self.prune_rates = check_prune_rates(prune_rates)
        self.bits = tuple(check_bits(b, name="bit-width") for b in bits)
        if len(set(self.bits)) != len(self.bits):
            raise ValueError(f"bits has duplicates: {list(bits)}")
        dense = search.reference.top1
        if accuracy_floor > dense:
            raise ValueError(f"accuracy_floor {accuracy_floor:.2f}% is above the dense model's top-1 {dense:.2f}%")
        if penalty < 0:
            raise ValueError(f"penalty must be >= 0, got {penalty}")
        if repair and search.predictor is None:
            raise ValueError("repair relaxes configurations by the sensitivity predictor: set ppo.signal: sensitivity")
        self.accuracy_floor, self.penalty, self.repair = float(accuracy_floor), float(penalty), repair
        self.layers = search.layers
        self.action_space = spaces.MultiDiscrete([len(self.prune_rates), len(self.bits)])
        self.observation_space = spaces.Box(0.0, 1.0, shape=(len(FEATURES),), dtype=np.float32)
        self._static = self._static_features()
        self._total_params = sum(la.params for la in self.layers)
        self.episodes: list[Episode] = []
        self._reset_state()

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def _static_features(self) -> np.ndarray:
        layers = self.layers
        widest = max(max(la.in_channels, la.out_channels) for la in layers)
        largest_kernel = max(la.kernel for la in layers)
        most_params = max(la.params for la in layers)
        most_macs = max(max(la.macs for la in layers), 1)
        total = sum(la.params for la in layers)
        done = np.cumsum([0] + [la.params for la in layers])[:-1] / total
        rows = [
            [
                t / max(len(layers) - 1, 1),
                la.kind == "depthwise",
                la.kind == "linear",
                la.in_channels / widest,
                la.out_channels / widest,
                la.kernel / largest_kernel,
                la.stride > 1,
                la.params / most_params,
                la.macs / most_macs,
                la.leads_group,
                0.0,
                0.0,
                0.0,
                done[t],
                0.0,
            ]
            for t, la in enumerate(layers)
        ]
        return np.asarray(rows, dtype=np.float32)

    def _reset_state(self) -> None:
        self._t = 0
        self._group_rates: list[float | None] = [None] * len(self.search.groups)
        self._layer_bits: list[int] = []
        self._prev = (0.0, 0.0)
        self._kept = 0.0

    def _observation(self) -> np.ndarray:
        if self._t >= self.num_layers:
            return np.zeros(len(FEATURES), dtype=np.float32)
        obs = self._static[self._t].copy()
        layer = self.layers[self._t]
        group_rate = self._group_rates[layer.group] if layer.group is not None else None
        obs[FEATURES.index("group_rate")] = 0.0 if layer.leads_group or group_rate is None else group_rate
        obs[FEATURES.index("prev_rate")], obs[FEATURES.index("prev_bits")] = self._prev
        obs[FEATURES.index("kept_estimate")] = self._kept
        return np.clip(obs, 0.0, 1.0)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._reset_state()
        return self._observation(), {}

    def decode(self, action: Sequence[int]) -> tuple[float, int]:
        """(prune rate, bit-width) of one step's action."""
        rate_idx, bits_idx = (int(a) for a in action)
        if not (0 <= rate_idx < len(self.prune_rates) and 0 <= bits_idx < len(self.bits)):
            raise ValueError(f"action {list(action)} is outside {self.action_space}")
        return self.prune_rates[rate_idx], self.bits[bits_idx]

    def reward(self, outcome: Outcome) -> float:
        return density_reward(outcome, self.search.reference, self.accuracy_floor, self.penalty)

    def step(self, action: Sequence[int]) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._t >= self.num_layers:
            raise RuntimeError("episode is over: call reset()")
        rate, bits = self.decode(action)
        layer = self.layers[self._t]
        if layer.group is not None and layer.leads_group:
            self._group_rates[layer.group] = rate
        effective = self._group_rates[layer.group] if layer.group is not None else 0.0
        self._layer_bits.append(bits)
        self._kept += layer.params * (1.0 - effective) * bits / 32 / self._total_params
        self._prev = (effective, bits / 8)
        self._t += 1
        if self._t < self.num_layers:
            return self._observation(), 0.0, False, False, {}
        rates, bits = tuple(r if r is not None else 0.0 for r in self._group_rates), tuple(self._layer_bits)
        if self.repair:  # HAQ-style: the configuration deployed (and rewarded) is relaxed to the floor
            rates, bits = relax(self.search.predictor, self.layers, rates, bits, floor=self.accuracy_floor,
                                prune_rates=self.prune_rates, bit_options=self.bits)  # fmt: skip
        outcome = self.search.evaluate(rates, bits)
        reward = self.reward(outcome)
        episode = Episode(rates, bits, outcome, reward, outcome.top1 >= self.accuracy_floor)
        self.episodes.append(episode)
        info = {
            "episode_index": len(self.episodes) - 1,
            "top1": outcome.top1,
            "size_mb": outcome.size_mb,
            "density": outcome.density,
            "feasible": episode.feasible,
        }
        return self._observation(), float(reward), True, False, info
