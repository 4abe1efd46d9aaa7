"""Derive each DVC stage's code dependencies from what it imports, so ``dvc.yaml`` cannot go stale.

A stage runs a notebook (or ``python -m edgeprune...``); the modules of ``lib/edgeprune`` it can
execute are the closure of the imports in its notebook's code cells, followed through every
module, function-level imports included (they run too) and ``if TYPE_CHECKING:`` blocks
excluded (they never run). Importing ``edgeprune.a.b`` also runs ``edgeprune/__init__.py`` and
``edgeprune/a/__init__.py``, so package initialisers are in the closure. Non-Python entries a
stage lists under ``lib/edgeprune`` (device profiles) are kept as written: imports cannot show
what data a module reads.

``python -m edgeprune.deps`` checks ``dvc.yaml`` and exits 1 listing the stale stages;
``--write`` rewrites their ``lib/edgeprune`` deps (other deps and the file's comments are kept).
Written here because no DVC feature derives code dependencies.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml

from edgeprune.paths import repo_root

__all__ = ["imports_of", "module_closure", "stage_deps", "stale_stages", "write_deps"]

PACKAGE = "edgeprune"
LIB = Path("lib") / PACKAGE


def _module_file(root: Path, dotted: str) -> Path | None:
    """The file of module ``dotted`` (``edgeprune.x.y``) under ``root/lib``, or None if it is not ours."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    base = root / "lib" / Path(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at any depth, outside ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(source: str, module: str = "") -> set[str]:
    """Dotted names of the ``edgeprune`` modules ``source`` imports (``module``: its own name, for relative imports)."""
    names: set[str] = set()
    for node in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: resolve against the importing module's package
            package = module.split(".")[: -node.level] if module else []
            base = ".".join([*package, *([base] if base else [])])
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names)  # submodules imported by name
    return {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}


def _with_parents(dotted: str) -> list[str]:
    parts = dotted.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def module_closure(root: Path, sources: Iterable[str]) -> set[Path]:
    """Files of every ``edgeprune`` module that importing from ``sources`` (code strings) can run."""
    pending = [name for source in sources for name in imports_of(source)]
    seen: set[str] = set()
    files: set[Path] = set()
    while pending:
        name = pending.pop()
        for dotted in _with_parents(name):
            if dotted in seen:
                continue
            seen.add(dotted)
            path = _module_file(root, dotted)
            if path is None:
                continue
            files.add(path)
            own = dotted if path.name != "__init__.py" else dotted + ".__init__"
            pending.extend(imports_of(path.read_text(), own))
    return files


def _notebook_code(path: Path) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["\n".join(l for l in "".join(c["source"]).splitlines() if not l.lstrip().startswith(("%", "!")))
            for c in cells if c["cell_type"] == "code"]  # fmt: skip


def _entry_sources(root: Path, cmd: str) -> list[str]:
    """The code a stage command runs first: its papermill notebook, or a ``python -m`` module."""
    notebook = re.search(r"papermill\s+(\S+\.ipynb)", cmd)
    if notebook:
        return _notebook_code(root / notebook.group(1))
    module = re.search(r"python\s+-m\s+(\S+)", cmd)
    if module:
        return [f"import {module.group(1)}"]
    return []


def _stages(dvc: dict) -> dict[str, dict]:
    """Stage definitions by name (a foreach/matrix stage's ``do`` body or itself)."""
    return {name: stage.get("do", stage) for name, stage in dvc["stages"].items()}


def stage_deps(root: Path, stage: dict) -> list[str]:
    """The ``lib/edgeprune`` deps a stage needs: its import closure, as sorted repo-relative paths."""
    closure = module_closure(root, _entry_sources(root, stage["cmd"]))
    return sorted(p.relative_to(root).as_posix() for p in closure)


def _split(root: Path, deps: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(deps outside lib/edgeprune, Python deps inside it: modules and packages, data deps inside it)."""
    lib = LIB.as_posix()
    inside = [d for d in deps if d == lib or d.startswith(lib + "/")]
    python = [d for d in inside if d.endswith(".py") or (root / d / "__init__.py").is_file()]
    return [d for d in deps if d not in inside], python, [d for d in inside if d not in python]


def stale_stages(root: Path | None = None) -> dict[str, tuple[list[str], list[str]]]:
    """Stages whose Python deps differ from their import closure: name -> (missing, extra)."""
    root = root or repo_root()
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())
    stale = {}
    for name, stage in _stages(dvc).items():
        _, listed, _ = _split(root, stage.get("deps", []))
        needed = stage_deps(root, stage)
        missing, extra = sorted(set(needed) - set(listed)), sorted(set(listed) - set(needed))
        if missing or extra:
            stale[name] = (missing, extra)
    return stale


def write_deps(root: Path | None = None) -> list[str]:
    """Rewrite the ``lib/edgeprune`` deps of every stale stage in ``dvc.yaml``; returns their names.

    Only each stage's ``deps:`` block is rewritten, in place, so comments elsewhere survive.
    """
    root = root or repo_root()
    path = root / "dvc.yaml"
    text = path.read_text()
    stale = stale_stages(root)
    dvc = yaml.safe_load(text)
    for name, stage in _stages(dvc).items():
        if name not in stale:
            continue
        other, _, data = _split(root, stage.get("deps", []))
        notebooks = [d for d in other if d.endswith(".ipynb")]
        rest = [d for d in other if d not in notebooks]
        deps = [*notebooks, *stage_deps(root, stage), *data, *rest]
        text = _replace_deps_block(text, name, deps)
    path.write_text(text)
    return sorted(stale)


def _replace_deps_block(text: str, stage: str, deps: list[str]) -> str:
    """``text`` with the ``deps:`` list of stage ``stage`` replaced by ``deps`` (same indentation)."""
    start = re.search(rf"^  {re.escape(stage)}:\n", text, re.M)
    if start is None:
        raise KeyError(f"stage {stage!r} not found in dvc.yaml")
    block = re.compile(r"^(\s+)deps:\n((?:\1  - .*\n)+)", re.M)
    match = block.search(text, start.end())
    if match is None:
        raise ValueError(f"stage {stage!r} has no deps list to rewrite")
    indent = match.group(1)
    body = "".join(f"{indent}  - {d}\n" for d in deps)
    return text[: match.start()] + f"{indent}deps:\n{body}" + text[match.end() :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgeprune.deps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the stale stages' lib/edgeprune deps")
    args = parser.parse_args(argv)
    if args.write:
        changed = write_deps()
        print(f"rewrote the deps of {len(changed)} stage(s): {', '.join(changed) or 'none'}")
        return 0
    stale = stale_stages()
    for name, (missing, extra) in stale.items():
        print(f"{name}: missing {missing or '-'}; not imported {extra or '-'}")
    print("dvc.yaml deps match the stages' imports" if not stale else "run `python -m edgeprune.deps --write`")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
