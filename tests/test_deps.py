"""edgeprune.deps: each stage's dvc.yaml deps are its import closure (the pipeline test checks DVC honours them)."""

from __future__ import annotations

from pathlib import Path

from edgeprune.deps import imports_of, module_closure, stale_stages

REPO = Path(__file__).resolve().parents[1]


def test_dvc_yaml_lists_every_module_each_stage_imports_and_no_other():
    assert stale_stages(REPO) == {}, "run `python -m edgeprune.deps --write`"


def test_imports_of_follows_every_form_of_import():
    source = '''
import numpy
import edgeprune.a
from edgeprune import b
from edgeprune.c import thing
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from edgeprune.never import Hint
def later():
    from edgeprune.d import e
'''
    found = imports_of(source)
    assert {"edgeprune.a", "edgeprune", "edgeprune.b", "edgeprune.c", "edgeprune.c.thing", "edgeprune.d", "edgeprune.d.e"} <= found
    assert not any("never" in name for name in found) and "numpy" not in found
    assert imports_of("from .sibling import x", "edgeprune.pkg.mod") >= {"edgeprune.pkg.sibling"}


def test_module_closure_runs_through_modules_and_package_initialisers(tmp_path):
    lib = tmp_path / "lib" / "edgeprune"
    (lib / "pkg").mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    (lib / "pkg" / "__init__.py").write_text("from edgeprune.pkg.inner import x\n")
    (lib / "pkg" / "inner.py").write_text("def f():\n    import edgeprune.leaf\n")
    (lib / "leaf.py").write_text("import os\n")
    (lib / "unused.py").write_text("")
    files = {p.relative_to(lib).as_posix() for p in module_closure(tmp_path, ["from edgeprune.pkg import inner"])}
    assert files == {"__init__.py", "pkg/__init__.py", "pkg/inner.py", "leaf.py"}
