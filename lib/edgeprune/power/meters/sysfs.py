"""Reading one sysfs attribute file, with errors that name the file (the Jetson and RAPL meters' sensors)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["read_number", "read_text"]


def read_number(path: Path) -> float:
    """The number in one sysfs attribute file, with errors that name the file."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"sensor file {path} does not exist") from None
    except PermissionError:
        raise PermissionError(f"sensor file {path} is not readable by this user (try as root)") from None
    except OSError as err:
        raise OSError(f"sensor file {path} cannot be read: {err}") from None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"sensor file {path} holds {text!r}, not a number") from None


def read_text(path: Path) -> str:
    """One sysfs attribute file as stripped text, with errors that name the file."""
    try:
        return path.read_text().strip()
    except OSError as err:
        raise OSError(f"cannot read {path}: {err}") from None
