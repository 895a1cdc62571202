"""Every DVC stage lists, as deps, each project module its command imports (directly or not), so
`dvc repro` never skips a stage whose code changed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

PACKAGES = ("capture_agent", "desy", "lab", "pipelines", "serving")
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _module_file(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__main__.py"):
        if candidate.is_file() and name.split(".")[0] in PACKAGES:
            return candidate
    return None


def imported_files(module: str) -> set[Path]:
    """The project's files that `python -m module` runs, following imports (but not __init__.py)."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        path = _module_file(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(stage):
    spec = STAGES[stage]
    module = spec["cmd"].split("python -m ")[1].split()[0]
    deps = [ROOT / dep for dep in spec["deps"]]
    missing = sorted(
        str(path.relative_to(ROOT))
        for path in imported_files(module)
        if not any(path == dep or dep in path.parents for dep in deps)
    )
    assert not missing, f"dvc.yaml stage {stage} runs {missing} without listing them as deps"
