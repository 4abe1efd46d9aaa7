"""Stage 00_data: decode the archive once, split, check balance, draw the conditions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import torch

from edgeprune.config import Params
from edgeprune.data import PreparedData, apply_condition, prepare
from edgeprune.io import write_json_atomic
from edgeprune.paths import ResultPaths, from_root


def run(params: Params, paths: ResultPaths) -> PreparedData:
    """Prepare the tensors and write ``prepared.pt`` and ``summary.json``."""
    data = prepare(
        from_root(params.data.archive),
        paths.prepared,
        val_fraction=params.data.val_fraction,
        seed=params.data.split_seed,
        image_size=params.data.image_size,
        max_per_class=params.data.max_per_class,
    )
    write_json_atomic(paths.data_summary, {**data.meta, "classes": data.classes})
    return data


def class_counts(data: PreparedData) -> pd.DataFrame:
    """Images per class and split."""
    return pd.DataFrame(data.meta["counts"], index=data.classes)


def condition_grid(data: PreparedData, conditions: list[str], severity: int, per_class: int = 1) -> plt.Figure:
    """A grid of test images: one row per condition, one column per class."""
    idx = torch.cat([torch.nonzero(data.test.y == c).flatten()[:per_class] for c in range(data.num_classes)])
    fig, axes = plt.subplots(
        len(conditions), len(idx), figsize=(1.1 * len(idx), 1.2 * len(conditions)), squeeze=False
    )
    for row, condition in enumerate(conditions):
        images = apply_condition(data.test.x[idx], condition, severity, seed=0)
        for col, image in enumerate(images):
            ax = axes[row][col]
            ax.imshow(image.permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(data.classes[data.test.y[idx[col]]], fontsize=7)
            if col == 0:
                ax.set_ylabel(condition, fontsize=8)
    fig.suptitle(f"test images under each shift condition (severity {severity})", fontsize=9)
    fig.tight_layout()
    return fig
