"""`desy demo`: train if needed, serve the champion, run the agent on a capture, summarise."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

#: What a run writes in its log directory: removed first, so that the summary is this run's.
OUTPUTS = (
    "traffic.txt",
    "flows.jsonl",
    "summary.json",
    "alerts.db",
    "alerts.db-wal",
    "alerts.db-shm",
)


def demo(
    pcap: Annotated[
        Path | None,
        typer.Option(
            help="Replay this capture instead of the synthetic demo one.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    iface: Annotated[
        str | None, typer.Option(help="Capture live from this interface instead.")
    ] = None,
    seconds: Annotated[float, typer.Option(help="How long to capture with --iface.")] = 30.0,
    log_dir: Annotated[Path, typer.Option(help="Where the agent writes its logs.")] = Path(
        "logs/demo"
    ),
) -> None:
    """Train if needed, serve the champion, run the agent on a capture and summarise the verdicts."""
    from commands.demo.run import run_demo

    for name in OUTPUTS:
        (log_dir / name).unlink(missing_ok=True)
    try:
        run_demo(pcap, iface, log_dir, seconds)
    except (RuntimeError, TimeoutError, OSError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
