"""`desy agents add|list|disable`: the agents a server accepts, each with its own token."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from serving.agent_tokens import AgentsError, add, disable, load

app = typer.Typer(
    help="The agents a server accepts, each with its own token.", no_args_is_help=True
)
AgentsFile = Annotated[
    Path,
    typer.Option(
        envvar="DESY_AGENTS_FILE",
        help="Agents with a token each (`desy agents add`); replaces --token.",
    ),
]
AGENTS_FILE = Path("agents.json")


def _refused(err: AgentsError) -> typer.Exit:
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2)


def check_agents_file(path: Path) -> None:
    """Exit with a clear error unless path is a valid agents file; warn if it enables none."""
    if not path.is_file():
        typer.echo(f"error: no agents file {path}: create it with `desy agents add ID`", err=True)
        raise typer.Exit(2)
    try:
        agents = load(path)
    except AgentsError as err:
        raise _refused(err) from None
    if not any(agent.enabled for agent in agents):
        typer.echo(f"warning: {path} enables no agent: every agent is refused", err=True)


@app.command("add")
def agents_add(
    agent_id: Annotated[str, typer.Argument(help="The new agent's id.")],
    file: AgentsFile = AGENTS_FILE,
) -> None:
    """Register an agent and print its token (once: only its hash is kept)."""
    try:
        token = add(file, agent_id)
    except AgentsError as err:
        raise _refused(err) from None
    typer.echo(
        f"agent {agent_id} added to {file}; its token (give it to the agent as DESY_API_TOKEN):",
        err=True,
    )
    typer.echo(token)


@app.command("list")
def agents_list(file: AgentsFile = AGENTS_FILE) -> None:
    """Every agent and whether it is enabled."""
    try:
        agents = load(file)
    except AgentsError as err:
        raise _refused(err) from None
    for agent in agents:
        typer.echo(f"{agent.id}\t{'enabled' if agent.enabled else 'disabled'}")


@app.command("disable")
def agents_disable(agent_id: str, file: AgentsFile = AGENTS_FILE) -> None:
    """Refuse an agent from its next request on (running servers re-read the file)."""
    try:
        disable(file, agent_id)
    except AgentsError as err:
        raise _refused(err) from None
    typer.echo(f"agent {agent_id} disabled", err=True)
