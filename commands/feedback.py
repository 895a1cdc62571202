"""`desy feedback export`: analysts' verdicts back to training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from commands.store import StoreUrl, open_store, store_errors

app = typer.Typer(help="Analysts' verdicts back to training.", no_args_is_help=True)


@app.command("export")
def feedback_export(
    out: Annotated[
        Path, typer.Option(help="CSV in the site format (site/*.csv joins training).")
    ] = Path("site/feedback.csv"),
    store_url: StoreUrl = None,
) -> None:
    """Write alerts marked false positive or confirmed as labelled flows; `dvc repro` then trains on them."""
    from alerts.feedback import export

    engine = open_store(store_url)
    with store_errors(engine.url):
        try:
            rows = export(engine, out)
        except OSError as err:
            typer.echo(f"error: cannot write {out}: {err}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"{rows} labelled flows from analysts' verdicts written to {out}", err=True)
