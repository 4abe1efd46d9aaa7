"""The ``finetune`` section of params.yaml: the one recovery protocol's budgets and settings.

Torch-free (a schema only), so params validation does not import torch. Validated at
load time: an empty budget list, a non-positive budget, a distillation temperature <= 0,
a weight outside [0, 1] and a batch larger than a budget's images each name the key.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from edgeprune.schema import Section


class Budget(Section):
    """How much recovery a network gets: ``steps`` SGD steps, or ``epochs`` passes over ``images``.

    ``steps: N`` draws N x ``finetune.batch_size`` training images and passes over them once,
    so every step sees fresh images; ``images: null`` means the whole train split. ``lr``
    overrides ``finetune.lr`` for this budget (a longer schedule can afford a larger step).
    """


    steps: int | None = Field(None, gt=0, description="SGD steps (images drawn: steps x batch_size, one pass)")
    images: int | None = Field(None, gt=0, description="train images drawn per seed (null = all); with epochs")
    epochs: float | None = Field(None, gt=0, description="passes over those images")
    lr: float | None = Field(None, gt=0, description="initial learning rate of the cosine schedule (default finetune.lr)")

    @model_validator(mode="after")
    def _one_form(self) -> Budget:
        if self.steps is not None and (self.images is not None or self.epochs is not None):
            raise ValueError("give a budget either as `steps` or as `images` x `epochs`, not both")
        if self.steps is None and self.epochs is None:
            raise ValueError("a budget needs `steps`, or `epochs` (over `images`, null = the whole train split)")
        return self


class FinetuneParams(Section):
    """Recovery after pruning or quantization, shared by every method (:mod:`edgeprune.recover`).

    Every method comparison that a claim rests on is recovered at each budget of ``budgets``
    (the budget axis); the first budget also serves everything else (kept networks, streams,
    figures).
    """


    budgets: list[Budget] = Field(
        default_factory=lambda: [Budget(steps=2)],
        min_length=1,
        description="recovery budgets, at least one; the first also serves everything else",
    )
    lr: float = Field(0.01, gt=0, description="initial learning rate of the cosine schedule")
    batch_size: int = Field(256, ge=2)
    weight_decay: float = Field(5e-4, ge=0)
    calib_images: int = Field(256, ge=8, description="train images re-estimating BatchNorm statistics after pruning")
    distill_weight: float = Field(
        0.0, ge=0, le=1, description="weight of distillation from the network's dense teacher (0 = off)"
    )
    distill_temperature: float = Field(4.0, gt=0, description="softmax temperature of the distillation term")

    @model_validator(mode="after")
    def _budgets(self) -> FinetuneParams:
        for i, budget in enumerate(self.budgets):
            if budget.images is not None and budget.images < self.batch_size:
                raise ValueError(
                    f"budgets[{i}].images ({budget.images}) is smaller than batch_size ({self.batch_size}): "
                    "not one full batch to train on"
                )
        return self
