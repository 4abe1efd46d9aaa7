"""Atomic file output: a stage either leaves a complete file or none at all.

torch is imported only to save or load modules, so readers of tables and JSON need none.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


@contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_csv_atomic(frame: Any, path: str | os.PathLike[str], *, index: bool = False) -> None:
    """Write a pandas DataFrame as CSV (without its index unless asked), atomically."""
    with atomic_write(path) as tmp:
        frame.to_csv(tmp, index=index)


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (has the stage that writes it run?)")
    return json.loads(path.read_text())


def save_torch_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` through :func:`atomic_write`, byte-reproducible.

    Saved through a file object: given a path, ``torch.save`` names the zip's records
    after the file, here a random temporary name, so equal objects gave files with
    different hashes and DVC re-ran every stage downstream.
    """
    import torch

    with atomic_write(path) as tmp, tmp.open("wb") as f:
        torch.save(obj, f)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def save_module(model: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Save a whole module (architecture and weights), atomically.

    Structurally pruned networks no longer match their registry architecture, so a
    state dict alone cannot rebuild them.
    """
    save_torch_atomic(model.cpu().eval(), path)


def load_module(path: str | os.PathLike[str]) -> torch.nn.Module:
    """Load a module written by :func:`save_module` (unpickles code: only for this pipeline's own files)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (has the stage that writes it run?)")
    import torch

    return torch.load(path, map_location="cpu", weights_only=False).eval()
