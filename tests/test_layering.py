"""The core packages stay below the presentation and repair layers: nothing in layouts/ or rules/
imports cli/, reporters/ or repair/ (the full import-graph test comes with issue 15's milestone 2)."""

from __future__ import annotations

import ast
import pathlib

import fp8doctor

ROOT = pathlib.Path(fp8doctor.__file__).parent
FORBIDDEN = ("fp8doctor.cli", "fp8doctor.reporters", "fp8doctor.repair")


def _imports(path: pathlib.Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


def test_layouts_and_rules_import_nothing_above_them():
    files = sorted((ROOT / "layouts").rglob("*.py")) + sorted((ROOT / "rules").rglob("*.py"))
    assert len(files) >= 15
    bad = {str(p.relative_to(ROOT)): m for p in files for m in _imports(p) if m.startswith(FORBIDDEN)}
    assert bad == {}


def test_errors_imports_nothing():
    assert _imports(ROOT / "errors.py") == {"__future__"}
