"""What the AKPERL agent observes about a pruned network: accuracy, power, input statistics.

Everything here is measured, fast, and cached by the pruning configuration, as AMC
does during its search:

- **accuracy**: top-1 (a fraction) on a fixed small validation subset under the episode's
  input condition, after BatchNorm recalibration (running statistics re-estimated on a
  few training images under the same condition; no fine-tuning). Cached by
  ``(condition, levels)``: the same configuration is never evaluated twice, across
  episodes, agent seeds, ablations and grid-search runs.
- **power**: the network's modelled energy per image above the board's idle draw on a
  device profile (:func:`edgeprune.power.model.estimate`), relative to the dense
  network's. At a fixed frame rate this is the ratio of the above-idle power, the part
  pruning can change. The board model (default) charges active power over the modelled
  batch-1 time (roofline plus per-layer overhead), so the ratio is the modelled time
  ratio; ``energy="dynamic_only"`` is the ablation that charges MACs and bytes only.
  Modelled, not measured. Cached by ``levels``.
- **input statistics**: per-channel mean and variance of the incoming batch after the
  CIFAR normalisation, as ``(mean_r, mean_g, mean_b, var_r - 1, var_g - 1, var_b - 1)``,
  near zero for clean images (:func:`batch_stats`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edgeprune.akperl.units import PruningUnit, find_units
from edgeprune.conditions import CONDITIONS
from edgeprune.data import Split, apply_condition, normalize
from edgeprune.measure import INPUT_SHAPE
from edgeprune.placement import place
from edgeprune.power.model import Estimate, estimate
from edgeprune.power.profiles import DeviceProfile, load_profile
from edgeprune.prune import classifier_name, recalibrate_bn

Key = tuple[int, ...]


def canonical_key(levels: Sequence[int]) -> Key:
    """Level indices with trailing zeros dropped: one cache key per network, however far an episode went."""
    end = len(levels)
    while end and levels[end - 1] == 0:
        end -= 1
    return tuple(int(v) for v in levels[:end])


def check_conditions(conditions: Sequence[str]) -> tuple[str, ...]:
    """``conditions`` as a tuple; empty, duplicated or unknown names are an error naming them."""
    conditions = tuple(conditions)
    if not conditions:
        raise ValueError("conditions is empty: name at least one input condition (e.g. 'clean')")
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise KeyError(f"unknown condition(s) {unknown}; known: {', '.join(CONDITIONS)}")
    if len(set(conditions)) != len(conditions):
        raise ValueError(f"duplicate conditions in {list(conditions)}")
    return conditions


def batch_stats(x: torch.Tensor) -> np.ndarray:
    """Per-channel mean and (variance - 1) of a batch: uint8 images, or float images already normalised."""
    xf = normalize(x) if x.dtype == torch.uint8 else x.float()
    mean = xf.mean(dim=(0, 2, 3))
    var = xf.var(dim=(0, 2, 3), unbiased=False)
    return torch.cat([mean, var - 1.0]).cpu().numpy().astype(np.float32)


def _as_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return normalize(x.to(device)).contiguous(memory_format=torch.channels_last)


class AccuracyEvaluator:
    """Top-1 (fraction) of a pruned network after BN recalibration, cached by configuration.

    The validation and calibration images are conditioned once per condition
    (deterministic seeds) and kept normalised on ``device``. :meth:`__call__`
    recalibrates the model it is given in place.
    """

    def __init__(
        self,
        val: Split,
        calib_x: torch.Tensor,
        conditions: Sequence[str],
        *,
        severity: int = 3,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
    ) -> None:
        if len(val) == 0 or len(calib_x) == 0:
            raise ValueError(f"need validation and calibration images, got {len(val)} and {len(calib_x)}")
        self.device = torch.device(device)
        self.conditions = check_conditions(conditions)
        self.batch_size = batch_size
        self._val = {c: _as_input(apply_condition(val.x, c, severity, seed=0), self.device) for c in self.conditions}
        self._calib = {c: _as_input(apply_condition(calib_x, c, severity, seed=1), self.device) for c in self.conditions}
        self._y = val.y.to(self.device)
        self.cache: dict[tuple[str, Key], float] = {}
        self.evaluations = 0
        self.seconds = 0.0

    @torch.no_grad()
    def measure(self, model: nn.Module, condition: str) -> float:
        """Recalibrate ``model``'s BatchNorm under ``condition`` and return its top-1 (uncached)."""
        if condition not in self._val:
            raise KeyError(f"condition {condition!r} is not one of the evaluator's {list(self.conditions)}")
        tic = time.perf_counter()
        model.to(memory_format=torch.channels_last)
        recalibrate_bn(model, self._calib[condition], batch_size=self.batch_size)
        x = self._val[condition]
        correct = sum(
            int((model(x[i : i + self.batch_size]).argmax(1) == self._y[i : i + self.batch_size]).sum())
            for i in range(0, len(x), self.batch_size)
        )
        self.evaluations += 1
        self.seconds += time.perf_counter() - tic
        return correct / len(x)

    def __call__(self, model: nn.Module, condition: str, key: Key) -> float:
        """Accuracy of ``model`` (the network pruned as ``key``) under ``condition``, from the cache when known."""
        slot = (condition, tuple(key))
        if slot not in self.cache:
            self.cache[slot] = self.measure(model, condition)
        return self.cache[slot]


ENERGY_MODELS = ("board", "dynamic_only")


class PowerModel:
    """Modelled energy above idle of a network relative to the dense one, cached by configuration.

    ``energy``: ``board`` (active power over the modelled time, :mod:`edgeprune.power.model`'s
    one energy model) or ``dynamic_only`` (the ablation: Horowitz MAC and byte energies, nothing
    for time). The reported figures carry both, each labelled.
    """

    def __init__(
        self, dense: nn.Module, profile: str | DeviceProfile, *, frame_rate_hz: float = 30.0,
        input_shape: Sequence[int] = INPUT_SHAPE, energy: str = "board",
    ) -> None:  # fmt: skip
        if frame_rate_hz <= 0:
            raise ValueError(f"frame_rate_hz must be > 0, got {frame_rate_hz}")
        if energy not in ENERGY_MODELS:
            raise ValueError(f"energy must be one of {ENERGY_MODELS}, got {energy!r}")
        self.profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
        self.frame_rate_hz, self.energy = frame_rate_hz, energy
        self.input_shape = tuple(input_shape)
        self.dense = self.estimate(dense)
        self.cache: dict[Key, float] = {}

    def estimate(self, model: nn.Module) -> Estimate:
        return estimate(model, self.profile, input_shape=(1, *self.input_shape))

    def _energy(self, est: Estimate) -> float:
        return est.above_idle_energy_j if self.energy == "board" else est.dynamic_only_energy_j

    def relative(self, model: nn.Module, key: Key) -> float:
        """Energy per image above idle of ``model`` (pruned as ``key``) / that of the dense network."""
        key = tuple(key)
        if key not in self.cache:
            self.cache[key] = self._energy(self.estimate(model)) / self._energy(self.dense)
        return self.cache[key]

    def summary(self, model: nn.Module) -> dict[str, float | str]:
        """The modelled figures reported in the tables; every one is modelled (``power_source``)."""
        est = self.estimate(model)
        above = est.above_idle_power_w(self.frame_rate_hz)
        return {
            "power_mw_modelled": above * 1e3,
            "board_power_mw_modelled": (self.profile.idle_power_w.value + above) * 1e3,
            "power_mw_dynamic_only": est.dynamic_only_energy_j * self.frame_rate_hz * 1e3,
            "energy_mj_modelled": est.energy_j * 1e3,
            "device_latency_ms_modelled": est.latency_s * 1e3,
            "frame_rate_hz": self.frame_rate_hz,
            "reward_energy": self.energy,
            "power_source": f"{est.source}; board model: active power over the modelled time, above idle at "
            f"{self.frame_rate_hz:g} frames/s (power_mw_dynamic_only: the MAC + byte ablation)",
        }


@dataclass
class PruningTask:
    """A trained network and everything an AKPERL environment needs to prune it, shared across runs."""

    model: nn.Module
    units: list[PruningUnit]
    evaluator: AccuracyEvaluator
    power: PowerModel
    stats_pools: dict[str, torch.Tensor]
    reference_stats: dict[str, np.ndarray]
    ignored_layers: tuple[str, ...]  # layers never pruned (the classifier), by name
    input_shape: tuple[int, ...] = INPUT_SHAPE

    @property
    def conditions(self) -> tuple[str, ...]:
        return self.evaluator.conditions

    @classmethod
    def build(
        cls,
        model: nn.Module,
        *,
        val: Split,
        calib_x: torch.Tensor,
        stats_x: torch.Tensor,
        conditions: Sequence[str],
        severity: int = 3,
        power_profile: str | DeviceProfile = "rpi4",
        frame_rate_hz: float = 30.0,
        energy: str = "board",
        min_mac_share: float = 0.0,
        round_to: int = 1,
        ignored_layers: Sequence[str] | None = None,
        input_shape: Sequence[int] = INPUT_SHAPE,
        device: str | torch.device = "cpu",
    ) -> PruningTask:
        """Find the units of ``model`` and condition the images once.

        ``val`` scores accuracy, ``calib_x`` recalibrates BatchNorm, ``stats_x`` is the
        pool from which each episode's incoming batch is drawn (all uint8).
        """
        conditions = check_conditions(conditions)
        if len(stats_x) < 2:
            raise ValueError(f"stats_x needs at least 2 images, got {len(stats_x)}")
        model = copy.deepcopy(model).cpu().eval()
        ignored = tuple(ignored_layers) if ignored_layers is not None else (classifier_name(model, input_shape),)
        units = find_units(
            model, ignored_layers=ignored, input_shape=input_shape, min_mac_share=min_mac_share, round_to=round_to
        )
        model = place(model, device)
        pools = {c: apply_condition(stats_x, c, severity, seed=2) for c in conditions}
        return cls(
            model=model,
            units=units,
            evaluator=AccuracyEvaluator(val, calib_x, conditions, severity=severity, device=device),
            power=PowerModel(model, power_profile, frame_rate_hz=frame_rate_hz, input_shape=input_shape, energy=energy),
            stats_pools=pools,
            reference_stats={c: batch_stats(pool) for c, pool in pools.items()},
            ignored_layers=ignored,
            input_shape=tuple(input_shape),
        )

    def dense_accuracy(self, condition: str) -> float:
        """The dense network's accuracy under ``condition``, measured like every pruned one (on a copy)."""
        slot = (condition, ())
        if slot not in self.evaluator.cache:
            self.evaluator.cache[slot] = self.evaluator.measure(copy.deepcopy(self.model), condition)
        return self.evaluator.cache[slot]
