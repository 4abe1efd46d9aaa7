"""The ``ppo`` section of params.yaml (stage 50_ppo_prune_quant).

Defaults are the TINY profile's values (seconds per run, for nbval); the quick and
paper profiles set their own in params.yaml / profiles/paper.yaml. Retraining of the
chosen configurations uses the shared ``finetune`` section (the same budget as every
other method).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgeprune.fields import ModelNames, Seeds, SUPPORTED_BITS, WeightClip, repeats_field
from edgeprune.schema import Section

BYTES_PER_MB = 1e6
"""Performance density is top-1 % per MB of 10^6 bytes (stored at the real bit-widths)."""


class SensitivityParams(Section):
    """The per-layer sensitivity table and its predictor (``ppo.signal: sensitivity``, :mod:`edgeprune.ppo.sensitivity`)."""

    steps: int = Field(2, ge=1, description="recovery steps of every single-change table entry")
    batch_size: int = Field(
        32, ge=1, description="images per step of a table entry's recovery (the protocol's, at this batch size)"
    )
    calibration: int = Field(
        4, ge=0, description="random configurations recovered at finetune budget 0 that fit top-1 on predicted loss"
    )
    holdout: int = Field(
        4, ge=0, description="further configurations recovered the same way: the predictor's Spearman correlation"
    )


class PPOParams(Section):
    """PPO prune + quantize: search space, reward, agent, search budget, retraining, report."""


    # what and how often
    models: ModelNames = Field(
        ["mobilenet_v3_small"], min_length=1,
        description="models to compress (each needs dense weights)",
    )
    seeds: Seeds = Field(
        [0, 1, 2],
        description="agent / fine-tuning seeds; dense seed = same seed if trained, else train.seeds[0]",
    )
    # search space
    prune_rates: list[float] = Field(
        [0.0, 0.25, 0.5, 0.75], min_length=1,
        description="per-group prune rates the agent picks from, each in [0, 1)",
    )
    bits: list[int] = Field(
        [2, 3, 4, 5, 6, 8], min_length=1,
        description=f"per-layer bit-widths the agent picks from, within {list(SUPPORTED_BITS)}",
    )
    round_to: int = Field(
        8, ge=1, description="channels kept per group rounded to the nearest multiple (fast int8 kernels)"
    )
    # reward
    accuracy_floor: float | None = Field(
        None, ge=0, le=100,
        description="top-1 (%) floor on the search subset; null: dense - max_accuracy_drop",
    )
    max_accuracy_drop: float = Field(
        2.0, ge=0, le=100,
        description="floor = dense search top-1 minus this many points (when accuracy_floor is null)",
    )
    penalty: float = Field(
        1.0, ge=0,
        description="reward lost per top-1 point below the floor (in units of dense density)",
    )
    repair: bool = Field(
        False, description="relax an episode predicted below the floor until it is not, HAQ-style, and reward "
        "the relaxed configuration (edgeprune.ppo.repair; needs signal: sensitivity)",
    )  # fmt: skip
    # agent (stable-baselines3 PPO)
    episodes: int = Field(4, ge=1, description="training episodes per seed (one episode = one compressed model)")
    episodes_per_update: int = Field(2, ge=1, description="episodes per PPO rollout / update")
    learning_rate: float = Field(1e-3, gt=0)
    n_epochs: int = Field(10, ge=1, description="PPO epochs over each rollout")
    ent_coef: float = Field(0.01, ge=0, description="entropy bonus (exploration)")
    clip_range: float = Field(0.2, gt=0, lt=1, description="PPO's clipping of the probability ratio")
    net_arch: list[int] = Field([64, 64], min_length=1, description="hidden layers of the policy and value MLPs")
    warm_start: float = Field(
        1.5, ge=0,
        description="initial policy: logit penalty per step away from the mildest option (0 = uniform)",
    )
    # the search signal
    signal: Literal["sensitivity", "ptq"] = Field(
        "sensitivity",
        description="what scores a configuration during the search: sensitivity = predicted top-1 after recovery "
        "(per-layer table with short QAT recoveries, calibrated on recovered configurations; finalists re-scored "
        "after a real recovery); ptq = measured top-1 of the post-training quantized network (the ablation)",
    )
    sensitivity: SensitivityParams = Field(default_factory=SensitivityParams)
    # fast search-time evaluation
    taylor_images: int = Field(64, ge=1, description="training images whose loss gradient scores channels")
    calib_images: int = Field(64, ge=1, description="training images for BN recalibration and activation calibration")
    search_val_images: int = Field(40, ge=10, description="fixed validation subset that scores every action")
    kl_bins: int = Field(2048, ge=256, description="histogram bins of the KL calibration (TensorRT: 2048)")
    search_kl_stride: int = Field(
        4, ge=1,
        description="KL candidate thresholds every n bins during the search (final: every bin)",
    )
    batch_size: int = Field(256, ge=1, description="batch size of search-time and test evaluation")
    # the final choice
    finalists: int = Field(
        4, ge=1, description="densest feasible configurations re-scored on fresh validation images before choosing"
    )
    select_val_images: int | None = Field(
        None, ge=10,
        description="validation images outside the search subset that re-score the finalists; null = all of them",
    )
    # retraining of the chosen configurations (the budget is the shared `finetune` section)
    rewind_lr: float = Field(
        0.05, gt=0,
        description="initial lr when retraining from the rewound (early) weights; fine-tuning uses finetune.lr",
    )
    controls: list[Literal["random", "greedy"]] = Field(
        default_factory=lambda: ["random", "greedy"],
        description="equal-budget search controls per seed (ppo.controls), as many scored configurations as the agent's "
        "episodes, picked by the agent's rule: random = uniform random per-layer rate and bit-width; greedy = "
        "sensitivity allocation (each move scored alone, then the cheapest moves per byte above the floor)",
    )
    weight_clip: WeightClip = Field(
        "mse",
        description="per-channel weight clipping of the k-bit grids (edgeprune.clipping): max = max-abs, mse = least "
        "squared error, kl = KL divergence as the seed says; mse measured best (python -m edgeprune.bench weightclip)",
    )
    quantize: Literal["weights", "weights+activations"] = Field(
        "weights+activations",
        description="what the k-bit layers quantize: weights only, or their KL-calibrated inputs too",
    )
    qat: bool = Field(
        True,
        description="retrain with the chosen bit-widths in the loop (quantization-aware: weights and KL-calibrated "
        "inputs fake-quantized, straight-through gradients); false = float retraining, then post-training quantization",
    )
    # the reported rows
    eval_images: int | None = Field(None, ge=10, description="stratified test subset for the reported rows; null = all")
    evaluate_shift: bool = Field(False, description="also report top-1 under every shift condition")
    int8: bool = Field(True, description="also convert to real int8 (torch.ao) and measure it")
    latency: bool = Field(False, description="measure CPU latency (batch 1 and 64) of the float and int8 models")
    latency_warmup: int = Field(1, ge=0)
    latency_repeats: int = repeats_field(4)

    @field_validator("prune_rates")
    @classmethod
    def _rates(cls, value: list[float]) -> list[float]:
        bad = [r for r in value if not 0.0 <= r < 1.0]
        if bad:
            raise ValueError(f"prune rates must be in [0, 1) (a rate of 1 removes every channel), got {bad}")
        if len(set(value)) != len(value):
            raise ValueError(f"prune_rates has duplicates: {value}")
        return value

    @field_validator("bits")
    @classmethod
    def _bits(cls, value: list[int]) -> list[int]:
        bad = [b for b in value if b not in SUPPORTED_BITS]
        if bad:
            raise ValueError(f"bit-width(s) {bad} not supported; choose from {list(SUPPORTED_BITS)}")
        if len(set(value)) != len(value):
            raise ValueError(f"bits has duplicates: {value}")
        return value

    @model_validator(mode="after")
    def _whole_updates(self) -> PPOParams:
        if self.episodes % self.episodes_per_update:
            raise ValueError(
                f"episodes ({self.episodes}) must be a multiple of episodes_per_update ({self.episodes_per_update})"
            )
        if self.repair and self.signal != "sensitivity":
            raise ValueError(f"repair needs signal: sensitivity (it relaxes by the predictor), got signal: {self.signal}")
        return self
