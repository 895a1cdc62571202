"""`desy`: the DeSy command line (model server, dashboard, agents' tokens, analysts, demo,
explanations)."""

import typer

from commands import agents, feedback, users
from commands.dashboard import dashboard
from commands.demo import demo
from commands.explain import explain
from commands.serve import serve

app = typer.Typer(
    help="DeSy: network intrusion detection on NSL-KDD features.", no_args_is_help=True
)


@app.callback()
def main() -> None:
    """DeSy command line."""


app.command()(serve)
app.command()(demo)
app.command()(dashboard)
app.command()(explain)
app.add_typer(agents.app, name="agents")
app.add_typer(users.app, name="users")
app.add_typer(feedback.app, name="feedback")
