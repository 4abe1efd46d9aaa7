"""PPO prune + quantize (the PPO paper): per-layer prune rate and bit-width chosen by PPO.

Submodules (imported one by one, so that loading :mod:`edgeprune.ppo.params` from the
params schema does not pull in Torch-Pruning or stable-baselines3):

- :mod:`~edgeprune.ppo.params` - the ``ppo`` section of params.yaml;
- :mod:`~edgeprune.ppo.pruning` - first-order Taylor channel importance, pruning plans
  that can be replayed on other weights (lottery-ticket rewinding);
- :mod:`~edgeprune.ppo.search` - the cached accuracy / size oracle of the search (BN
  statistics re-estimated for pruned candidates);
- :mod:`~edgeprune.ppo.retrain` - a chosen structure replayed on the final or the rewound
  weights and recovered with the shared protocol (:mod:`edgeprune.recover`);
- :mod:`~edgeprune.ppo.agent` - the stable-baselines3 PPO agent, its DVCLive log and
  the extraction of the final policy.

The gymnasium environment is :class:`edgeprune.envs.prune_quant.PruneQuantEnv`; k-bit
fake quantization and KL calibration are in :mod:`edgeprune.fakequant`.
"""
