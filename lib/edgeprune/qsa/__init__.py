"""QSA: quantized sparse autoencoders choose the pruning masks (stage 40_qsa).

Reproduces "Quantized Sparse Autoencoders for Dynamic Neural Network Pruning in Edge
AI": an L1-sparse autoencoder with int8 weights learns each layer's activations; its
encoder weights rank the channels, which are physically removed below a threshold τ;
τ minimises KL(p_before || p_after) of the next layer's input among the thresholds
that reach a target compression; the pruned network is converted to int8; a
controller re-prunes on drift.

Submodules (imported one by one, so that loading :mod:`edgeprune.qsa.params` from the
params schema does not pull in Torch-Pruning or the int8 toolchain):

- :mod:`~edgeprune.qsa.params` - the ``qsa`` section of params.yaml;
- :mod:`~edgeprune.qsa.activations` - where a layer's activation is read, and the
  activation vectors sampled at spatial positions that a QSA learns;
- :mod:`~edgeprune.qsa.autoencoder` - the QSA (int8 fake-quantized, L1-sparse) and its
  batched training along a λ path;
- :mod:`~edgeprune.qsa.masks` - QSA scores -> Torch-Pruning group importance ->
  physically pruned copies; the int8 size estimate;
- :mod:`~edgeprune.qsa.threshold` - histogram KL (after BN re-estimation), compression
  curves and the search for τ;
- :mod:`~edgeprune.qsa.controller` - the non-stationary stream and the drift controller;
- :mod:`~edgeprune.qsa.cycle` - the re-prune cycle (QSA retrain, masks, prune, recovery
  on the recent buffer with the shared protocol, int8);
- :mod:`~edgeprune.qsa.outputs` - where the stage's outputs live, reading them back, and the
  notebook's tables and figures (torch-free).
"""

from edgeprune.qsa.params import ControllerParams, QSAParams

__all__ = ["ControllerParams", "QSAParams"]
