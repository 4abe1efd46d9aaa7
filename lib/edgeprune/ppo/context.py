"""What every PPO seed on one dense model shares: weights, Taylor groups, the search cache, the static choice.

Built once per dense model by the 50_ppo_prune_quant stage (:mod:`edgeprune.stages.ppo`); its
:attr:`DenseContext.fingerprint` keys the stage's per-seed checkpoints, so a checkpoint made with
other params, weights or code is never resumed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from edgeprune.checkpoints import code_digest, fingerprint, load_dense
from edgeprune.data import PreparedData, Split
from edgeprune.envs.prune_quant import Episode, density_reward
from edgeprune.fakequant import QuantScheme
from edgeprune.io import write_json_atomic
from edgeprune.paths import ResultPaths
from edgeprune.placement import resolve_device
from edgeprune.ppo.agent import select_policy
from edgeprune.ppo.outputs import STAGE
from edgeprune.ppo.pruning import taylor_groups
from edgeprune.ppo.search import CompressionSearch, Outcome
from edgeprune.ppo.sensitivity import RecoveredScorer, SensitivityTable, measure_table, validate, weights_hash
from edgeprune.recover.protocol import Recovery
from edgeprune.train import evaluate

if TYPE_CHECKING:
    from edgeprune.config import Params

__all__ = ["DenseContext", "dense_search", "sensitivity_table"]
"""The static baseline's bit-width: one prune rate everywhere, every layer at 8 bits."""


class DenseContext:
    """What every seed of one dense model shares: weights, Taylor groups, search cache, static choice."""

    def __init__(self, params: Params, paths: ResultPaths, data: PreparedData, model_name: str, dense_seed: int):
        cfg, device = params.ppo, resolve_device(params.device)
        self.model_name, self.dense_seed = model_name, dense_seed
        self.final = load_dense(paths, model_name, dense_seed, "model")
        self.rewind = load_dense(paths, model_name, dense_seed, "rewind")
        self.calib = data.train.subset(cfg.calib_images, seed=1)
        self.recovery = Recovery(params.finetune, data.train, device=device)
        self.search, val, unseen = dense_search(params, data, self.final, device)
        self.select = unseen.subset(cfg.select_val_images, seed=0)
        self.groups, self.scheme = self.search.groups, self.search.scheme
        self.scorer = RecoveredScorer(self.search, self.recovery)
        self.table: SensitivityTable | None = None
        self.sensitivity: dict | None = None  # the predictor's fit and held-out check
        if cfg.signal == "sensitivity":
            self.table = sensitivity_table(params, paths, model_name, dense_seed, self.search, self.recovery)
            tic = time.perf_counter()
            predictor, self.sensitivity = validate(
                self.table, lambda rates, bits: self.scorer(rates, bits, 0, val.x, val.y).top1,
                calibration=cfg.sensitivity.calibration, holdout=cfg.sensitivity.holdout,
                holdout_score=lambda rates, bits: self.scorer(rates, bits, 0, self.select.x, self.select.y).top1,
            )  # fmt: skip
            self.sensitivity["seconds"] = round(time.perf_counter() - tic, 2)
            predictor.check(self.final, self.search.layer_names, [group.root for group in self.groups])
            self.search.use_predictor(predictor.top1)
        dense_top1 = self.search.reference.top1
        self.floor = cfg.accuracy_floor if cfg.accuracy_floor is not None else dense_top1 - cfg.max_accuracy_drop
        if self.floor > dense_top1:
            raise ValueError(
                f"ppo.accuracy_floor {self.floor:.2f}% is above the dense {model_name} (seed {dense_seed}) "
                f"top-1 {dense_top1:.2f}% on the search subset"
            )
        reference = self.search.reference
        self.static_grid = []  # the static baseline's space: one prune rate and one bit-width everywhere
        for rate in cfg.prune_rates:
            for bits in cfg.bits:
                outcome = self.search.uniform(rate, bits)
                self.static_grid.append(
                    Episode(
                        (rate,) * len(self.groups), (bits,) * len(self.search.layers), outcome,
                        density_reward(outcome, reference, self.floor, cfg.penalty), outcome.top1 >= self.floor,
                    )  # fmt: skip
                )
        self._rescored: dict[tuple, float] = {}
        self.select_dense_top1 = self.search.dense_top1_on(self.select.x, self.select.y)
        self.select_floor = (
            cfg.accuracy_floor if cfg.accuracy_floor is not None else self.select_dense_top1 - cfg.max_accuracy_drop
        )
        self.static, self.static_finalists = select_policy(self.static_grid, self.rescore, self.select_floor, cfg.finalists)
        self.test = data.test.subset(cfg.eval_images, seed=params.data.split_seed)
        top1 = evaluate(self.final, self.test.x, self.test.y, batch_size=cfg.batch_size, device=device)
        self.dense_test = Outcome(top1, reference.size_bytes, reference.params)
        self.fingerprint = _fingerprint(params, paths, model_name, dense_seed)

    def rescore(self, episode: Episode) -> float:
        """Top-1 of an episode's compressed model on the selection images (unseen by the search), once per
        configuration (the static grid and every seed's finalists often share one): after the stage's
        recovery (finetune budget 0) with ``ppo.signal: sensitivity``, post-training quantized with ``ptq``."""
        key = (episode.rates, episode.bits)
        if key not in self._rescored:
            if self.table is not None:
                score = self.scorer(episode.rates, episode.bits, 0, self.select.x, self.select.y)
                self._rescored[key] = score.top1
            else:
                self._rescored[key] = self.search.top1_on(episode.rates, episode.bits, self.select.x, self.select.y)
        return self._rescored[key]


def dense_search(
    params: Params, data: PreparedData, final: nn.Module, device: torch.device
) -> tuple[CompressionSearch, Split, Split]:
    """The cached search over one dense model that every seed shares (Taylor groups, calibration and search
    images from ``ppo``), the validation images it scores on, and those it leaves unseen (the selection's)."""
    cfg = params.ppo
    taylor = data.train.subset(cfg.taylor_images, seed=0)
    calib = data.train.subset(cfg.calib_images, seed=1)
    val, unseen = data.val.split(cfg.search_val_images, seed=0)
    if len(unseen) == 0:
        raise ValueError(
            f"ppo.search_val_images ({cfg.search_val_images}) takes all {len(data.val)} validation images: "
            "none are left to re-score the finalists"
        )
    search = CompressionSearch(
        final, taylor_groups(final, taylor.x, taylor.y), calib.x, val.x, val.y,
        round_to=cfg.round_to, kl_bins=cfg.kl_bins, kl_stride=cfg.search_kl_stride,
        scheme=QuantScheme(cfg.weight_clip, activations=cfg.quantize == "weights+activations"),
        batch_size=cfg.batch_size, device=device,
    )  # fmt: skip
    return search, val, unseen


def sensitivity_table(
    params: Params, paths: ResultPaths, model_name: str, dense_seed: int, search: CompressionSearch, recovery: Recovery
) -> SensitivityTable:
    """The dense model's sensitivity table: kept beside the stage's checkpoints and measured again only
    when the dense weights or the settings it was measured with changed."""
    cfg = params.ppo
    path = paths.stage_checkpoints(STAGE, model_name) / f"sensitivity-d{dense_seed}.json"
    settings = {
        "steps": cfg.sensitivity.steps, "batch_size": cfg.sensitivity.batch_size,
        "finetune": params.finetune.model_dump(), "scheme": search.scheme.label, "weight_clip": search.scheme.weight_clip,
        "prune_rates": sorted(cfg.prune_rates), "bits": sorted(cfg.bits),
        "round_to": cfg.round_to, "search_val_images": cfg.search_val_images, "calib_images": cfg.calib_images,
        "taylor_images": cfg.taylor_images, "kl_bins": cfg.kl_bins, "search_kl_stride": cfg.search_kl_stride,
        "code": code_digest("edgeprune.ppo.sensitivity"),
    }  # fmt: skip
    if path.is_file():
        table = SensitivityTable.load(path)
        if table.dense_hash == weights_hash(search.model) and table.settings == settings:
            return table
    table = measure_table(
        search, recovery, prune_rates=cfg.prune_rates, bits=cfg.bits, steps=cfg.sensitivity.steps,
        batch_size=cfg.sensitivity.batch_size, settings=settings,
    )  # fmt: skip
    write_json_atomic(path, table.to_json())
    return table


def _fingerprint(params: Params, paths: ResultPaths, model_name: str, dense_seed: int, repo: Path | None = None) -> str:
    """Hash of everything a seed's record depends on: params, dense weights and every module the stage can run
    (:func:`edgeprune.checkpoints.fingerprint`)."""
    weights = [paths.dense(model_name, dense_seed) / f"{which}.pt" for which in ("model", "rewind")]
    return fingerprint(params, ("ppo", "finetune", "shift"), weights, "edgeprune.stages.ppo", repo)
