"""edgeprune: dynamic pruning and quantization of CNNs for edge devices, reproduced."""

__version__ = "0.1.0"
