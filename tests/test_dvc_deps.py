"""Every DVC stage lists, as deps, exactly the project modules its command imports (directly or
not), so `dvc repro` never skips a stage whose code changed nor reruns one whose code did not; and
each pipeline stage is a leaf: it imports library modules, never another stage."""

from __future__ import annotations

import ast
import itertools
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


def _run_modules(node: ast.List | ast.Tuple) -> list[str]:
    """Modules a command line written as a list runs: the string after each "-m"."""
    words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
    return [module for flag, module in itertools.pairwise(words) if flag == "-m" and module]


def imported_files(module: str) -> set[Path]:
    """The project's files that `python -m module` runs, following imports and the `-m` modules
    of the command lines it starts (but not __init__.py)."""
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
            elif isinstance(node, (ast.List, ast.Tuple)):
                todo += _run_modules(node)
    return seen


def _command_module(stage: str) -> str:
    return STAGES[stage]["cmd"].split("python -m ")[1].split()[0]


def _code_deps(stage: str) -> list[Path]:
    """The stage's deps that are code: Python files and project packages (not data, reports)."""
    deps = [ROOT / dep for dep in STAGES[stage]["deps"]]
    return [
        dep
        for dep in deps
        if dep.suffix == ".py" or (dep.is_dir() and dep.relative_to(ROOT).parts[0] in PACKAGES)
    ]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_cover_the_code_it_runs(stage):
    deps = _code_deps(stage)
    missing = sorted(
        str(path.relative_to(ROOT))
        for path in imported_files(_command_module(stage))
        if not any(path == dep or dep in path.parents for dep in deps)
    )
    assert not missing, f"dvc.yaml stage {stage} runs {missing} without listing them as deps"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_deps_list_no_code_it_does_not_run(stage):
    runs = imported_files(_command_module(stage))
    unused = sorted(
        str(dep.relative_to(ROOT))
        for dep in _code_deps(stage)
        if not any(path == dep or dep in path.parents for path in runs)
    )
    assert not unused, f"dvc.yaml stage {stage} lists {unused} as deps but never imports them"


def _pipeline_stages() -> set[Path]:
    """pipelines/ modules with a main(): the stages (the rest are libraries)."""
    return {
        path
        for path in (ROOT / "pipelines").glob("*.py")
        if any(
            isinstance(node, ast.FunctionDef) and node.name == "main"
            for node in ast.parse(path.read_text()).body
        )
    }


def test_every_pipelines_command_of_dvc_yaml_is_a_stage():
    commands = {_module_file(_command_module(stage)) for stage in STAGES}
    assert {path for path in commands if path.parent.name == "pipelines"} <= _pipeline_stages()


@pytest.mark.parametrize("stage", sorted(path.stem for path in _pipeline_stages()))
def test_a_stage_imports_no_other_stage(stage):
    path = ROOT / "pipelines" / f"{stage}.py"
    others = sorted(
        p.stem for p in (imported_files(f"pipelines.{stage}") & _pipeline_stages()) - {path}
    )
    assert not others, f"stage pipelines/{stage}.py imports the stages {others}"
