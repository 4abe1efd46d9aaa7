"""A floor on an episode's channel sparsity, enforced by raising actions (AMC's resource constraint).

The paper lets sparsity emerge from the reward (beta, gamma, lambda). Over a short
search that leaves it wherever each seed's agent happened to stop (29-62 % across
three quick-profile seeds), so its Table 1 compares networks of different sizes.
With a floor, as AMC (He et al. 2018) constrains FLOPs, every episode removes at
least ``floor`` of the prunable output channels and the agent decides *where*: at each
step the level is raised to the smallest one from which the floor can still be met if
every later unit is pruned at 75 %. The agent's own choice stands whenever it keeps
the floor reachable; the environment reports both (``requested`` and ``level``).

Channel counts are those of :func:`edgeprune.akperl.units.channel_sparsity`: removing
``k`` channels from a unit removes ``k`` outputs from each of its producer layers, and
removing a block removes every prunable layer inside it. Later units are counted at
75 % (never at block removal), so the estimate of what remains possible is a lower
bound and the floor is met, up to a block removal that takes a later unit's producer
with it (none in the supported models).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from edgeprune.akperl.units import LEVELS, REMOVE_BLOCK, PruningUnit, legal_level, out_channels

_NOT_BLOCK_MAX = REMOVE_BLOCK - 1  # 75 %: the largest level every unit can take


def _inside(name: str, blocks: Sequence[str]) -> bool:
    return any(name.startswith(block + ".") for block in blocks)


def _channel_removal(unit: PruningUnit, level_index: int, removed_blocks: Sequence[str]) -> int:
    """Output channels a (non-block) level removes: as :class:`LayerwisePruner` prunes the root, from each
    producer layer not inside ``removed_blocks``."""
    return unit.removed(level_index) * sum(not _inside(name, removed_blocks) for name in unit.producers)


class SparsityFloor:
    """Smallest level of each step that keeps ``floor`` (a fraction of prunable output channels) reachable."""

    def __init__(
        self, dense: nn.Module, units: Sequence[PruningUnit], ignored_layers: Sequence[str], floor: float
    ) -> None:
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"sparsity floor must be in [0, 1), got {floor}")
        self.units = list(units)
        self.ignored_layers = list(ignored_layers)
        self.floor = floor
        self.total = out_channels(dense, self.ignored_layers)
        self.need = floor * self.total
        reachable = self._future(-1, [])
        if reachable < self.need:
            raise ValueError(
                f"sparsity floor {floor:.0%} is unreachable: pruning every unit at 75 % removes "
                f"{reachable / self.total:.1%} of the prunable channels; lower target_sparsity"
            )

    def removed(self, model: nn.Module) -> int:
        """Prunable output channels ``model`` has lost against the dense network."""
        return self.total - out_channels(model, self.ignored_layers)

    def sparsity(self, model: nn.Module) -> float:
        """Share of the dense network's prunable output channels that ``model`` has lost."""
        return self.removed(model) / self.total

    def _gain(self, unit: PruningUnit, level_index: int, model: nn.Module, removed_blocks: Sequence[str]) -> int:
        if level_index == REMOVE_BLOCK:  # every prunable layer inside the block goes, at its current width
            return out_channels(model.get_submodule(unit.block), [])
        return _channel_removal(unit, level_index, removed_blocks)

    def _future(self, t: int, removed_blocks: Sequence[str]) -> int:
        """Channels units after ``t`` remove at 75 %, skipping units inside ``removed_blocks``."""
        return sum(
            _channel_removal(u, _NOT_BLOCK_MAX, removed_blocks)
            for u in self.units[t + 1 :]
            if not _inside(u.name, removed_blocks)
        )

    def minimum_level(self, t: int, model: nn.Module, removed_blocks: Sequence[str]) -> int:
        """The smallest legal level index for unit ``t`` of ``model`` (pruned up to ``t``) keeping the floor reachable.

        ``removed_blocks``: blocks already replaced by ``nn.Identity``. When no level
        suffices (the estimate was optimistic), the unit's largest legal level.
        """
        unit = self.units[t]
        removed = self.removed(model)
        legal = sorted({legal_level(unit, a) for a in range(len(LEVELS))})
        for level in legal:
            blocks = [*removed_blocks, unit.block] if level == REMOVE_BLOCK else list(removed_blocks)
            if removed + self._gain(unit, level, model, removed_blocks) + self._future(t, blocks) >= self.need:
                return level
        return legal[-1]
