"""The packages' floors: a package imports only packages below it, and no module imports itself
back through others (every import counted, those inside functions included).

    uv run pytest tests/test_layers.py     # names the offending imports and cycles
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Each product package's floor: the shared core, then the parts, then what serves and shows
#: them, then the commands on top. The tools (lab/, deploy/, benchmarks/, tests/) may import any.
FLOORS = {
    "desy": 0,
    "capture_agent": 1,
    "alerts": 1,
    "pipelines": 1,
    "serving": 2,
    "dashboard": 2,
    "commands": 3,
}
TOOLS = ("lab", "deploy", "benchmarks", "tests")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The project modules a file imports (absolute names; relative imports resolved)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    top_levels = set(FLOORS) | set(TOOLS)
    return {resolve(imported) for imported in found if imported.split(".")[0] in top_levels}


def resolve(name: str) -> str:
    """The module a name imports: itself, or the module that holds it (`alerts.store.migrate`
    is `alerts.store`)."""
    while name not in MODULES and "." in name:
        name = name.rpartition(".")[0]
    return name


def project_modules() -> dict[str, Path]:
    modules = {}
    for top in FLOORS:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "migrations" not in path.parts:
                modules[module_name(path)] = path
    return modules


MODULES = project_modules()


def test_every_product_package_exists():
    assert {name.split(".")[0] for name in MODULES} == set(FLOORS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_own_package_or_lower_floors(module):
    top = module.split(".")[0]
    wrong = sorted(
        imported
        for imported in imports_of(MODULES[module])
        if (other := imported.split(".")[0]) != top
        and (other in TOOLS or FLOORS[other] >= FLOORS[top])
    )
    assert not wrong, f"{module} (floor {FLOORS[top]}) imports {wrong}"


def test_no_import_cycle():
    graph = {
        module: {imported for imported in imports_of(path) if imported in MODULES} - {module}
        for module, path in MODULES.items()
    }
    cycles = []
    state: dict[str, int] = {}  # 1 while on the path, 2 when done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph[module]):
            if state.get(imported) == 1:
                cycles.append(path[path.index(imported) :] + [imported])
            elif imported not in state:
                visit(imported, path + [imported])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)
