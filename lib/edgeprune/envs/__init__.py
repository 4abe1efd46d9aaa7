"""Gymnasium environments in which RL agents prune (and quantize) a trained network."""
