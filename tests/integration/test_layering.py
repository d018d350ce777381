"""The import graph of the package: no cycle anywhere, and the core packages (checkpoint/, layouts/,
rules/) stay below the presentation and repair layers (they never import cli/, reporters/ or repair/).

Every import counts, the lazy ones inside functions too (the cycle issue 15 removed ran through one:
checkpoint/loader -> repair/journal -> repair/plan -> scanner -> loader); only imports under
`if TYPE_CHECKING:` are left out, since they never run."""

from __future__ import annotations

import ast
import pathlib

import fp8doctor

ROOT = pathlib.Path(fp8doctor.__file__).parent
FORBIDDEN = ("fp8doctor.cli", "fp8doctor.reporters", "fp8doctor.repair")
CORE = ("checkpoint", "layouts", "rules")


def _module_name(path: pathlib.Path) -> str:
    parts = ("fp8doctor", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: pathlib.Path) -> set[str]:
    """Every module `path` imports, relative imports resolved, TYPE_CHECKING blocks skipped."""
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out: set[str] = set()
    stack: list[ast.AST] = [ast.parse(path.read_text())]
    while stack:
        node = stack.pop()
        if _type_checking_only(node):
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
        stack.extend(ast.iter_child_nodes(node))
    return out


def _graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (a submodule import also runs its packages' __init__,
    except the module's own enclosing packages: Python has started those before the module runs)."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        deps = set()
        for m in _imports(path):
            while m and m != "fp8doctor":
                if m in MODULES and m != name and not name.startswith(m + "."):
                    deps.add(m)
                m = m.rsplit(".", 1)[0] if "." in m else ""
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for d in sorted(graph[n]):
            if state.get(d) == 1:
                return [*path[path.index(d):], d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        state[n] = 2
        path.pop()
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_the_graph_sees_the_package():
    graph = _graph()
    assert len(graph) >= 80
    assert "fp8doctor.checkpoint.loader" in graph["fp8doctor.scanner"]
    assert "fp8doctor.repair.journal" in graph["fp8doctor.scanner"]  # a lazy import counts


def test_a_cycle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_has_no_cycle():
    assert _cycle(_graph()) is None


def test_core_packages_import_nothing_above_them():
    files = [p for pkg in CORE for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) >= 25
    bad = {str(p.relative_to(ROOT)): m for p in files for m in _imports(p) if m.startswith(FORBIDDEN)}
    assert bad == {}


def test_errors_imports_nothing():
    assert _imports(ROOT / "errors.py") == {"__future__"}
