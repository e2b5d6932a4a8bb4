"""The traffic tools stay out of the pipeline; their modules import each other without a loop."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "processor"


def imported_modules(path: Path) -> set[str]:
    """Every `processor.*` module a file imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("processor.")}


def module_name(path: Path) -> str:
    return ".".join(("processor", *path.relative_to(PACKAGE).with_suffix("").parts))


def test_only_the_command_line_imports_the_traffic_tools() -> None:
    importers = {
        module_name(path)
        for path in PACKAGE.rglob("*.py")
        if "traffic" not in path.relative_to(PACKAGE).parts
        and any(name.startswith("processor.traffic") for name in imported_modules(path))
    }
    assert importers == {"processor.cli"}


def test_the_traffic_modules_import_each_other_without_a_cycle() -> None:
    modules = {module_name(path): path for path in (PACKAGE / "traffic").glob("*.py")}
    graph = {
        name: {dep for dep in imported_modules(path) if dep in modules and dep != name}
        for name, path in modules.items()
    }
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, f"import cycle: {' -> '.join([*visiting, name])}"
        if name in done:
            return
        visiting.append(name)
        for dep in graph[name]:
            visit(dep)
        visiting.pop()
        done.add(name)

    for name in graph:
        visit(name)
    assert "processor.traffic.simulate" not in set().union(*graph.values())
