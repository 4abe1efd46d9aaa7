"""AKPERL (Adaptive Kernel Pruning with Reinforcement Learning), reproduced.

A DQN agent walks the prunable layers of a trained CNN and picks each one's
filter-pruning level from {0, 25, 50, 75, 100}%, rewarded for accuracy and against
modelled power and pruning intensity; its state includes the statistics of the
incoming images, so the chosen levels can depend on the input condition. A
controller then switches, batch by batch, among physically pruned sub-networks.

Modules: :mod:`~edgeprune.akperl.params` (the params section), :mod:`~edgeprune.akperl.units`
(what one decision prunes), :mod:`~edgeprune.akperl.task` (cached accuracy and power of a
pruned network, input statistics), :mod:`~edgeprune.akperl.reward`, :mod:`~edgeprune.akperl.agent`
(DQN training, grid search, convergence), :mod:`~edgeprune.akperl.dynamic` (controller and
stream). The environment is :class:`edgeprune.envs.akperl.AkperlEnv`.
"""

from edgeprune.akperl.params import AkperlParams, DQNParams

__all__ = ["AkperlParams", "DQNParams"]
