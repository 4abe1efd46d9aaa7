"""Dispatch ``python -m edgeprune.bench NAME [ARGS]`` to the benchmark module NAME."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import edgeprune.bench


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(edgeprune.bench.__path__) if not m.name.startswith("_"))
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        print(f"usage: python -m edgeprune.bench {{{','.join(names)}}} [args]", file=sys.stderr)
        return 2
    importlib.import_module(f"edgeprune.bench.{sys.argv[1]}").main(sys.argv[2:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
