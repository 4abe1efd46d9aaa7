"""Validated field types shared by every params section (config and the method packages).

Kept apart from :mod:`edgeprune.config` because config imports the method packages'
sections, which need these types too.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from edgeprune.conditions import CONDITIONS
from edgeprune.timing import MIN_REPEATS

SUPPORTED_BITS = (2, 3, 4, 5, 6, 7, 8)
"""Bit-widths the fake quantizers simulate (:mod:`edgeprune.fakequant`); 8 also runs on real int8 kernels."""
WeightClip = Literal["max", "mse", "kl"]
"""Per-channel weight clipping rules of the k-bit grids (:mod:`edgeprune.clipping`)."""


def distinct_seeds(value: list[int]) -> list[int]:
    """Seeds are distinct non-negative integers."""
    if len(set(value)) != len(value) or min(value) < 0:
        raise ValueError(f"seeds must be distinct non-negative integers, got {value}")
    return value


def registered_models(value: list[str]) -> list[str]:
    """Model names are in the registry (edgeprune.models, imported here: it loads torch)."""
    from edgeprune.models import available_models

    unknown = [m for m in value if m not in available_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {available_models()}")
    return value


def known_conditions(value: list[str]) -> list[str]:
    """Shift conditions are names from :data:`edgeprune.conditions.CONDITIONS` (repeats allowed: a stream)."""
    unknown = [c for c in value if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown condition(s) {unknown}; known: {list(CONDITIONS)}")
    return value


def distinct_conditions(value: list[str]) -> list[str]:
    """Known shift conditions, each named once (a set of conditions to evaluate or train under)."""
    known_conditions(value)
    if len(set(value)) != len(value):
        raise ValueError(f"duplicate conditions in {value}")
    return value


Seeds = Annotated[list[int], Field(min_length=1), AfterValidator(distinct_seeds)]
ModelNames = Annotated[list[str], AfterValidator(registered_models)]
ConditionSet = Annotated[list[str], Field(min_length=1), AfterValidator(distinct_conditions)]
ConditionStream = Annotated[list[str], Field(min_length=1), AfterValidator(known_conditions)]


def repeats_field(default: int, description: str = "timed runs per latency figure (edgeprune.timing)"):
    """A params field of timed runs: one lower bound (quartiles need four) in every section."""
    return Field(default, ge=MIN_REPEATS, description=description)
