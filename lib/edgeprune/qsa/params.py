"""The ``qsa`` section of params.yaml (stage 40_qsa), validated at load time.

Defaults are the TINY profile's values, so the notebook runs under nbval in seconds;
params.yaml (quick) and ``profiles/paper.yaml`` override them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edgeprune.fields import ConditionStream, ModelNames, Seeds, repeats_field
from edgeprune.schema import Section

# The structured static methods of edgeprune.prune (kept literal: importing it would pull
# Torch-Pruning into the params schema; a test checks they agree).
BASELINES = ("magnitude_structured", "l1_filter")


class ControllerParams(Section):
    """The drift controller on the non-stationary stream."""


    conditions: ConditionStream = Field(
        default_factory=lambda: ["clean", "noise", "blur", "low_light", "low_contrast", "clean"],
        description="the stream: one segment per entry, in order (repeats allowed)",
    )
    batches_per_condition: int = Field(2, ge=1, description="stream batches in each segment")
    batch_size: int = Field(30, ge=1, description="images per stream batch")
    compression: float = Field(8.0, gt=1.0, description="target compression of the deployed QSA network")
    monitor: Literal["labels", "entropy"] = Field(
        "labels", description="labels: delayed top-1 feedback; entropy: label-free mean prediction entropy"
    )
    label_delay: int = Field(1, ge=0, description="batches before a batch's labels arrive (labels monitor)")
    window: int = Field(2, ge=1, description="batches averaged by the monitor")
    accuracy_drop: float = Field(10.0, gt=0, description="trigger when windowed top-1 falls this many points below reference")
    entropy_rise: float = Field(0.15, gt=0, description="trigger when windowed mean entropy rises this many nats above reference")
    latency_budget_ms: float | None = Field(
        None, gt=0, description="trigger when the windowed median latency per batch exceeds this (None: latency only logged)"
    )
    timer: int | None = Field(6, ge=1, description="also re-prune every this many batches (None: no timer)")
    cooldown: int = Field(2, ge=0, description="batches after a re-prune during which no trigger fires")
    buffer_batches: int = Field(2, ge=1, description="most recent batches whose images retrain the QSA")
    retrain_steps: int = Field(10, ge=1, description="QSA optimisation steps per re-prune (warm-started)")
    fine_tune_epochs: float = Field(0.0, ge=0, description="epochs of fine-tuning on the labelled buffer (0 = off)")
    accept: Literal["always", "better"] = Field(
        "better",
        description="always: deploy every re-pruned network; better: only if it beats the deployed one on held-out recent "
        "data (the newest labelled batch, kept out of fine-tuning; without labels, lower mean entropy on the buffer)",
    )


class QSAParams(Section):
    """Quantized sparse autoencoders choose the masks; KL chooses the threshold (stage 40_qsa)."""


    models: ModelNames = Field(default_factory=lambda: ["mobilenet_v3_small"], min_length=1, description="models (DVC matrix)")
    seeds: Seeds = Field(default_factory=lambda: [0], description="method seeds (QSA init, data subsets, fine-tuning)")
    stream_seeds: list[int] | None = Field(None, description="seeds that also run the drift stream; None = all")
    layers: list[str] | None = Field(
        None, description="prunable layers given a QSA and a mask; None = every Conv2d / Linear but the classifier"
    )
    calib_images: int = Field(128, ge=8, description="training images whose activations train the QSAs and calibrate int8 / BN")
    hidden_fraction: float = Field(1.0, gt=0, le=1, description="QSA code width as a fraction of the layer's channels")
    max_hidden: int | None = Field(32, ge=1, description="cap on the code width (keeps wide layers' QSAs cheap)")
    positions: int = Field(2, ge=1, description="spatial positions sampled per calibration image (one activation vector each)")
    lambdas: list[float] = Field(
        default_factory=lambda: [1e-2, 1e-1], min_length=1, description="L1 weights λ tried (a warm-started path)"
    )
    steps: int = Field(30, ge=1, description="Adam steps per QSA (full batch, cosine learning rate)")
    lr: float = Field(1e-2, gt=0, description="QSA learning rate")
    compressions: list[float] = Field(
        default_factory=lambda: [8.0], min_length=1, description="target compression ratios (fp32 dense bytes / int8 bytes)"
    )
    candidates: int = Field(2, ge=1, description="thresholds τ tried per λ and target, from the smallest feasible one up")
    candidate_step: float = Field(0.03, gt=0, lt=0.5, description="channel-fraction spacing of those thresholds")
    kl_bins: int = Field(128, ge=8, description="histogram bins of the KL divergence")
    kl_layer: str | None = Field(None, description="layer whose input is histogrammed; None = the classifier")
    round_to: int | None = Field(
        None, ge=1, description="kept channels per group rounded to the nearest multiple (prune.channels_to_keep; the x86 "
        "int8 kernels' fast path is a multiple of 8: unrounded QSA networks measured 7-9x slower in int8 than fp32); None = off"
    )
    baselines: list[str] = Field(default_factory=lambda: list(BASELINES), description="static methods at equal compression")
    eval_images: int | None = Field(None, ge=10, description="stratified test subset for accuracy; None = the whole test split")
    shift_accuracy: bool = Field(False, description="also measure every row's top-1 under each shift condition")
    latency: bool = Field(False, description="measure latency (batch 1 / 64) of every row")
    latency_repeats: int = repeats_field(10)
    controller: ControllerParams = ControllerParams()

    @model_validator(mode="after")
    def _stream_seeds_known(self) -> QSAParams:
        unknown = [s for s in self.stream_seeds or [] if s not in self.seeds]
        if unknown:
            raise ValueError(f"stream_seeds {unknown} are not in seeds {self.seeds}")
        return self

    @model_validator(mode="after")
    def _stream_target_measured(self) -> QSAParams:
        if self.controller.compression not in self.compressions:
            raise ValueError(
                f"controller.compression ({self.controller.compression:g}) must be one of compressions {self.compressions}: "
                "the stream deploys the networks measured there"
            )
        return self

    @field_validator("lambdas")
    @classmethod
    def _non_negative(cls, value: list[float]) -> list[float]:
        if min(value) < 0:
            raise ValueError(f"every λ must be >= 0, got {value}")
        return sorted(set(value))

    @field_validator("compressions")
    @classmethod
    def _above_one(cls, value: list[float]) -> list[float]:
        if min(value) <= 1.0:
            raise ValueError(f"compression ratios must be > 1, got {value}")
        return sorted(set(value))

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, value: list[str]) -> list[str]:
        unknown = [b for b in value if b not in BASELINES]
        if unknown:
            raise ValueError(f"unknown baseline(s) {unknown}; known: {list(BASELINES)}")
        return value

    @field_validator("stream_seeds")
    @classmethod
    def _distinct(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or len(set(value)) != len(value) or min(value) < 0):
            raise ValueError(f"stream_seeds must be a non-empty list of distinct non-negative integers, got {value}")
        return value

