"""The library's layering: no import cycle, stages on top, params validation light.

Imports are read with :func:`edgeprune.deps.imports_of` (function-level imports included:
they run too; ``if TYPE_CHECKING:`` blocks excluded: they never do).
"""

from __future__ import annotations

import graphlib
import subprocess
import sys
from pathlib import Path

from edgeprune.deps import imports_of

LIB = Path(__file__).resolve().parents[1] / "lib"


def _import_graph() -> dict[str, set[str]]:
    """Module -> the edgeprune modules it imports (package initialisers as their package's name)."""
    files = {}
    for path in (LIB / "edgeprune").rglob("*.py"):
        parts = path.relative_to(LIB).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in files.items():
        own = f"{name}.__init__" if path.name == "__init__.py" else name
        graph[name] = {m for m in imports_of(path.read_text(), own) if m in files and m != name}
    return graph


def test_no_module_imports_itself_through_a_cycle():
    graph = _import_graph()
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        raise AssertionError(f"import cycle: {' -> '.join(err.args[1])}") from None


def test_stages_sit_on_top():
    """No stage imports another stage, and only stages, benchmarks and the package itself reach them."""
    graph = _import_graph()
    for module, imported in graph.items():
        stages = {m for m in imported if m.startswith("edgeprune.stages.")}
        if module.startswith("edgeprune.stages."):
            assert not stages, f"{module} imports another stage: {sorted(stages)}"
        elif not module.startswith("edgeprune.bench"):
            assert not stages, f"library module {module} imports a stage: {sorted(stages)}"


def test_params_validation_loads_no_torch():
    """``edgeprune.config`` imports the params schemas only: validating params.yaml needs no torch."""
    code = "import sys, edgeprune.config; print(sorted(m for m in ('torch', 'pandas', 'torch_pruning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
