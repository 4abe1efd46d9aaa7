"""PPO prune + quantize (the PPO paper): per-layer prune rate and bit-width chosen by PPO.

Submodules (imported one by one, so that loading :mod:`edgeprune.ppo.params` from the
params schema does not pull in Torch-Pruning or stable-baselines3):

- :mod:`~edgeprune.ppo.params` - the ``ppo`` section of params.yaml;
- :mod:`~edgeprune.ppo.pruning` - first-order Taylor channel importance, pruning plans
  that can be replayed on other weights (lottery-ticket rewinding), BN recalibration;
- :mod:`~edgeprune.ppo.search` - the cached accuracy / size oracle of the search;
- :mod:`~edgeprune.ppo.retrain` - retraining a chosen structure (fine-tuning or
  lottery-ticket rewinding), quantization-aware;
- :mod:`~edgeprune.ppo.agent` - the stable-baselines3 PPO agent, its DVCLive log and
  the extraction of the final policy.

The gymnasium environment is :class:`edgeprune.envs.prune_quant.PruneQuantEnv`; k-bit
fake quantization and KL calibration are in :mod:`edgeprune.fakequant`.
"""
