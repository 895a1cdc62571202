"""DeSy end to end on one machine (`desy demo`).

Trains the model if the registry has no champion, starts the model server, feeds the capture
agent a capture (its own synthetic one by default), stops the server and summarises the verdicts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from commands.demo.capture import demo_capture
from commands.demo.report import summary
from commands.demo.server import free_port, start_server, wait_ready
from commands.project import PROJECT
from desy import registry


def has_champion() -> bool:
    import mlflow

    return (
        registry.champion(mlflow.MlflowClient(registry.absolute_store(registry.tracking_uri())))
        is not None
    )


def demo_store(log_dir: Path) -> str:
    """The demo's own alert store, beside its logs."""
    return f"sqlite:///{(log_dir / 'alerts.db').resolve()}"


def run_demo(pcap: Path | None, iface: str | None, log_dir: Path, seconds: float) -> None:
    """The whole demo; raises on failure."""
    if not has_champion():
        typer.echo("no champion model yet: running the training pipeline (dvc repro)…", err=True)
        subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=PROJECT, check=True)
    if pcap is None and iface is None:
        pcap = demo_capture(log_dir / "demo-input.pcap")
        typer.echo(
            f"wrote demo capture {pcap} (HTTP and DNS sessions, a SYN port scan, a SYN flood)",
            err=True,
        )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    typer.echo(f"starting the model server on {url}…", err=True)
    store = demo_store(log_dir)
    server = start_server(port, store)
    try:
        wait_ready(url, server)
        agent = [
            sys.executable,
            "-m",
            "capture_agent.cli",
            "run",
            "--server",
            url,
            "--log-dir",
            str(log_dir),
            "--agent-id",
            "demo",
        ]
        agent += ["--pcap", str(pcap)] if pcap else ["--iface", iface]
        typer.echo(
            "capture agent: "
            + (f"replaying {pcap}" if pcap else f"capturing on {iface} for {seconds:.0f} s"),
            err=True,
        )
        proc = subprocess.Popen(agent, cwd=PROJECT)
        if iface:
            time.sleep(seconds)
            proc.send_signal(signal.SIGINT)
        if proc.wait() != 0:
            raise RuntimeError("the capture agent failed")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    typer.echo("\n" + summary(log_dir))
    typer.echo(f"\nalerts: uv run desy dashboard --store-url {store}  →  http://127.0.0.1:8080")
