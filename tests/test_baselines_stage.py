"""Stage helpers of 20_baselines that the sweep's correctness rests on."""

from __future__ import annotations

import torch

from edgeprune import masks, prune
from edgeprune.models import create_model
from edgeprune.measure import architecture_key


def test_architecture_key_matches_same_structure_only() -> None:
    dense = create_model("resnet20")
    masked, _ = prune.apply(dense, "magnitude_unstructured", 0.5)
    baked = masks.bake_masks(masked)
    assert architecture_key(baked) == architecture_key(dense)  # zeros do not change compute
    shrunk, _ = prune.apply(dense, "l1_filter", 0.5)
    assert architecture_key(shrunk) != architecture_key(dense)
    other_seed = create_model("resnet20")
    torch.nn.init.zeros_(other_seed.fc.weight)
    assert architecture_key(other_seed) == architecture_key(dense)
