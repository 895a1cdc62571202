"""`desy-agent`: extract NSL-KDD features from captures, or run the agent against a server."""

from __future__ import annotations

import gc
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from capture_agent._engine import csv_lines
from capture_agent.extractor import Counters, Extractor, Limits, Timeouts, extract_file
from capture_agent.logs import private_file
from capture_agent.pcap import CaptureFileError, blocks
from desy.records import ROW_FIELDS

app = typer.Typer(
    help="DeSy capture agent: live traffic or pcaps → 41 NSL-KDD features → verdicts.",
    no_args_is_help=True,
)


TcpAttempt = Annotated[
    float, typer.Option(help="Seconds a SYN waits for a SYN-ACK before the connection ends as S0.")
]
TcpIdle = Annotated[
    float, typer.Option(help="Idle seconds before an open TCP connection is emitted.")
]
UdpIdle = Annotated[float, typer.Option(help="Idle seconds that end a UDP conversation.")]
MaxConnections = Annotated[
    int, typer.Option(help="Connection table size; beyond it the oldest are evicted (and emitted).")
]


class Progress:
    """A progress line on stderr every `interval` seconds."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.started = self.last = time.monotonic()

    def update(self, packets: int, connections: int, final: bool = False) -> None:
        now = time.monotonic()
        if final or now - self.last >= self.interval:
            self.last = now
            rate = packets / max(now - self.started, 1e-9)
            typer.echo(
                f"{packets:,} packets ({rate:,.0f}/s), {connections:,} connections", err=True
            )


@app.command()
def extract(
    pcap: Annotated[Path, typer.Argument(help="pcap or pcapng file.", exists=True, dir_okay=False)],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="CSV file (default: standard output).")
    ] = None,
    tcp_attempt_timeout: TcpAttempt = Timeouts.tcp_attempt,
    tcp_idle_timeout: TcpIdle = Timeouts.tcp_established,
    udp_timeout: UdpIdle = Timeouts.udp,
    max_connections: MaxConnections = 262_144,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")
    ] = False,
) -> None:
    """One CSV row per connection: the 41 features in dataset order, then the endpoints and times."""
    timeouts = Timeouts(tcp_attempt_timeout, tcp_idle_timeout, udp=udp_timeout)
    quiet_gc()
    progress_line = Progress()
    handle = out.open("wb") if out else sys.stdout.buffer
    handle.write((",".join(ROW_FIELDS) + "\n").encode())
    emitted = 0
    try:
        for rows, progress in extract_file(pcap, timeouts, Limits(max_connections)):
            handle.write(csv_lines(rows))
            emitted += len(rows)
            if isinstance(progress, Counters):
                counters = progress
            elif not quiet:
                progress_line.update(progress, emitted)
    except CaptureFileError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    finally:
        if out:
            handle.close()
    if not quiet:
        progress_line.update(counters.packets_seen, counters.connections_emitted, final=True)
        typer.echo(
            _summary_text({k: v for k, v in vars(counters).items() if k != "malformed_reasons"}),
            err=True,
        )


TOKEN_FILE_HELP = (
    "File holding the server's bearer token (default: the DESY_API_TOKEN environment variable; "
    "never on the command line, where `ps` shows it)."
)


def file_option(help: str) -> Any:
    """An option naming a file that must exist."""
    return typer.Option(help=help, exists=True, dir_okay=False)


@app.command()
def run(
    server: Annotated[str, typer.Option(help="Model server base URL, e.g. http://127.0.0.1:3000.")],
    iface: Annotated[str | None, typer.Option(help="Capture live from this interface.")] = None,
    pcap: Annotated[Path | None, file_option("Replay this pcap/pcapng file.")] = None,
    token_file: Annotated[Path | None, file_option(TOKEN_FILE_HELP)] = None,
    ca_cert: Annotated[
        Path | None,
        file_option("CA certificate (PEM) that signed the server's certificate, for a private CA."),
    ] = None,
    insecure: Annotated[
        bool,
        typer.Option(
            help="Allow sending the token over plain HTTP to a server that is not on this machine."
        ),
    ] = False,
    log_dir: Annotated[
        Path, typer.Option(help="Where traffic.txt, capture.pcap, flows.jsonl and the spool go.")
    ] = Path("logs"),
    bpf: Annotated[str | None, typer.Option(help="BPF filter for live capture.")] = None,
    promisc: Annotated[bool, typer.Option(help="Put the interface in promiscuous mode.")] = False,
    agent_id: Annotated[
        str | None, typer.Option(help="Name of this agent in flow records (default: host name).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Flows per request at most.")] = 256,
    batch_interval: Annotated[
        float, typer.Option(help="Seconds a flow waits for its batch to fill at most.")
    ] = 1.0,
    spool_mb: Annotated[int, typer.Option(help="Disk spool limit for unsent batches, MiB.")] = 256,
    backlog_mb: Annotated[
        int,
        typer.Option(
            help="Live: disk space for flows waiting while the server is behind (a flood), MiB."
        ),
    ] = 1024,
    pcap_rotate_mb: Annotated[
        int, typer.Option(help="Rotate capture.pcap at this size, MiB.")
    ] = 100,
    drain_timeout: Annotated[
        float, typer.Option(help="Seconds to keep retrying the server at exit.")
    ] = 10.0,
    tcp_attempt_timeout: TcpAttempt = Timeouts.tcp_attempt,
    tcp_idle_timeout: TcpIdle = Timeouts.tcp_established,
    udp_timeout: UdpIdle = Timeouts.udp,
    max_connections: MaxConnections = 262_144,
) -> None:
    """Capture, classify every connection through the server and log it locally."""
    from capture_agent.agent import REPLAY_BLOCK, Agent, RunConfig

    if (iface is None) == (pcap is None):
        typer.echo("error: give exactly one of --iface or --pcap", err=True)
        raise typer.Exit(2)
    token = read_token(token_file)
    if token and not insecure and not _private_url(server):
        typer.echo(
            f"error: refusing to send the token in clear text to {server}: use https:// (with --ca-cert for "
            "a private CA), or pass --insecure",
            err=True,
        )
        raise typer.Exit(2)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    config = RunConfig(
        log_dir=log_dir,
        agent_id=agent_id or socket.gethostname(),
        server=server,
        token=token,
        ca_cert=ca_cert,
        batch_size=batch_size,
        batch_interval=batch_interval,
        spool_max_bytes=spool_mb * 2**20,
        backlog_max_bytes=backlog_mb * 2**20,
        pcap_max_bytes=pcap_rotate_mb * 2**20,
        drain_timeout=drain_timeout,
        capture=iface or str(pcap.resolve()),
    )
    gc.freeze()  # leave start-up objects out of collections; keep default thresholds (httpx makes cycles)
    extractor = Extractor(
        Timeouts(tcp_attempt_timeout, tcp_idle_timeout, udp=udp_timeout), Limits(max_connections)
    )
    agent = Agent(config, extractor, live=iface is not None)
    capture = None
    if iface is not None:
        from capture_agent.live import LiveCapture

        try:
            capture = LiveCapture(iface, bpf, promisc)
        except Exception as err:  # noqa: BLE001 (scapy raises its own exception types for a bad filter)
            typer.echo(f"error: cannot capture on {iface}: {err}", err=True)
            raise typer.Exit(2) from None
        logging.getLogger("desy.agent").info(
            "capturing on %s (link type %d)", iface, capture.linktype
        )
        source = capture.blocks(lambda: not agent.stopping.is_set())
    else:
        source = blocks(pcap, REPLAY_BLOCK)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: agent.stop())
    try:
        counters = agent.run(source)
    finally:
        if capture is not None:
            capture.close()
    counters["packets_kernel_dropped"] = capture.kernel_dropped if capture else 0
    typer.echo(_summary_text(counters), err=True)
    problems = run_problems(counters, spool_mb) + write_summary(log_dir, counters)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems:
        raise typer.Exit(1)


def read_token(token_file: Path | None) -> str | None:
    """The bearer token from token_file (surrounding whitespace dropped) or DESY_API_TOKEN; exits
    2 when it cannot be one (empty file, not ASCII, inner whitespace or control characters)."""
    if token_file is None:
        token, where = os.environ.get("DESY_API_TOKEN") or None, "DESY_API_TOKEN"
        if token is None:
            return None
    else:
        try:
            token, where = token_file.read_bytes().decode("ascii").strip(), str(token_file)
        except (OSError, UnicodeDecodeError) as err:
            typer.echo(f"error: cannot read a token from {token_file}: {err}", err=True)
            raise typer.Exit(2) from None
        if not token:
            typer.echo(f"error: the token file {token_file} is empty", err=True)
            raise typer.Exit(2)
    if not all("!" <= char <= "~" for char in token):
        typer.echo(
            f"error: the token in {where} holds a character no token has (only printable ASCII "
            "without spaces or line breaks)",
            err=True,
        )
        raise typer.Exit(2)
    return token


def write_summary(log_dir: Path, counters: dict) -> list[str]:
    """Write summary.json whole (or not at all: a stale one is removed); the problem if it fails."""
    path, tmp = log_dir / "summary.json", log_dir / ".summary.json.tmp"
    try:
        with private_file(tmp, "w") as out:
            out.write(json.dumps(counters, indent=2) + "\n")
        tmp.rename(path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        return [f"cannot write {path}: {err}"]
    return []


def run_problems(counters: dict, spool_mb: int) -> list[str]:
    """Why a run failed: the capture could not be read, the server refused the agent, the
    sender failed, flows were lost or rejected, or logs could not be written."""
    problems = []
    if counters.get("capture_error"):
        problems.append(counters["capture_error"])
    if counters.get("refused"):
        problems.append(
            f"{counters['refused']}; {counters.get('flows_spooled', 0)} flows wait in the spool"
        )
    if counters.get("sender_error"):
        problems.append(f"the sender process failed: {counters['sender_error']}")
    if counters.get("flows_lost"):
        why = (
            f"the spool could not be written ({counters['spool_error']})"
            if counters.get("spool_error")
            else "the sender process failed"
            if counters.get("sender_error")
            else "the backlog of flows waiting for the server was full or could not be written "
            "(--backlog-mb)"
            if counters.get("flows_not_backlogged")
            else f"the spool limit ({spool_mb} MiB) was hit"
        )
        problems.append(f"{counters['flows_lost']} flows lost because {why}")
    if counters.get("flows_rejected"):
        problems.append(
            f"{counters['flows_rejected']} flows rejected by the server (see the log above)"
        )
    if counters.get("spool_files_corrupt"):
        problems.append(
            f"{counters['spool_files_corrupt']} unreadable spool files set aside as "
            "spool/*.corrupt: their flows were not sent"
        )
    for key, what in LOG_COUNTERS.items():
        if counters.get(key):
            problems.append(f"{counters[key]} {what} (see the log above)")
    return problems


#: Summary counters of what could not be logged, and what they mean.
LOG_COUNTERS = {
    "packets_not_logged": "packets not written to capture.pcap",
    "flows_not_logged_jsonl": "flows not written to flows.jsonl",
    "flows_not_logged_txt": "flows not written to traffic.txt",
}


def _private_url(url: str) -> bool:
    """Whether a token sent to url stays private: HTTPS, or plain HTTP to this machine."""
    import httpx  # only `run` talks HTTP: `extract` starts without it

    parsed = httpx.URL(url)
    if parsed.scheme == "https":
        return True
    try:
        return parsed.host == "localhost" or ipaddress.ip_address(parsed.host).is_loopback
    except ValueError:
        return False


def quiet_gc() -> None:
    """Collect cycles rarely: the agent makes millions of short-lived acyclic objects, and the
    default thresholds spend a third of the run re-scanning live connection state."""
    gc.freeze()
    gc.set_threshold(500_000, 20, 20)


def _summary_text(counters: dict) -> str:
    return "summary: " + ", ".join(f"{key}={value}" for key, value in counters.items())


@app.command("pcap-slice")
def pcap_slice(
    src: Annotated[
        str, typer.Option(help="The connection's originator address (the record's src_ip).")
    ],
    dst: Annotated[str, typer.Option(help="Its responder address (dst_ip).")],
    start: Annotated[float, typer.Option(help="Its start_time (epoch seconds).")],
    end: Annotated[float, typer.Option(help="Its end_time.")],
    src_port: Annotated[int, typer.Option(help="Its src_port (0: any, as for ICMP).")] = 0,
    dst_port: Annotated[int, typer.Option(help="Its dst_port (0: any).")] = 0,
    log_dir: Annotated[
        Path, typer.Option(help="The agent's log directory (capture.pcap and rotations).")
    ] = Path("logs"),
    out: Annotated[Path, typer.Option("--out", "-o", help="The pcap to write.")] = Path(
        "connection.pcap"
    ),
) -> None:
    """Cut one connection's packets out of the agent's capture.pcap files (for Wireshark)."""
    from capture_agent.pcap_slice import capture_files, slice_connection

    files = capture_files(log_dir)
    if not files:
        typer.echo(f"error: no capture.pcap in {log_dir}", err=True)
        raise typer.Exit(1)
    try:
        count = slice_connection(files, out, src, dst, start, end, src_port, dst_port)
    except (ValueError, CaptureFileError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if not count:
        typer.echo(
            f"error: no packet of that connection in {len(files)} capture file(s) of {log_dir}",
            err=True,
        )
        raise typer.Exit(1)
    typer.echo(f"{count} packets written to {out}", err=True)


if __name__ == "__main__":
    app()
