"""`python -m lab`: run the traffic lab (root) and write the labelled flow table."""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from lab.runner import Plan, run_lab
from lab.scenarios import SCENARIOS

PARAMS = Path(__file__).resolve().parent.parent / "params.yaml"
app = typer.Typer(
    help="DeSy traffic lab: real servers, clients and attack tools in network namespaces.",
    no_args_is_help=True,
)


def lab_param(key: str, help: str) -> Any:
    """An option whose default is params.yaml's lab.<key>."""
    return typer.Option(help=f"{help} (default: params.yaml lab.{key})")


@app.command()
def run(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Labelled flow table (CSV); its manifest goes beside it as .json. (default: params.yaml lab.table)"
        ),
    ] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option("--scenario", "-s", help="Scenario to run (repeatable; default: all)."),
    ] = None,
    runs: Annotated[
        int | None, lab_param("runs", "Runs of each scenario (normal ones: twice).")
    ] = None,
    seed: Annotated[int | None, lab_param("seed", "Seed of every run's parameters.")] = None,
    max_attack_rows: Annotated[
        int | None,
        lab_param("max_attack_rows", "Attack connections kept per run at most (a uniform sample)."),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Where pcaps and per-run CSVs go (default: a temporary directory)."),
    ] = None,
) -> None:
    """Run the scenarios and write the labelled table."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    signal.signal(
        signal.SIGTERM, lambda *_: sys.exit(143)
    )  # unwind: stop servers, remove namespaces
    names = tuple(scenario or SCENARIOS)
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        typer.echo(f"error: unknown scenario {unknown}; known: {', '.join(SCENARIOS)}", err=True)
        raise typer.Exit(2)
    params = yaml.safe_load(PARAMS.read_text())["lab"]
    out = out or PARAMS.parent / params["table"]
    directory = workdir or Path(tempfile.mkdtemp(prefix="desy-lab-"))
    plan = Plan(
        names,
        params["runs"] if runs is None else runs,
        params["seed"] if seed is None else seed,
        params["max_attack_rows"] if max_attack_rows is None else max_attack_rows,
    )
    try:
        counts = run_lab(plan, out, directory)
    except PermissionError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{out}: {sum(counts.values())} connections {counts}; pcaps in {directory}", err=True
    )


@app.command("list")
def list_scenarios() -> None:
    """The scenarios, their family and the label of their attack connections."""
    for scenario in SCENARIOS.values():
        typer.echo(f"{scenario.name:22} {scenario.family:7} {scenario.label}")


if __name__ == "__main__":
    app()
