"""The base of every params section (pydantic only: importing it loads no torch)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A params section: frozen once loaded, and an unknown key is an error naming it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
