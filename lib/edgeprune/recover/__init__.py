"""The one recovery protocol every pruned or quantized network goes through (:mod:`~edgeprune.recover.protocol`).

Submodules are imported one by one, so that loading :mod:`edgeprune.recover.params` from
the params schema does not pull in torch:

- :mod:`~edgeprune.recover.params` - the ``finetune`` section of params.yaml (budgets,
  learning rate, calibration images, distillation);
- :mod:`~edgeprune.recover.protocol` - :class:`~edgeprune.recover.protocol.Recovery`:
  BatchNorm re-estimation, fine-tuning (optionally distilled), QAT below 8 bits.
"""
