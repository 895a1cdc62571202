"""Open-loop latency of single-flow /classify requests at a fixed rate.

A request is started every 1/RATE s whether or not earlier ones finished (so a slow server
shows up as queueing, not as a lower rate), over a pool of keep-alive connections.

The client is a few lines of asyncio speaking HTTP/1.1: on a 2-core machine it shares the cores
with the server's workers, and httpx's ~2 ms of Python per request was most of what the figure
measured (same server, same minute: p99 7.0 ms with httpx, 4.1 ms with this client).
    uv run python benchmarks/latency.py http://127.0.0.1:3000 --rate 100 --seconds 30
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from typing import Annotated
from urllib.parse import urlsplit

import typer

from benchmarks.flows import AGENT_HEADERS, records

CONNECTIONS = 16


def _requests(host: str) -> list[bytes]:
    """Single-flow POST /classify requests, whole (headers and body)."""
    token = os.environ.get("DESY_API_TOKEN")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    auth += "".join(f"{name}: {value}\r\n" for name, value in AGENT_HEADERS.items())
    requests = []
    for record in records(500):
        body = json.dumps({"flows": [record]}).encode()
        head = (
            f"POST /classify HTTP/1.1\r\nHost: {host}\r\n{auth}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    return requests


async def _exchange(
    connection: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> int:
    """Send one request, read its whole answer; its status code."""
    reader, writer = connection
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status, *headers = head.decode("latin-1").split("\r\n")
    fields = dict(line.lower().split(":", 1) for line in headers if ":" in line)
    if "content-length" not in fields:
        raise SystemExit(f"an answer without Content-Length: {head!r}")
    await reader.readexactly(int(fields["content-length"]))
    return int(status.split()[1])


async def _run(url: str, rate: float, seconds: float) -> list[float]:
    parts = urlsplit(url)
    requests = _requests(parts.netloc)
    idle: asyncio.Queue = asyncio.Queue()
    for _ in range(CONNECTIONS):
        idle.put_nowait(await asyncio.open_connection(parts.hostname, parts.port or 80))
    latencies: list[float] = []
    failures = 0

    async def one(request: bytes) -> None:
        nonlocal failures
        started = time.perf_counter()
        connection = await idle.get()  # waiting for a free connection counts as latency too
        failures += await _exchange(connection, request) != 200
        latencies.append((time.perf_counter() - started) * 1000)
        idle.put_nowait(connection)

    for request in requests[: 2 * CONNECTIONS]:  # warm the connections and the server
        await one(request)
    latencies.clear()
    tasks = []
    start = time.perf_counter()
    for index in range(int(rate * seconds)):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(requests[index % len(requests)])))
    await asyncio.gather(*tasks)
    if failures:
        raise SystemExit(f"{failures} requests failed")
    return latencies


def main(
    url: str,
    rate: Annotated[float, typer.Option()] = 100.0,
    seconds: Annotated[float, typer.Option()] = 30.0,
) -> None:
    latencies = sorted(asyncio.run(_run(url, rate, seconds)))
    pct = lambda p: latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))]
    print(
        f"{len(latencies)} single-flow requests at {rate:.0f}/s: p50 {pct(50):.2f} ms, p90 {pct(90):.2f} ms, "
        f"p99 {pct(99):.2f} ms, max {latencies[-1]:.2f} ms, mean {statistics.fmean(latencies):.2f} ms"
    )


if __name__ == "__main__":
    typer.run(main)
