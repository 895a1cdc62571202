"""`python -m commands`: the `desy` command."""

from commands import app

app()
