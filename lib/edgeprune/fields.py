"""Validated field types shared by every params section (config and the method packages).

Kept apart from :mod:`edgeprune.config` because config imports the method packages'
sections, which need these types too.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from edgeprune.models import available_models


def distinct_seeds(value: list[int]) -> list[int]:
    """Seeds are distinct non-negative integers."""
    if len(set(value)) != len(value) or min(value) < 0:
        raise ValueError(f"seeds must be distinct non-negative integers, got {value}")
    return value


def registered_models(value: list[str]) -> list[str]:
    """Model names are in the registry (edgeprune.models)."""
    unknown = [m for m in value if m not in available_models()]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; known: {available_models()}")
    return value


Seeds = Annotated[list[int], Field(min_length=1), AfterValidator(distinct_seeds)]
ModelNames = Annotated[list[str], AfterValidator(registered_models)]
