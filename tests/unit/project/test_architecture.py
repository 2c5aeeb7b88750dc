"""The layout docs/architecture.md describes, held against the code: one package per flow, no cycles.

Imports are read with ``ast`` from the source, every one of them: module level, deferred inside a
function and under ``TYPE_CHECKING`` alike, since a cycle of type-only imports still ties the two
modules together for anyone who reads or changes them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SHELL = {"__init__", "__main__", "cli", "server", "config", "app_keys"}
FLOW_PACKAGES = {
    "core",
    "probing",
    "serving",
    "gateway",
    "logs",
    "correlation",
    "sentry",
    "tracing",
    "console",
}


def module_files(root: Path, tops: tuple[str, ...] = ("sidecar", "collectors")) -> dict[str, Path]:
    """Dotted module name -> file, for every module below ``tops`` (a package is its ``__init__``)."""
    modules: dict[str, Path] = {}
    for top in tops:
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def imported_modules(name: str, path: Path, known: Mapping[str, Path]) -> Iterator[str]:
    """The project's modules that ``name`` imports anywhere in its source, resolved like Python does."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in known:  # ``from package import module``
                    yield submodule
                elif source in known:
                    yield source


def import_graph(root: Path, tops: tuple[str, ...] = ("sidecar", "collectors")) -> dict[str, set[str]]:
    modules = module_files(root, tops)
    return {
        name: {target for target in imported_modules(name, path, modules) if target != name}
        for name, path in modules.items()
    }


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle_of_type_only_and_deferred_imports(tmp_path: Path) -> None:
    package = tmp_path / "sidecar"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sidecar.b import B\n"
    )
    (package / "b.py").write_text("def f():\n    from sidecar import c\n")
    (package / "c.py").write_text("from .a import thing\n")
    (package / "d.py").write_text("import sidecar.a\n")
    assert cycles(import_graph(tmp_path, ("sidecar",))) == [["sidecar.a", "sidecar.b", "sidecar.c"]]


def test_no_import_cycles_in_sidecar_and_collectors() -> None:
    found = cycles(import_graph(ROOT))
    assert not found, (
        "import cycles (break them with a small interface, see docs/architecture.md):\n"
        + "\n".join(" -> ".join(component) for component in found)
    )


def test_only_the_process_shell_sits_at_the_top_of_sidecar() -> None:
    top = ROOT / "sidecar"
    loose = sorted(p.stem for p in top.glob("*.py") if p.stem not in SHELL)
    assert not loose, f"modules loose at the top of sidecar/ (put each in its flow's package): {loose}"
    packages = {p.name for p in top.iterdir() if (p / "__init__.py").exists()}
    assert packages <= FLOW_PACKAGES, f"unknown packages: {sorted(packages - FLOW_PACKAGES)}"


@pytest.mark.parametrize("package", sorted(FLOW_PACKAGES))
def test_each_package_opens_with_its_map(package: str) -> None:
    docstring = ast.get_docstring(ast.parse((ROOT / "sidecar" / package / "__init__.py").read_text()))
    assert docstring, f"sidecar/{package}/__init__.py has no docstring"
    listed = {p.stem for p in (ROOT / "sidecar" / package).glob("*.py") if p.stem != "__init__"}
    listed |= {p.name for p in (ROOT / "sidecar" / package).iterdir() if (p / "__init__.py").exists()}
    missing = sorted(m for m in listed if f"``{m}``" not in docstring and f"``{m}/``" not in docstring)
    assert not missing, f"sidecar/{package}/__init__.py does not say what these do: {missing}"


def test_lower_layers_never_import_higher_ones() -> None:
    graph = import_graph(ROOT)
    for name, targets in graph.items():
        if name.startswith("sidecar.core"):
            outside = sorted(
                t for t in targets if t.startswith("sidecar.") and not t.startswith("sidecar.core")
            )
            assert not outside, f"{name} is in the bottom layer but imports {outside}"
        if name.startswith("collectors"):
            outside = sorted(
                t for t in targets if t.startswith("sidecar.") and not t.startswith("sidecar.core")
            )
            assert not outside, (
                f"{name}: a collector knows nothing of the sidecar's flows, but imports {outside}"
            )
        if name.startswith("sidecar.") and name.rpartition(".")[2] == "settings":
            assert "sidecar.config" not in targets, f"{name} imports the root config, which composes it"
