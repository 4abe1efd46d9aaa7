"""The networks one AKPERL seed is judged by: its policy's pruned networks and the static baselines beside them.

Built once per (network, recovery budget) on first use by the 30_akperl_dqn stage
(:mod:`edgeprune.stages.akperl`), for Table 1 (AKPERL's clean configuration, the equal-budget search
controls and the static baselines at its sparsity) and for the stream (each distinct configuration
the policy picks).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING

from torch import nn

from edgeprune import prune
from edgeprune.akperl.agent import AgentRun
from edgeprune.akperl.controls import ControlRun
from edgeprune.akperl.task import PruningTask
from edgeprune.akperl.units import apply_levels, channel_sparsity
from edgeprune.groups import bn_scales
from edgeprune.recover.protocol import Recovery

if TYPE_CHECKING:
    from edgeprune.config import Params

__all__ = ["SeedNetworks", "static_methods"]


class SeedNetworks:
    """The physically pruned, recovered networks of one seed, each built once per budget on first use.

    Every network recovers through the shared protocol (:class:`~edgeprune.recover.protocol.Recovery`)
    with this seed, on the same clean training images as the dense model was trained on, so
    methods differ only in structure.
    """

    def __init__(
        self, params: Params, run: AgentRun, task: PruningTask, dense: nn.Module, recovery: Recovery,
        controls: list[ControlRun] | None = None,
    ) -> None:  # fmt: skip
        self.params, self.run, self.task, self.dense, self.recovery = params, run, task, dense, recovery
        self.controls = list(controls or [])
        self.configs = {c: run.levels(c) for c in task.conditions}  # condition -> levels the policy picks
        self.names = {levels: f"config-{i}" for i, levels in enumerate(dict.fromkeys(self.configs.values()))}
        self.clean_levels = self.configs["clean" if "clean" in self.configs else task.conditions[0]]
        self._built: dict[tuple, nn.Module] = {}
        self._regularised: nn.Module | None = None

    def _recovered(self, key: tuple, pruned: Callable[[], nn.Module], budget: int) -> nn.Module:
        if (*key, budget) not in self._built:
            net = pruned()
            self._built[(*key, budget)] = self.recovery.recover(net, seed=self.run.seed, budget=budget, teacher=self.dense)
        return self._built[(*key, budget)]

    def akperl(self, levels: tuple[int, ...], budget: int = 0) -> nn.Module:
        return self._recovered(
            ("akperl", levels), lambda: apply_levels(self.dense, self.task.units, levels, self.task.input_shape), budget
        )

    def static(self, method: str, sparsity: float, budget: int = 0) -> nn.Module:
        """A static baseline at ``sparsity``, its kept channels rounded as AKPERL's units round theirs.
        ``l1_regularised`` prunes the dense model after network slimming's L1 training (once per seed)."""
        s = round(sparsity, 4)
        round_to = self.params.akperl.round_to
        return self._recovered((method, s), lambda: prune.apply(self._source(method), method, s, round_to=round_to)[0], budget)

    def _source(self, method: str) -> nn.Module:
        if method != "l1_regularised":
            return self.dense
        if self._regularised is None:
            slimming = self.params.baselines.slimming
            self._regularised = self.recovery.sparsity_train(
                copy.deepcopy(self.dense), seed=self.run.seed, budget=slimming.budget, penalty=slimming.penalty
            )
        return self._regularised

    def sparsity(self, net: nn.Module) -> float:
        return channel_sparsity(self.dense, net, self.task.ignored_layers, self.task.input_shape)


def static_methods(params: Params, dense: nn.Module) -> tuple[str, ...]:
    """The static baselines of Table 1 at AKPERL's sparsity: L1-norm ranking (Li et al.) and magnitude, and
    network slimming (L1-regularised training, the AKPERL paper's own L1) when ``baselines.methods`` runs it
    and ``dense`` has BatchNorm scales for it to rank (SqueezeNet has none)."""
    slimming = params.baselines is not None and "l1_regularised" in params.baselines.methods
    slimming = slimming and bool(bn_scales(dense))
    return ("l1_filter", *(("l1_regularised",) if slimming else ()), "magnitude_structured")
